"""The same dispatch and lifecycle measurements against the idiomatic kopf baseline."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench import kubernetes_mode
from bench.harness import Api, cpu_seconds_of, lab_cpu_seconds, lab_with_crd, write_result

BASELINE = Path(__file__).with_name("kopf_baseline.py")


async def run(*, quick: bool) -> None:
    async with lab_with_crd() as lab:
        log = (lab.workdir / "logs" / "kopf.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--all-namespaces",
            "--quiet",
            str(BASELINE),
            env={**os.environ, "KUBECONFIG": str(lab.kubeconfig)},
            stdout=log,
            stderr=log,
        )
        log.close()
        api = Api(lab)
        try:
            await asyncio.sleep(3)  # kopf has no readiness endpoint by default: give it its start
            runs: dict[str, Any] = {"idle": await kubernetes_mode.idle_dispatch(api)}
            for n in [100, 1000] if quick else [100, 1000, 5000]:
                cpu0, lab_cpu0 = cpu_seconds_of(proc.pid), lab_cpu_seconds(lab)
                runs[str(n)] = await kubernetes_mode.dispatch(lab, api, n, lifecycle=100 if n == 100 else 0)
                runs[str(n)]["operator_cpu_s"] = round(cpu_seconds_of(proc.pid) - cpu0, 2)
                runs[str(n)]["lab_cpu_s"] = {
                    name: round(cpu - lab_cpu0.get(name, 0.0), 2)
                    for name, cpu in lab_cpu_seconds(lab).items()
                }
            write_result(
                "kopf_dispatch", {"operator": "kopf baseline (bench/kopf_baseline.py)", "runs": runs}
            )
        finally:
            await api.close()
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
