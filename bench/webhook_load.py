"""Load generator for the webhook bench, in its own process on the other core.

``python -m bench.webhook_load URL CA_FILE MODE SECONDS [CONCURRENCY|RATE]``
  saturate: CONCURRENCY requests always in flight (closed loop) -> max throughput
  rate:     RATE requests/s started on a fixed schedule (open loop) -> latency at that load
Prints one JSON line: count, errors, seconds, per-request latencies summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time
import uuid
from typing import Any

import aiohttp

from bench.harness import summary_ms


def review(i: int) -> bytes:
    """A mix like real traffic: mostly valid kubernetes-mode CREATEs, some invalid ones."""
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


async def main(url: str, ca: str, mode: str, seconds: float, knob: float) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=ca)
    bodies = [review(i) for i in range(512)]
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(ssl=ctx, limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t)

        for i in range(50):  # warm up connections and the server
            await one(i)
        latencies.clear()
        start = time.perf_counter()
        end = start + seconds
        if mode == "saturate":

            async def worker(w: int) -> None:
                i = w
                while time.perf_counter() < end:
                    await one(i)
                    i += int(knob)

            await asyncio.gather(*(worker(w) for w in range(int(knob))))
        else:
            interval = 1.0 / knob
            tasks = []
            i = 0
            while (now := time.perf_counter()) < end:
                target = start + i * interval
                if target > now:
                    await asyncio.sleep(target - now)
                tasks.append(asyncio.create_task(one(i)))
                i += 1
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "knob": knob,
        "count": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "per_s": round(len(latencies) / elapsed, 1),
        "latency": summary_ms(latencies),
    }


if __name__ == "__main__":
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    url, ca, mode, seconds, knob = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(url, ca, mode, float(seconds), float(knob)))))
