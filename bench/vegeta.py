"""The webhook bench's load generator: vegeta (github.com/tsenart/vegeta), built once with Go.

Why vegeta and not a Python client: at a few thousand requests per second a Python
generator on the other core becomes the bottleneck and its own queueing shows up as
webhook latency (p99 of hundreds of ms at "half load" in an earlier run). vegeta is a Go
HTTP client like the apiserver's webhook client (keep-alive TLS connections), and its
open-model ``-rate`` schedules requests independently of responses, so latency at a fixed
load is measured without coordinated omission.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

from gastown.devcluster.binaries import cache_root

MODULE = "github.com/tsenart/vegeta/v12"
VERSION = "v12.12.0"


def binary_path() -> Path:
    """Where the pinned vegeta lives: beside the lab's binaries, keyed by its version."""
    return cache_root().parent / "bench" / f"vegeta-{VERSION}" / "vegeta"


async def ensure_built() -> Path:
    """Build vegeta with ``go install`` on first use (about half a minute), then reuse it."""
    path = binary_path()
    if path.exists():
        return path
    if shutil.which("go") is None:
        raise RuntimeError("Go is not installed: the webhook bench builds its load generator with it")
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(path.parent), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    proc = await asyncio.create_subprocess_exec(
        "go", "install", f"{MODULE}@{VERSION}", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"go install {MODULE}@{VERSION} failed: {err.decode(errors='replace')[-2000:]}")
    return path


def write_targets(path: Path, url: str, bodies: list[bytes]) -> None:
    """vegeta's JSON target format: one POST per line, bodies base64-encoded, used round-robin."""
    with path.open("w") as out:
        for body in bodies:
            target = {
                "method": "POST",
                "url": url,
                "body": base64.b64encode(body).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
            out.write(json.dumps(target) + "\n")


async def attack(
    vegeta: Path, targets: Path, ca: Path, *, seconds: float, rate: float | None, core: int
) -> dict[str, Any]:
    """One attack pinned to ``core``; ``rate=None`` keeps 64 requests in flight (saturation).

    Returns vegeta's JSON report with latencies converted to milliseconds.
    """
    load = ["-rate=0"] if rate is None else [f"-rate={int(rate)}/s", "-workers=32"]
    attack_argv = [
        str(vegeta),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-root-certs={ca}",
        f"-duration={seconds}s",
        "-max-workers=64",
        *load,
    ]
    attacker = await asyncio.create_subprocess_exec(
        "taskset", "-c", str(core), *attack_argv, stdout=asyncio.subprocess.PIPE
    )
    results, _ = await attacker.communicate()
    reporter = await asyncio.create_subprocess_exec(
        str(vegeta),
        "report",
        "-type=json",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await reporter.communicate(results)
    report: dict[str, Any] = json.loads(out)
    latencies = {key: round(value / 1e6, 3) for key, value in report["latencies"].items() if key != "total"}
    return {
        "requests": report["requests"],
        "per_s": round(report["throughput"], 1),
        "success_ratio": report["success"],
        "status_codes": report["status_codes"],
        "latency_ms": latencies,
        "errors": report.get("errors") or [],
    }
