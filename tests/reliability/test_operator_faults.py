"""The operator process dies: SIGKILLed mid-burst and restarted, or a leader lost to a standby.

Real parts: the lab's kube-apiserver, etcd, scheduler and kwok (the kubelet's stand-in),
a real ``coordination.k8s.io/v1`` Lease, and the operator as users run it,
``gastown-operator run`` in its own process with the real kubernetes executor. SIGKILL
is the honest crash: no ``finally`` runs, no Lease is released, in-flight requests are
cut wherever they are. A witness watch kept by the test from before the first Polecat
(tests/support/watch_ledger.py) holds every Pod uid and every phase, so "nothing twice"
is checked against history.

Kill points are random; the seed is printed on failure and can be replayed with
``GASTOWN_FAULT_SEED=<seed>``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gastown.api.paths import resource_path
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.support.fleet import (
    assert_converged_once,
    create_burst,
    kubernetes_polecat,
    prepare_namespace,
    unconverged,
    wait_converged,
)
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import wait_for, wait_until
from tests.support.watch_ledger import witnessed

pytestmark = [pytest.mark.reliability, pytest.mark.lab]

ROUNDS = 3
WAVE = 67  # three waves: a burst of about 200
# Short leases so a takeover is quick; the ratios are client-go's defaults (15/10/2).
LEASE = {"GASTOWN_LEASE_DURATION": "4", "GASTOWN_RENEW_DEADLINE": "3", "GASTOWN_RETRY_PERIOD": "0.5"}


@pytest.fixture(autouse=True)
async def _fleet_namespace(lab: Lab, kube: KubeClient, namespace: str) -> None:
    """Every test here runs its fleet in a namespace with what the Pods reference."""
    await prepare_namespace(lab, kube, namespace)


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("GASTOWN_FAULT_SEED") or time.time_ns() % 2**32)
    print(f"fault seed: GASTOWN_FAULT_SEED={seed}")
    return random.Random(seed)


async def test_operator_sigkilled_at_random_points_converges_once(
    lab: Lab, kube: KubeClient, namespace: str, tmp_path: Path, rng: random.Random
) -> None:
    """Each round a wave of Polecats lands and the operator is SIGKILLed at a random
    moment of working on it (checking references, creating Pods, writing status, or
    still catching up after the previous restart), then started again. It must pick up
    where the cluster is, not where it was.

    The kill is timed by the work itself: after a random number of further Pods has
    appeared, plus a random fraction of a second, so it lands while Pods are being made."""
    names: list[str] = []
    operator = OperatorProcess(lab, namespace, tmp_path)
    kills: list[tuple[int, int]] = []  # (Pods made, Polecats not yet Working) at each kill

    async with witnessed(lab, namespace) as ledger:

        def pods_made() -> int:
            return sum(f"polecat-{n}" in ledger.pods for n in names)

        await operator.start()
        try:
            await operator.wait_ready()
            for round_ in range(ROUNDS):
                wave = [f"r{round_}-{i:02d}" for i in range(WAVE)]
                names += wave
                bodies = [kubernetes_polecat(n, round_ * 100 + i) for i, n in enumerate(wave)]
                burst = asyncio.create_task(create_burst(kube, namespace, bodies))
                try:
                    made = pods_made()
                    target = min(made + rng.randint(1, WAVE // 2), max(len(names) - WAVE // 3, made + 1))
                    await wait_until(
                        partial(_at_least, pods_made, target), what=f"{target} Pods", timeout=120
                    )
                    await asyncio.sleep(rng.uniform(0.0, 0.3))
                    kills.append((pods_made(), len(unconverged(ledger, names))))
                    await operator.kill()
                finally:
                    await burst
                await operator.start()
                await operator.wait_ready()
            print(f"kills (Pods made, Polecats not yet Working): {kills}")
            assert any(left for _, left in kills), "every kill came after the work was done"
            await wait_converged(ledger, names, timeout=150)
            assert operator.starts == ROUNDS + 1
            dispatched = operator.entered("Dispatching")
            assert max(dispatched.values(), default=0) <= 1, dispatched.most_common(3)  # across all four runs
            await assert_converged_once(kube, ledger, namespace, names)
        finally:
            await operator.stop()


def _at_least(count: Callable[[], int], target: int) -> bool:
    return count() >= target


async def test_killed_leader_is_replaced_by_the_standby_and_nothing_is_done_twice(
    lab: Lab, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    """Two replicas with leader election. The leader is SIGKILLed mid-burst, so its Lease
    is not released: the standby must wait for it to expire, then take over and finish
    the burst, without redoing what the dead leader did."""
    names = [f"pc-{i:03d}" for i in range(200)]
    a = OperatorProcess(lab, namespace, tmp_path, identity="replica-a", leader_elect=True, extra_env=LEASE)
    b = OperatorProcess(lab, namespace, tmp_path, identity="replica-b", leader_elect=True, extra_env=LEASE)
    async with witnessed(lab, namespace) as ledger:
        try:
            await a.start()
            await a.wait_ready()
            await _wait_holder(kube, namespace, "replica-a")
            await b.start()
            await b.wait_ready()
            assert await b.metric("gastown_leader") == 0  # standing by

            burst = asyncio.create_task(
                create_burst(kube, namespace, [kubernetes_polecat(n, i) for i, n in enumerate(names)])
            )
            try:
                await wait_until(
                    lambda: len(ledger.pods) >= 10, what="the leader to be creating Pods", timeout=120
                )
                await a.kill()
                # Pods seen by now were made by the dead leader (it may have made more).
                made_by_a = {name: pod["metadata"]["uid"] for name, pod in ledger.pods.items()}
                # Read at once: the standby may take the Lease only when it has expired.
                lease = await _lease(kube, namespace)
                assert lease["spec"]["holderIdentity"] == "replica-a"  # a crash releases nothing
            finally:
                await burst

            await _wait_holder(kube, namespace, "replica-b", timeout=30)
            await wait_converged(ledger, names, timeout=150)
            assert await b.metric("gastown_leader") == 1
            lease = await _lease(kube, namespace)
            assert lease["spec"]["leaseTransitions"] >= 1
            # The dead leader may have died before writing any status (Pods come first), so
            # what it did is counted in Pods; the standby's share in dispatches it logged.
            by_a, by_b = a.entered("Dispatching"), b.entered("Dispatching")
            assert by_b, "the standby dispatched nothing: the work was not split between the replicas"
            assert set(by_a) & set(by_b) == set()  # nothing the dead leader dispatched was redone
            assert max((by_a + by_b).values(), default=0) <= 1
            assert {n: ledger.pod_uids[n] for n in made_by_a} == {n: [u] for n, u in made_by_a.items()}
            await assert_converged_once(kube, ledger, namespace, names)
        finally:
            await b.stop()
            await a.stop()


async def _lease(kube: KubeClient, namespace: str) -> dict[str, Any]:
    lease: dict[str, Any] = await kube.get(
        resource_path("coordination.k8s.io", "v1", "leases", namespace=namespace, name="gastown-operator")
    )
    return lease


async def _wait_holder(kube: KubeClient, namespace: str, identity: str, timeout: float = 30.0) -> None:
    async def holding() -> bool:
        lease = await _lease(kube, namespace)  # raises until it is created: "not yet"
        return bool(lease["spec"].get("holderIdentity") == identity)

    await wait_for(holding, timeout=timeout, interval=0.1, what=f"{identity} to take the Lease")
