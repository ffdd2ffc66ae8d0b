"""Webhook throughput on one core, and latency at half that load.

The server (bench/webhook_server.py) is pinned to core 0, the load generator
(bench/webhook_load.py) to core 1: separate processes, as the apiserver is. The
server's own CPU time over the window is read from /proc, so ``reviews_per_cpu_s``
says what one fully busy core would serve even when the generator is the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import write_result
from gastown.devcluster.lab import free_port
from gastown.webhook.certs import generate_ca, issue_serving_cert


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(url: str, ca: Path, mode: str, seconds: float, knob: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.webhook_load",
        url,
        str(ca),
        mode,
        str(seconds),
        str(knob),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


async def run(*, quick: bool) -> None:
    seconds = 5.0 if quick else 15.0
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        ca_cert, ca_key = generate_ca()
        cert, key = issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
        (certs / "ca.crt").write_bytes(ca_cert)
        (certs / "tls.crt").write_bytes(cert)
        (certs / "tls.key").write_bytes(key)
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.webhook_server",
            str(port),
            str(certs),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            await asyncio.wait_for(server.stdout.readline(), 30)
            url = f"https://127.0.0.1:{port}/validate-polecat"
            cpu0 = _cpu_seconds(server.pid)
            saturated = await _load(url, certs / "ca.crt", "saturate", seconds, 64)
            server_cpu = _cpu_seconds(server.pid) - cpu0
            saturated["server_cpu_s"] = round(server_cpu, 2)
            saturated["server_core_busy"] = round(server_cpu / saturated["seconds"], 2)
            reviews_per_cpu_s = saturated["count"] / server_cpu if server_cpu else None
            half = max(1.0, saturated["per_s"] / 2)
            at_half = await _load(url, certs / "ca.crt", "rate", seconds, half)
            write_result(
                "webhook",
                {
                    "saturated": saturated,
                    "reviews_per_server_cpu_s": round(reviews_per_cpu_s, 1) if reviews_per_cpu_s else None,
                    "at_half_load": at_half,
                },
            )
        finally:
            server.terminate()
            await server.wait()
