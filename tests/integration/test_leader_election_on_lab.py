"""Two operator replicas on the real apiserver: one leads, the other takes over.

Both managers run in this process against the lab's kube-apiserver, competing for a
real ``coordination.k8s.io/v1`` Lease. Their executors are stand-ins (see
tests/support/engine.py) sharing one in-memory "world", as two replicas
share one cluster; each call is tagged with the replica that made it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import ExecutionMode, Phase, Polecat
from gastown.api.paths import resource_path
from gastown.controller.manager import Manager
from gastown.executors.base import Observation, Release
from gastown.kube import KubeClient
from tests.support.engine import (
    FAST_INFORMERS,
    FAST_RECONCILER,
    StandInExecutor,
    create_polecat,
    engine_settings,
    wait_phase,
)
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.lab


class Tagged:
    """One replica's view of the shared stand-in: delegates, and records who called."""

    def __init__(self, world: StandInExecutor, tag: str, calls: list[tuple[str, str, str]]) -> None:
        self._world = world
        self._tag = tag
        self._calls = calls

    @property
    def needs_finalizer(self) -> bool:
        return False

    @property
    def finalizer_with_dispatch(self) -> bool:
        return False

    async def observe(self, polecat: Polecat) -> Observation:
        self._calls.append((self._tag, "observe", polecat.key))
        return await self._world.observe(polecat)

    async def dispatch(self, polecat: Polecat) -> Observation:
        self._calls.append((self._tag, "dispatch", polecat.key))
        return await self._world.dispatch(polecat)

    async def terminate(self, polecat: Polecat) -> Observation:
        return await self._world.terminate(polecat)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        return await self._world.release(polecat, force=force)

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        if False:  # pragma: no cover - an empty async generator
            yield ""

    def attach_command(self, polecat: Polecat) -> list[str]:
        return ["true"]


class Replicas:
    """Two managers, ``a`` and ``b``, over one stand-in world."""

    def __init__(self, api: client.ApiClient, namespace: str, **lease: Any) -> None:
        self.world = StandInExecutor(poll=None, auto_phase=Phase.WORKING)
        self.calls: list[tuple[str, str, str]] = []
        self.lease_name = f"gastown-{uuid.uuid4().hex[:6]}"
        self.managers = {tag: self._manager(api, namespace, tag, lease) for tag in ("a", "b")}

    def _manager(self, api: client.ApiClient, namespace: str, tag: str, lease: dict[str, Any]) -> Manager:
        executor = Tagged(self.world, tag, self.calls)
        return Manager(
            engine_settings(
                namespace,
                leader_election=True,
                lease_name=self.lease_name,
                identity=f"replica-{tag}",
                **lease,
            ),
            api=api,
            executors={ExecutionMode.LOCAL: executor, ExecutionMode.KUBERNETES: executor},
            informer_options=FAST_INFORMERS,
            reconciler_options=FAST_RECONCILER,
        )

    def leaders(self) -> list[str]:
        return [tag for tag, mgr in self.managers.items() if mgr.is_leader]

    def callers(self, key: str, op: str) -> list[str]:
        return [tag for tag, o, k in self.calls if k == key and o == op]

    async def stop(self) -> None:
        for mgr in self.managers.values():
            await mgr.stop()
        # Campaigning, losing, releasing and stopping are all expected: no task "died".
        assert [m.failure for m in self.managers.values()] == [None] * len(self.managers)


class Declines(logging.Handler):
    """Counts, per (replica, holder), the attempts that found the Lease held by another.

    The elector logs each such attempt at DEBUG; these counts are the positive sign that
    a standby replica really tried (and declined) before a test asserts it does not lead.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        holder = getattr(record, "holder", None)
        if holder is not None:
            self.counts[(getattr(record, "identity", ""), holder)] += 1

    def b_declined(self) -> int:
        return self.counts[("replica-b", "replica-a")]


@pytest.fixture
def declines() -> Iterator[Declines]:
    handler = Declines()
    elector_log = logging.getLogger("gastown.controller.leaderelection")
    level = elector_log.level
    elector_log.addHandler(handler)
    elector_log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        elector_log.removeHandler(handler)
        elector_log.setLevel(level)


async def _lease(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    lease: dict[str, Any] = await kube.get(
        resource_path("coordination.k8s.io", "v1", "leases", namespace=namespace, name=name)
    )
    return lease


async def _start_with_a_leading(replicas: Replicas) -> None:
    a, b = replicas.managers["a"], replicas.managers["b"]
    await a.start()
    await asyncio.wait_for(a.wait_synced(), 30)
    await b.start()


async def test_exactly_one_replica_reconciles(
    k8s_api: client.ApiClient, kube: KubeClient, namespace: str, declines: Declines
) -> None:
    replicas = Replicas(k8s_api, namespace, lease_duration=4.0, renew_deadline=3.0, retry_period=0.5)
    try:
        await _start_with_a_leading(replicas)
        await wait_until(lambda: declines.b_declined() >= 3, what="b to find the Lease held by a, 3 times")
        assert replicas.leaders() == ["a"]
        assert replicas.managers["b"].ready() == (True, "standby: waiting for the leader lease")

        await create_polecat(kube, namespace, "one")
        await wait_phase(kube, namespace, "one", Phase.WORKING)
        key = f"{namespace}/one"
        assert replicas.callers(key, "dispatch") == ["a"]
        assert set(replicas.callers(key, "observe")) == {"a"}

        lease = await _lease(kube, namespace, replicas.lease_name)
        assert lease["spec"]["holderIdentity"] == "replica-a"
    finally:
        await replicas.stop()


async def test_killed_leader_hands_over_within_the_lease_duration(
    k8s_api: client.ApiClient, kube: KubeClient, namespace: str, declines: Declines
) -> None:
    lease_duration = 4.0
    replicas = Replicas(
        k8s_api, namespace, lease_duration=lease_duration, renew_deadline=3.0, retry_period=0.5
    )
    try:
        await _start_with_a_leading(replicas)
        await create_polecat(kube, namespace, "before")
        await wait_phase(kube, namespace, "before", Phase.WORKING)

        await replicas.managers["a"].abort()  # a crash: no release
        declined = declines.b_declined()
        lease = await _lease(kube, namespace, replicas.lease_name)
        assert lease["spec"]["holderIdentity"] == "replica-a"  # still held by the dead leader
        # b tries, and respects the unexpired lease.
        await wait_until(
            lambda: declines.b_declined() >= declined + 2, what="b to decline the dead leader's lease"
        )
        assert replicas.leaders() == []

        async def b_leads() -> bool:
            return replicas.managers["b"].is_leader

        await wait_for(b_leads, timeout=lease_duration + 6, what="b to take over")
        await asyncio.wait_for(replicas.managers["b"].wait_synced(), 30)

        # b carries on: new work is b's, and what a dispatched is not dispatched again.
        await create_polecat(kube, namespace, "after")
        await wait_phase(kube, namespace, "after", Phase.WORKING)
        assert replicas.callers(f"{namespace}/after", "dispatch") == ["b"]
        assert replicas.callers(f"{namespace}/before", "dispatch") == ["a"]
        lease = await _lease(kube, namespace, replicas.lease_name)
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        await replicas.stop()


async def test_graceful_stop_releases_the_lease_for_a_fast_handover(
    k8s_api: client.ApiClient, kube: KubeClient, namespace: str, declines: Declines
) -> None:
    """With a 30 s lease, only a released lease lets b lead within a few seconds."""
    replicas = Replicas(k8s_api, namespace, lease_duration=30.0, renew_deadline=20.0, retry_period=0.5)
    try:
        await _start_with_a_leading(replicas)
        await wait_until(lambda: declines.b_declined() >= 2, what="b to find the Lease held by a")
        assert replicas.leaders() == ["a"]

        await replicas.managers["a"].stop()
        lease = await _lease(kube, namespace, replicas.lease_name)
        assert not lease["spec"].get("holderIdentity")
        assert lease["spec"]["leaseDurationSeconds"] == 1

        async def b_leads() -> bool:
            return replicas.managers["b"].is_leader

        await wait_for(b_leads, timeout=5.0, what="b to take the released lease")
        await create_polecat(kube, namespace, "next")
        await wait_phase(kube, namespace, "next", Phase.WORKING)
        assert replicas.callers(f"{namespace}/next", "dispatch") == ["b"]
    finally:
        await replicas.stop()
