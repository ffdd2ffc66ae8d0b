"""Webhook throughput on one core, and latency at fixed loads below it.

The server (bench/webhook_server.py) is pinned to core 0 and the load generator, vegeta
(bench/vegeta.py), to core 1: separate processes, as the apiserver is. The server's own CPU
time over the saturation window is read from /proc, so ``reviews_per_server_cpu_s`` says what
one fully busy core serves. Latency is then measured open-loop at 1,000/s, 2,000/s and half
the saturated rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import vegeta
from bench.harness import cpu_seconds_of, write_result
from gastown.devcluster.lab import free_port
from gastown.webhook.certs import generate_ca, issue_serving_cert

SERVER_CORE, LOAD_CORE = 0, 1 % (os.cpu_count() or 1)


def review(i: int) -> bytes:
    """A mix like real traffic: mostly valid kubernetes-mode CREATEs, one in four invalid."""
    spec: dict[str, Any] = {
        "rig": "bench",
        "beadID": f"gt-{i % 100000:05d}",
        "executionMode": "kubernetes",
        "kubernetes": {
            "gitRepository": "git@git.example.com:acme/bench.git",
            "gitSecretRef": {"name": "git-ssh"},
            "agentSecretRef": {"name": "agent", "key": "api-key"},
        },
    }
    if i % 4 == 3:  # invalid: no agent secret, bad branch
        del spec["kubernetes"]["agentSecretRef"]
        spec["kubernetes"]["gitBranch"] = "bad;branch"
    obj = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": f"pc-{i}", "namespace": "bench"},
        "spec": spec,
    }
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "gastown.gastown.io", "version": "v1alpha1", "kind": "Polecat"},
            "resource": {"group": "gastown.gastown.io", "version": "v1alpha1", "resource": "polecats"},
            "name": f"pc-{i}",
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": obj,
        },
    }
    return json.dumps(body).encode()


async def run(*, quick: bool) -> None:
    saturate_s, rate_s = (5.0, 4.0) if quick else (15.0, 10.0)
    load_generator = await vegeta.ensure_built()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca_cert, ca_key = generate_ca()
        cert, key = issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
        (work / "ca.crt").write_bytes(ca_cert)
        (work / "tls.crt").write_bytes(cert)
        (work / "tls.key").write_bytes(key)
        port = free_port()
        targets = work / "targets.jsonl"
        vegeta.write_targets(
            targets, f"https://127.0.0.1:{port}/validate-polecat", [review(i) for i in range(512)]
        )
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.webhook_server", str(port), str(work), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            await asyncio.wait_for(server.stdout.readline(), 30)

            async def attack(seconds: float, rate: float | None) -> dict[str, Any]:
                return await vegeta.attack(
                    load_generator, targets, work / "ca.crt", seconds=seconds, rate=rate, core=LOAD_CORE
                )

            await attack(2.0, 500)  # warm up connections and the server
            cpu0 = cpu_seconds_of(server.pid)
            saturated = await attack(saturate_s, None)
            server_cpu = cpu_seconds_of(server.pid) - cpu0
            saturated["server_cpu_s"] = round(server_cpu, 2)
            saturated["server_core_busy"] = round(server_cpu / saturate_s, 2)
            half = max(1.0, saturated["per_s"] / 2)
            at_rates = {str(int(rate)): await attack(rate_s, rate) for rate in (1000, 2000, half)}
            write_result(
                "webhook",
                {
                    "load_generator": f"vegeta {vegeta.VERSION} on core {LOAD_CORE}",
                    "server": f"bench/webhook_server.py on core {SERVER_CORE}",
                    "saturated_64_in_flight": saturated,
                    "reviews_per_server_cpu_s": round(saturated["requests"] / server_cpu, 1)
                    if server_cpu
                    else None,
                    "half_load_per_s": int(half),
                    "at_fixed_rates": at_rates,
                },
            )
        finally:
            server.terminate()
            await server.wait()
