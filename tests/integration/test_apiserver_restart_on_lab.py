"""kube-apiserver killed and restarted under a running operator: nothing lost, nothing twice.

The lab's kube-apiserver is SIGKILLed mid-watch and started again on the same port
(etcd keeps the data). The manager's watches break, its writes fail for a while; it
must reconnect, converge every Polecat — those created before, and those created
after the restart while its watches were still reconnecting — and dispatch each one
exactly once. The executor is the stand-in of tests/support/engine.py
(standing in for a real mode so the engine is tested alone); it polls like local mode.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import Phase
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.support.engine import StandInExecutor, create_polecat, make_manager, polecats_path
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

BATCH = 12


async def _phases(kube: KubeClient, namespace: str) -> dict[str, str]:
    listed = await kube.get(polecats_path(namespace))
    return {
        item["metadata"]["name"]: str((item.get("status") or {}).get("phase", ""))
        for item in listed.get("items") or []
    }


def _watch_restarts(registry: Any) -> float:
    total = 0.0
    for metric in registry.collect():
        if metric.name == "gastown_watch_restarts":
            total += sum(sample.value for sample in metric.samples if sample.name.endswith("_total"))
    return total


async def test_operator_recovers_from_an_apiserver_restart(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, kube: KubeClient
) -> None:
    standin = StandInExecutor(poll=0.3, auto_phase=Phase.WORKING)
    mgr = make_manager(k8s_api, namespace, standin)
    await mgr.start()
    try:
        await asyncio.wait_for(mgr.wait_synced(), 30)
        before = [f"before-{i}" for i in range(BATCH)]
        for name in before:
            await create_polecat(kube, namespace, name)

        async def all_working() -> bool:
            phases = await _phases(kube, namespace)
            return all(phases.get(n) == "Working" for n in before)

        await wait_for(all_working, what="the first batch to be Working")
        restarts_before = _watch_restarts(mgr.registry)

        # The work finishes while the apiserver is away: the operator must notice after.
        for name in before:
            standin.set_phase(f"{namespace}/{name}", Phase.DONE)
        await lab.restart_apiserver(down_for=1.0)

        after = [f"after-{i}" for i in range(BATCH)]
        for name in after:

            async def created(name: str = name) -> bool:
                try:
                    await create_polecat(kube, namespace, name)
                except Exception as exc:
                    if getattr(exc, "status", None) == 409:  # an earlier try got through
                        return True
                    raise
                return True

            await wait_for(created, what=f"creating {name}", timeout=60)

        async def converged() -> dict[str, str] | None:
            phases = await _phases(kube, namespace)
            ok = all(phases.get(n) == "Done" for n in before) and all(
                phases.get(n) == "Working" for n in after
            )
            return phases if ok else None

        await wait_for(converged, what="every Polecat to converge after the restart", timeout=90)

        assert _watch_restarts(mgr.registry) > restarts_before  # the watches really broke
        for name in before + after:
            assert standin.dispatches[f"{namespace}/{name}"] == 1, name
        assert sum(standin.dispatches.values()) == 2 * BATCH
    finally:
        await mgr.stop()
