"""``python -m bench [names...] [--quick]``: run the benchmarks on fresh labs.

Names: startup, dispatch, memory, webhook, local, kopf, floor (default: all of these; kopf runs the
same dispatch measurements against an idiomatic kopf operator for comparison; floor runs
interleaved rounds of the same burst with no operator and with ours, and prints the
operator's figures as ratios to the floor's: ``--n``, ``--pairs``, ``--tag`` apply to it). Run only
when named: convoy (a Convoy of 1,000 beads at parallelism 100 beside 1,000 plain Polecats) and
celcost (the dispatch freeze's CEL cost on status writes; ``--n``, ``--pairs``, ``--tag``). ``--quick`` uses
smaller sizes (for a smoke run); the figures in bench/README.md come from a full run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path
from typing import Any

from bench.harness import Api, OperatorProcess, lab_cpu_seconds, lab_with_crd, write_result

ALL = ["startup", "dispatch", "memory", "webhook", "local", "kopf", "floor"]
OPTIONAL = ["celcost", "convoy"]  # run only when named


async def run_startup_and_dispatch(sizes: list[int], lifecycle: int) -> None:
    from bench import kubernetes_mode  # noqa: PLC0415

    async with lab_with_crd() as lab:
        operator = OperatorProcess(lab, extra_args=["--no-webhook", "--workers=32"])
        await operator.start()
        try:
            ready_s = await operator.wait_ready()
            write_result(
                "startup",
                {"process_start_to_ready_s": round(ready_s, 3), "idle_rss_mib": operator.rss_mib()},
            )
            api = Api(lab)
            try:
                runs: dict[str, Any] = {"idle": await kubernetes_mode.idle_dispatch(api)}
                for n in sizes:
                    cpu0, lab_cpu0 = operator.cpu_seconds(), lab_cpu_seconds(lab)
                    runs[str(n)] = await kubernetes_mode.dispatch(
                        lab, api, n, lifecycle=lifecycle if n == sizes[0] else 0
                    )
                    runs[str(n)]["operator_cpu_s"] = round(operator.cpu_seconds() - cpu0, 2)
                    runs[str(n)]["lab_cpu_s"] = {
                        name: round(cpu - lab_cpu0.get(name, 0.0), 2)
                        for name, cpu in lab_cpu_seconds(lab).items()
                    }
                    runs[str(n)]["operator_rss_mib_after"] = operator.rss_mib()
                write_result("dispatch", {"runs": runs})
            finally:
                await api.close()
        finally:
            await operator.stop()


async def run_memory(sizes: list[int]) -> None:
    from bench import kubernetes_mode  # noqa: PLC0415

    async with lab_with_crd() as lab:
        operator = OperatorProcess(lab, extra_args=["--no-webhook", "--workers=32"])
        await operator.start()
        api = Api(lab)
        try:
            await operator.wait_ready()
            await asyncio.sleep(2)
            write_result("memory", await kubernetes_mode.memory(lab, api, operator, sizes))
        finally:
            await api.close()
            await operator.stop()


async def main(names: list[str], quick: bool, floor_args: dict[str, Any] | None = None) -> None:
    if "startup" in names or "dispatch" in names:
        await run_startup_and_dispatch([100, 1000] if quick else [100, 1000, 5000], lifecycle=100)
    if "memory" in names:
        await run_memory([1000] if quick else [1000, 10000])
    for name in ("webhook", "local", "kopf"):
        if name in names:
            module = importlib.import_module(f"bench.{name}_bench")
            await module.run(quick=quick)
    if "floor" in names:
        from bench import floor  # noqa: PLC0415

        await floor.run(quick=quick, **(floor_args or {}))
    if "celcost" in names:
        from bench import cel_cost  # noqa: PLC0415

        args = floor_args or {}
        tag = str(args.get("name", "floor")).removeprefix("floor").removeprefix("-")
        await cel_cost.run(n=args.get("n") or 1000, pairs=args.get("pairs", 2), tag=tag)
    if "convoy" in names:
        from bench import convoy  # noqa: PLC0415

        await convoy.run(quick=quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    # No `choices=` here: argparse checks a list default against them as one value and refuses it.
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of {', '.join(ALL)} (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="floor: Polecats per round (default 1000)")
    parser.add_argument("--pairs", type=int, default=2, help="floor: floor+operator round pairs")
    parser.add_argument("--tag", default="", help="floor: write results/floor-TAG.json")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=TREE",
        help="floor: also run the operator from source tree TREE (e.g. a `git archive` of an earlier "
        "commit) as NAME, in the same interleaved rounds; `NAME=.` is this tree",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="floor: take kube-apiserver's CPU profile over the first SECONDS of every round "
        "(bench/apiserver_profile.py) and sum it by stage",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(ALL) - set(OPTIONAL))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL + OPTIONAL)}")
    variants: dict[str, str | None] = {}
    for spec in args.variant:
        vname, _, tree = spec.partition("=")
        if not vname or not tree or vname == "floor":
            parser.error(f"--variant {spec!r}: expected NAME=TREE (NAME not 'floor'), e.g. before=/tmp/old")
        variants[vname] = None if tree == "." else str(Path(tree).resolve())
    floor_args = {
        "n": args.n,
        "pairs": args.pairs,
        "name": f"floor-{args.tag}" if args.tag else "floor",
        "variants": variants or None,
        "profile": args.profile,
    }
    asyncio.run(main(args.names or ALL, args.quick, floor_args))
