"""The apiserver goes away under a running operator: killed mid-burst, and back with
its history compacted. Nothing is lost, nothing is done twice.

Real parts: the lab's kube-apiserver (SIGKILLed and restarted on the same port),
etcd (compacted through its own API), kube-scheduler and kwok (standing in for the
kubelet: Pods are scheduled and reported Running), the garbage collector of
kube-controller-manager, and the operator as users run it, ``gastown-operator run``
in its own process with the real kubernetes executor. A witness watch kept by the
test from before the first Polecat (tests/support/watch_ledger.py) sees every Pod
uid and every phase, so "no Pod created twice" and "no Polecat dispatched twice" are
checked against history, not just the end state.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.support.engine import polecats_path
from tests.support.etcd import compact_etcd
from tests.support.fleet import (
    assert_converged_once,
    create_burst,
    kubernetes_polecat,
    prepare_namespace,
    wait_converged,
)
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import wait_for, wait_until
from tests.support.watch_ledger import witnessed

pytestmark = [pytest.mark.reliability, pytest.mark.lab]

BURST = 200


@pytest.fixture(autouse=True)
async def _fleet_namespace(lab: Lab, kube: KubeClient, namespace: str) -> None:
    """Every test here runs its fleet in a namespace with what the Pods reference."""
    await prepare_namespace(lab, kube, namespace)


async def test_apiserver_killed_mid_burst_every_polecat_converges_once(
    lab: Lab, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    names = [f"pc-{i:03d}" for i in range(BURST)]
    operator = OperatorProcess(lab, namespace, tmp_path)
    async with witnessed(lab, namespace) as ledger:
        await operator.start()
        try:
            await operator.wait_ready()
            burst = asyncio.create_task(
                create_burst(kube, namespace, [kubernetes_polecat(n, i) for i, n in enumerate(names)])
            )
            try:
                # Kill it while the burst is landing and the operator is checking references
                # and creating Pods; the rest of the burst comes in after the restart.
                await wait_until(
                    lambda: len(ledger.polecats) >= BURST // 4, what="a quarter of the burst", timeout=120
                )
                killed_at = datetime.now(UTC).replace(microsecond=0)
                await lab.restart_apiserver(down_for=2.0)
            finally:
                await burst
            await wait_converged(ledger, names, timeout=150)

            assert operator.running, operator.tail()  # no crash
            assert await operator.metric("gastown_watch_restarts_total") > 0  # its watches really broke
            after = [p for p in ledger.pods.values() if _created(p) > killed_at]
            assert after, "the fault came too late: every Pod was created before the apiserver died"
            dispatched = operator.entered("Dispatching")
            assert max(dispatched.values(), default=0) <= 1, dispatched.most_common(3)
            await assert_converged_once(kube, ledger, namespace, names)
        finally:
            await operator.stop()


async def test_compacted_history_means_relist_and_no_polecat_is_missed(
    lab: Lab, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    """The operator is frozen (SIGSTOP: a long pause, a partition) while Polecats come and
    go; etcd compacts its history and the apiserver restarts, so the resourceVersions the
    operator's watches hold are gone for good. On waking it gets 410 Gone, must relist,
    and must then know about every Polecat created meanwhile and forget every one deleted
    meanwhile (it never saw those events)."""
    first = [f"early-{i:02d}" for i in range(20)]
    second = [f"late-{i:02d}" for i in range(40)]
    deleted = first[:5]
    operator = OperatorProcess(lab, namespace, tmp_path)
    async with witnessed(lab, namespace) as ledger:
        await operator.start()
        try:
            await operator.wait_ready()
            await create_burst(kube, namespace, [kubernetes_polecat(n, i) for i, n in enumerate(first)])
            await wait_converged(ledger, first)
            relists_before = await operator.metric("gastown_informer_relists_total")

            operator.pause()
            try:
                for name in deleted:
                    await kube.delete(polecats_path(namespace, name))
                await create_burst(
                    kube, namespace, [kubernetes_polecat(n, 100 + i) for i, n in enumerate(second)]
                )
                await compact_etcd(lab)
                await lab.restart_apiserver()
            finally:
                operator.resume()

            await wait_converged(ledger, second)
            assert operator.running, operator.tail()
            assert await operator.metric("gastown_watch_restarts_total", reason="expired") >= 1
            assert await operator.metric("gastown_informer_relists_total") > relists_before

            async def cache_is_exact() -> bool:
                return await operator.metric("gastown_polecats") == len(first) - len(deleted) + len(second)

            await wait_for(
                cache_is_exact, interval=0.2, what="the operator's cache to hold exactly the live Polecats"
            )
            survivors = [n for n in first if n not in deleted] + second
            # The deleted ones' Pods go by garbage collection (kube-controller-manager's, not ours).
            await assert_converged_once(kube, ledger, namespace, survivors, lingering=deleted)
        finally:
            await operator.stop()


def _created(obj: dict[str, object]) -> datetime:
    meta = obj.get("metadata")
    assert isinstance(meta, dict)
    return datetime.fromisoformat(str(meta["creationTimestamp"]).replace("Z", "+00:00"))
