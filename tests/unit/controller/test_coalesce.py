"""Dispatching and Working in one status write when the Pod already runs; the story kept.

The pure rules (coalesce.py), then the reconciler with them against the in-memory
stand-ins of test_reconciler_unreachable (a merge-patch store with resourceVersion
preconditions, the write-through cache, an Event recorder) and a stand-in executor
shaped like kubernetes mode: watch-driven (no requeue), its work Pending when created.
The lab-side figures are in bench/README.md (``python -m bench floor``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gastown.api.models import ExecutionMode, Phase, Polecat
from gastown.controller.coalesce import phase_steps, wait_for_work_event
from gastown.controller.reconciler import Reconciler
from gastown.executors.base import Observation, Release
from tests.unit.controller.test_reconciler_unreachable import KEY, Cache, Recorder, Store


def test_only_fresh_watch_driven_dispatches_wait_for_their_work_event() -> None:
    dispatching = Observation(phase=Phase.DISPATCHING)
    assert wait_for_work_event(dispatching, status_dispatched=False)
    assert not wait_for_work_event(dispatching, status_dispatched=True)  # already told
    polled = Observation(phase=Phase.DISPATCHING, requeue_after=5.0)
    assert not wait_for_work_event(polled, status_dispatched=False)  # local mode polls
    running = Observation(phase=Phase.WORKING)
    assert not wait_for_work_event(running, status_dispatched=False)  # nothing to wait for
    stuck = Observation(phase=Phase.STUCK, reason="PodNameTaken")
    assert not wait_for_work_event(stuck, status_dispatched=False)  # a problem is written at once


def test_a_coalesced_write_still_tells_dispatching() -> None:
    assert phase_steps(None, Phase.WORKING, coalesced=True) == [Phase.DISPATCHING, Phase.WORKING]
    assert phase_steps(Phase.PENDING, Phase.DONE, coalesced=True) == [Phase.DISPATCHING, Phase.DONE]
    assert phase_steps(None, Phase.DISPATCHING, coalesced=True) == [Phase.DISPATCHING]
    assert phase_steps(None, Phase.WORKING, coalesced=False) == [Phase.WORKING]  # dispatched this round
    assert phase_steps(Phase.DISPATCHING, Phase.WORKING, coalesced=True) == [Phase.WORKING]
    assert phase_steps(None, Phase.PENDING, coalesced=False) == []
    assert phase_steps(Phase.WORKING, Phase.WORKING, coalesced=True) == []


class PodLike:
    """Kubernetes mode's shape: dispatch creates work that is Pending; watch-driven."""

    def __init__(self) -> None:
        self.state: Phase | None = None
        self.dispatches = 0

    @property
    def needs_finalizer(self) -> bool:
        return False

    @property
    def finalizer_with_dispatch(self) -> bool:
        return False

    async def observe(self, polecat: Polecat) -> Observation:
        if self.state is None:
            return Observation(phase=None)
        return Observation(phase=self.state, reason=f"Pod{self.state.value}", message="stand-in Pod")

    async def dispatch(self, polecat: Polecat) -> Observation:
        self.dispatches += 1
        self.state = Phase.DISPATCHING
        return await self.observe(polecat)

    async def terminate(self, polecat: Polecat) -> Observation:
        return Observation(phase=Phase.TERMINATED)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        return Release(done=True)

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        if False:  # pragma: no cover - an empty async generator
            yield ""

    def attach_command(self, polecat: Polecat) -> list[str]:
        return ["true"]


def _polecat() -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "rig": "demo",
            "beadID": "de-1",
            "executionMode": "kubernetes",
            "kubernetes": {"gitRepository": "git@git.example.com:acme/x.git"},
        },
    }


def _rig() -> tuple[Reconciler, Store, PodLike, Recorder]:
    store, pod, recorder = Store(_polecat()), PodLike(), Recorder()
    reconciler = Reconciler(
        client=store,  # type: ignore[arg-type]
        polecats=Cache(store),  # type: ignore[arg-type]
        executors={ExecutionMode.KUBERNETES: pod},
        recorder=recorder,  # type: ignore[arg-type]
    )
    return reconciler, store, pod, recorder


def _conditions(store: Store) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in store.obj["status"]["conditions"]}


async def test_pod_running_by_the_next_round_means_one_write_that_tells_both_steps() -> None:
    reconciler, store, pod, recorder = _rig()
    outcome = await reconciler.reconcile(KEY)
    assert pod.dispatches == 1
    assert store.status_writes() == 0  # Dispatching waits for the Pod's watch event...
    assert outcome.requeue_after is not None and outcome.requeue_after <= 1.0  # ...for a bounded time

    pod.state = Phase.WORKING  # the Pod ran before the worker came back
    await reconciler.reconcile(KEY)
    assert store.status_writes() == 1
    status = store.obj["status"]
    assert status["phase"] == "Working"
    conditions = _conditions(store)
    assert conditions["Dispatched"]["status"] == "True"
    assert conditions["Ready"]["status"] == "True"
    assert status["startTime"] <= conditions["Ready"]["lastTransitionTime"]
    assert conditions["Dispatched"]["lastTransitionTime"] == status["startTime"]
    assert [reason for _, reason, _ in recorder.events] == ["Dispatching", "Working"]

    await reconciler.reconcile(KEY)  # nothing new: no write, no Event
    assert store.status_writes() == 1
    assert len(recorder.events) == 2
    assert pod.dispatches == 1


async def test_pod_still_pending_by_the_next_round_means_dispatching_then_working() -> None:
    reconciler, store, pod, recorder = _rig()
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)  # the Pod's ADDED event: still Pending
    assert store.obj["status"]["phase"] == "Dispatching"
    assert store.status_writes() == 1
    pod.state = Phase.WORKING
    await reconciler.reconcile(KEY)
    assert store.obj["status"]["phase"] == "Working"
    assert store.status_writes() == 2
    assert [reason for _, reason, _ in recorder.events] == ["Dispatching", "Working"]
    assert pod.dispatches == 1


class FinalizedPodLike(PodLike):
    """Kubernetes mode as it is: a finalizer added with the dispatch; the Pod not cached at once."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.cached = False
        self.in_flight = asyncio.Event()

    @property
    def needs_finalizer(self) -> bool:
        return True

    @property
    def finalizer_with_dispatch(self) -> bool:
        return True

    async def observe(self, polecat: Polecat) -> Observation:
        return await super().observe(polecat) if self.cached else Observation(phase=None)

    async def dispatch(self, polecat: Polecat) -> Observation:
        self.in_flight.set()
        # Concurrent, not one after the other: the finalizer patch is in flight meanwhile.
        await asyncio.wait_for(self.store.finalizer_in_flight.wait(), 5.0)
        return await super().dispatch(polecat)


class ConcurrentStore(Store):
    """The store; a finalizer patch waits for the dispatch to be in flight too."""

    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__(obj)
        self.finalizer_in_flight = asyncio.Event()
        self.dispatch_in_flight: asyncio.Event | None = None

    async def merge_patch(self, path: str, patch: Any, *, request_timeout: float | None = None) -> Any:
        if "finalizers" in (patch.get("metadata") or {}):
            self.finalizer_in_flight.set()
            assert self.dispatch_in_flight is not None
            await asyncio.wait_for(self.dispatch_in_flight.wait(), 5.0)
        return await super().merge_patch(path, patch, request_timeout=request_timeout)


async def test_the_finalizer_comes_with_the_dispatch_and_costs_no_status_write() -> None:
    """One extra request (the finalizer patch, concurrent with the Pod create) and no extra
    round or status write: the finalizer's own watch event, arriving before the Pod's, does
    not write Dispatching; the Pod's event then writes both steps at once."""
    store = ConcurrentStore(_polecat())
    pod, recorder = FinalizedPodLike(store), Recorder()
    store.dispatch_in_flight = pod.in_flight
    reconciler = Reconciler(
        client=store,  # type: ignore[arg-type]
        polecats=Cache(store),  # type: ignore[arg-type]
        executors={ExecutionMode.KUBERNETES: pod},
        recorder=recorder,  # type: ignore[arg-type]
    )
    await reconciler.reconcile(KEY)
    assert pod.dispatches == 1
    assert store.obj["metadata"]["finalizers"] == ["gastown.gastown.io/save-work"]
    assert len(store.patches) == 1 and store.status_writes() == 0

    await reconciler.reconcile(KEY)  # the finalizer's MODIFIED event; the Pod not cached yet
    assert store.status_writes() == 0 and pod.dispatches == 1

    pod.cached, pod.state = True, Phase.WORKING  # the Pod's event
    await reconciler.reconcile(KEY)
    assert store.status_writes() == 1 and store.obj["status"]["phase"] == "Working"
    assert [reason for _, reason, _ in recorder.events] == ["Dispatching", "Working"]
