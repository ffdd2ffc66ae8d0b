"""Where kube-apiserver's CPU goes in a round: a Go CPU profile, summed by what the work is.

Request counts say how many writes the operator adds; they do not say why a Polecat status
patch costs the apiserver more than a Pod create. The apiserver's own profiler does: the
floor bench (``--profile SECONDS``) starts the lab's kube-apiserver with ``--profiling`` and
takes ``/debug/pprof/profile`` for the first SECONDS of every round, so a floor round and an
operator round are profiled over the same window on the same lab. ``go tool pprof`` (Go is
on this machine: the lab is built with it) turns each profile into cumulative seconds per
function, and :data:`CATEGORIES` sums them into the stages a request goes through.

Categories overlap (a status patch's merge and validation run inside etcd's update loop, and
JSON is everywhere), so they are read across rounds, not added up within one.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from bench.harness import Api

# Stage → pattern of the function names whose cumulative time stands for it; the largest
# cumulative figure among the matches is taken (the outermost frame of that stage).
CATEGORIES: dict[str, str] = {
    "requests (handler, all)": r"finisher\.finishRequest\.func1$",
    "creates (all kinds)": r"handlers\.\(\*namedCreaterAdapter\)\.Create$",
    "patches (all kinds)": r"handlers\.\(\*patcher\)\.patchResource\.func3$",
    "Polecat status writes": r"customresource\.\(\*StatusREST\)\.Update$",
    "Pod status writes (kubelet/kwok)": r"pod/storage\.\(\*StatusREST\)\.Update$",
    "managedFields update": r"managedfields/internal\.\(\*FieldManager\)\.Update$",
    "managedFields admission check": r"managedFieldsValidatingAdmissionController\)\.Admit$",
    "CR schema coercion (decode)": r"apiserver\.\(\*unstructuredSchemaCoercer\)\.apply$",
    "update validation": r"rest\.ValidateUpdate$",
    "etcd watch decode": r"etcd3\.\(\*watchChan\)\.transform$",
    "watch serving (encode + send)": r"handlers\.\(\*WatchServer\)\.HandleHTTP$",
    "TLS": r"^crypto/tls\.\(\*Conn\)\.(Write|Read)$",
    "Go garbage collector": r"^runtime\.gcBgMarkWorker$",
}

# "flat flat% sum% cum cum% name"; pprof prints a zero without its unit.
_TOP_LINE = re.compile(r"^\s*([\d.]+)s?\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)s?\s+[\d.]+%\s+(.+?)\s*$")
_TOTAL = re.compile(r"Total samples = ([\d.]+)s")


async def capture(api: Api, seconds: int, out: Path) -> Path:
    """The apiserver's CPU profile over the next ``seconds``, written to ``out``."""
    async with api.session.get("/debug/pprof/profile", params={"seconds": str(seconds)}) as resp:
        resp.raise_for_status()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(await resp.read())
    return out


async def pprof_top(profile: Path) -> str:
    """``go tool pprof -top -cum`` of a profile, every function, in seconds."""
    proc = await asyncio.create_subprocess_exec(
        "go",
        "tool",
        "pprof",
        "-top",
        "-cum",
        "-nodecount=5000",
        "-unit=s",
        str(profile),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"go tool pprof {profile}: {stderr.decode(errors='replace')[-500:]}")
    return stdout.decode()


def summarize(top: str, *, flat_top: int = 15) -> dict[str, Any]:
    """Total CPU seconds sampled, seconds per :data:`CATEGORIES` stage, and the functions
    with the most time of their own."""
    total_match = _TOTAL.search(top)
    rows: list[tuple[float, float, str]] = []
    for line in top.splitlines():
        m = _TOP_LINE.match(line)
        if m:
            rows.append((float(m.group(1)), float(m.group(2)), m.group(3)))
    stages: dict[str, float] = {}
    for stage, pattern in CATEGORIES.items():
        regex = re.compile(pattern)
        stages[stage] = round(max((cum for _, cum, name in rows if regex.search(name)), default=0.0), 2)
    flat = sorted(rows, key=lambda r: -r[0])[:flat_top]
    return {
        "sampled_s": float(total_match.group(1)) if total_match else round(sum(r[0] for r in rows), 2),
        "stages_s": stages,
        "top_flat": [{"function": name, "flat_s": round(f, 2)} for f, _, name in flat],
    }


async def _main(paths: list[str]) -> None:
    for path in paths:
        summary = summarize(await pprof_top(Path(path)))
        print(f"{path}: {summary['sampled_s']:.2f} s sampled")
        for stage, seconds in summary["stages_s"].items():
            print(f"  {stage:40s} {seconds:6.2f}")


if __name__ == "__main__":
    import sys

    asyncio.run(_main(sys.argv[1:]))
