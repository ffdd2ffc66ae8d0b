"""Kubernetes mode at scale: dispatch latency/throughput, lifecycle convergence, memory.

* dispatch: N Polecats created in a burst; per Polecat, the time from its ADDED
  watch event to its Pod's ADDED watch event (both arriving at this client), and the
  time from the first Polecat to the last Pod.
* lifecycle: for Polecats that are Working, kwok ends each Pod (Succeeded, with a
  runner termination message); per Pod, the time from the Pod's Succeeded event to the
  Polecat's Done event. Pods are ended at a paced rate so this measures latency, not a
  queue.
* memory: operator RSS idle, then with 1k and 10k Polecats and their Pods cached.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.harness import (
    POLECATS_PATH,
    Api,
    OperatorProcess,
    create_all,
    kubernetes_polecat,
    namespace_with_watches,
    summary_ms,
)
from gastown.devcluster.lab import Lab

TERMINATION_MESSAGE = json.dumps(
    {"branch": "polecat/x", "commit": "0" * 40, "pushed": True, "agentExitCode": 0, "message": "ok"}
)


class Timeline:
    """First-seen times of Polecats and Pods (and later phases), keyed by Polecat name."""

    def __init__(self) -> None:
        self.polecat_added: dict[str, float] = {}
        self.pod_added: dict[str, float] = {}
        self.pod_succeeded: dict[str, float] = {}
        self.polecat_phase: dict[str, dict[str, float]] = {}

    def on_polecat(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        name = obj["metadata"]["name"]
        if kind == "ADDED":
            self.polecat_added.setdefault(name, at)
        phase = (obj.get("status") or {}).get("phase")
        if phase:
            self.polecat_phase.setdefault(name, {}).setdefault(phase, at)
        return False

    def on_pod(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        owner = obj["metadata"].get("labels", {}).get("gastown.gastown.io/polecat")
        if owner is None:
            return False
        if kind == "ADDED":
            self.pod_added.setdefault(owner, at)
        if (obj.get("status") or {}).get("phase") == "Succeeded":
            self.pod_succeeded.setdefault(owner, at)
        return False


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _namespace_with_watches(api: Api, ns: str, timeline: Timeline) -> list[asyncio.Task[None]]:
    return await namespace_with_watches(api, ns, timeline.on_polecat, timeline.on_pod)


async def dispatch(lab: Lab, api: Api, n: int, *, lifecycle: int = 0) -> dict[str, Any]:
    """Burst-create n Polecats; measure Polecat→Pod, and optionally lifecycle on the first few."""
    ns = f"bench-{n}-{int(time.time())}"
    timeline = Timeline()
    watches = await _namespace_with_watches(api, ns, timeline)
    names = [f"pc-{i:05d}" for i in range(n)]
    t0 = time.monotonic()
    await create_all(
        api,
        f"{POLECATS_PATH}/namespaces/{ns}/polecats",
        [kubernetes_polecat(name, i) for i, name in enumerate(names)],
    )
    created = time.monotonic() - t0
    await _wait(lambda: len(timeline.pod_added) >= n, 60 + n / 20, f"{n} pods")
    latencies = [timeline.pod_added[x] - timeline.polecat_added[x] for x in names]
    first = min(timeline.polecat_added.values())
    total = max(timeline.pod_added.values()) - first
    result: dict[str, Any] = {
        "n": n,
        "create_burst_s": round(created, 3),
        "polecat_to_pod": summary_ms(latencies),
        "first_polecat_to_last_pod_s": round(total, 3),
        "polecats_per_s": round(n / total, 1) if total > 0 else None,
    }
    if lifecycle:
        result["lifecycle"] = await _lifecycle(api, ns, names[:lifecycle], timeline)
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    return result


async def idle_dispatch(api: Api, n: int = 30) -> dict[str, Any]:
    """Polecat→Pod latency with nothing queued: one Polecat at a time, each after the last Pod."""
    ns = f"bench-idle-{int(time.time())}"
    timeline = Timeline()
    watches = await _namespace_with_watches(api, ns, timeline)
    try:
        for i in range(n):
            name = f"idle-{i:03d}"
            await api.request(
                "POST", f"{POLECATS_PATH}/namespaces/{ns}/polecats", kubernetes_polecat(name, i)
            )
            await _wait(lambda name=name: name in timeline.pod_added, 30, f"the Pod of {name}")
            await asyncio.sleep(0.05)  # let the status writes and Events of this one finish
    finally:
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    latencies = [timeline.pod_added[x] - timeline.polecat_added[x] for x in timeline.pod_added]
    return {"n": n, "polecat_to_pod": summary_ms(latencies)}


async def _lifecycle(api: Api, ns: str, names: list[str], timeline: Timeline) -> dict[str, Any]:
    await _wait(
        lambda: all("Working" in timeline.polecat_phase.get(x, {}) for x in names),
        120,
        "Polecats Working",
    )
    annotations = {
        "lab.gastown.io/exit-code": "0",
        "lab.gastown.io/termination-message": TERMINATION_MESSAGE,
    }
    for name in names:  # paced: 50/s, so latency is measured, not a backlog
        await api.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/polecat-{name}",
            {"metadata": {"annotations": annotations}},
            content_type="application/merge-patch+json",
        )
        await asyncio.sleep(0.02)
    await _wait(lambda: all("Done" in timeline.polecat_phase.get(x, {}) for x in names), 120, "Polecats Done")
    convergence = [timeline.polecat_phase[x]["Done"] - timeline.pod_succeeded[x] for x in names]
    return {"n": len(names), "pod_succeeded_to_polecat_done": summary_ms(convergence)}


async def memory(lab: Lab, api: Api, operator: OperatorProcess, sizes: list[int]) -> dict[str, Any]:
    """RSS idle and after each cumulative size of Polecats (with Pods) is cached."""
    out: dict[str, Any] = {"idle_rss_mib": operator.rss_mib()}
    ns = f"bench-mem-{int(time.time())}"
    await api.create_namespace(ns)
    made = 0
    for size in sizes:
        await create_all(
            api,
            f"{POLECATS_PATH}/namespaces/{ns}/polecats",
            [kubernetes_polecat(f"m-{i:05d}", i) for i in range(made, size)],
        )
        made = size

        async def pods_count() -> int:
            pods = await api.request(
                "GET", f"/api/v1/namespaces/{ns}/pods", params={"limit": "1", "labelSelector": ""}
            )
            remaining = int(pods["metadata"].get("remainingItemCount", 0))
            return remaining + len(pods["items"])

        deadline = time.monotonic() + 120 + size / 20
        while time.monotonic() < deadline:  # polling the apiserver: there is no event to wait on
            if await pods_count() >= size:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # let watch events settle into the caches
        out[f"rss_mib_{size}"] = operator.rss_mib()
    return out
