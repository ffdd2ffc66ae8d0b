"""An executor that cannot reach the work (TransientError): reported in status, still backed off.

The reconciler runs against small in-memory stand-ins for the apiserver (a merge-patch
store with resourceVersion preconditions), the informer cache and the Event recorder,
so the rules are checked without a cluster: the phase is kept, Ready becomes Unknown
with the executor's reason and message, it is written once per change (not once per
retry), the error is re-raised for the work queue's backoff, and the next round that
reaches the work clears it. tests/reliability/test_local_faults.py checks the same
against real sshd and kube-apiserver.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import FINALIZER, ExecutionMode, Phase, Polecat
from gastown.controller.reconciler import Reconciler
from gastown.controller.status import READY, Subject, assess, get_condition, next_status, utcnow
from gastown.executors.base import Observation, Release, TransientError

KEY = "ns/p"
OUTAGE = TransientError("SSHUnreachable", "cannot connect to op@127.0.0.1:2222: Connection refused")


def _apply(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _apply(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Store:
    """One Polecat as an apiserver keeps it: merge patches, resourceVersion preconditions."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    async def merge_patch(self, path: str, patch: Any, *, request_timeout: float | None = None) -> Any:
        if self.down:
            raise ApiException(status=503, reason="Service Unavailable")
        precondition = (patch.get("metadata") or {}).get("resourceVersion")
        if precondition is not None and precondition != self.obj["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.patches.append((path, copy.deepcopy(patch)))
        body = copy.deepcopy(patch)
        body.get("metadata", {}).pop("resourceVersion", None)
        _apply(self.obj, body)
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.obj)

    def status_writes(self) -> int:
        return sum(path.endswith("/status") for path, _ in self.patches)

    def ready(self) -> dict[str, Any]:
        return next(c for c in self.obj["status"]["conditions"] if c["type"] == READY)


class Cache:
    """The informer's cache of the one Polecat (write-through, as the real one)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.store.obj) if key == KEY else None

    def write_through(self, obj: dict[str, Any]) -> None:
        pass  # get() always reads the store


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def record(self, regarding: dict[str, Any], type: str, reason: str, note: str, **_: Any) -> None:
        self.events.append((type, reason, note))


class Host:
    """A local-mode-like executor whose host can be taken away."""

    def __init__(self) -> None:
        self.down = False
        self.running = False
        self.dispatches = 0

    @property
    def needs_finalizer(self) -> bool:
        return True

    @property
    def finalizer_with_dispatch(self) -> bool:
        return False

    def _check(self) -> None:
        if self.down:
            raise OUTAGE

    async def observe(self, polecat: Polecat) -> Observation:
        self._check()
        if not self.running:
            return Observation(phase=None)
        return Observation(phase=Phase.WORKING, reason="SessionRunning", message="session is running")

    async def dispatch(self, polecat: Polecat) -> Observation:
        self._check()
        self.dispatches += 1
        self.running = True
        return await self.observe(polecat)

    async def terminate(self, polecat: Polecat) -> Observation:
        self._check()
        self.running = False
        return Observation(phase=Phase.TERMINATED)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        self._check()
        return Release(done=True)

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        if False:  # pragma: no cover - an empty async generator
            yield ""

    def attach_command(self, polecat: Polecat) -> list[str]:
        return ["true"]


def _polecat(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "1",
            "finalizers": [FINALIZER],
        },
        "spec": {"rig": "demo", "beadID": "de-1", "executionMode": "local"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _rig(obj: dict[str, Any]) -> tuple[Reconciler, Store, Host, Recorder]:
    store, host, recorder = Store(obj), Host(), Recorder()
    reconciler = Reconciler(
        client=store,  # type: ignore[arg-type]
        polecats=Cache(store),  # type: ignore[arg-type]
        executors={ExecutionMode.LOCAL: host},
        recorder=recorder,  # type: ignore[arg-type]
    )
    return reconciler, store, host, recorder


def test_the_assessment_keeps_the_phase_and_makes_ready_unknown() -> None:
    working = Polecat.from_dict(
        _polecat({"phase": "Working", "startTime": "2026-01-01T00:00:00Z", "conditions": []})
    )
    assessment = assess(Subject.of(working), OUTAGE)
    assert (assessment.phase, assessment.ready, assessment.reason) == (
        Phase.WORKING,
        "Unknown",
        "SSHUnreachable",
    )
    assert assessment.dispatched
    assert assessment.message.startswith("cannot connect to op@127.0.0.1:2222: Connection refused; retrying")
    status = next_status(working, assessment, now=utcnow())
    assert status.phase is Phase.WORKING
    ready = get_condition(status, READY)
    assert ready is not None and ready.status == "Unknown"

    fresh = assess(Subject.of(Polecat.from_dict(_polecat())), OUTAGE)
    assert (fresh.phase, fresh.dispatched) == (Phase.PENDING, False)


async def test_an_outage_is_written_once_reraised_and_cleared_when_the_host_is_back() -> None:
    reconciler, store, host, recorder = _rig(_polecat())
    await reconciler.reconcile(KEY)
    assert store.obj["status"]["phase"] == "Working"
    assert store.ready()["status"] == "True"
    writes = store.status_writes()

    host.down = True
    for _ in range(3):  # every round raises, for the work queue's backoff
        with pytest.raises(TransientError) as raised:
            await reconciler.reconcile(KEY)
        assert raised.value is OUTAGE
    assert store.status_writes() == writes + 1  # written once, not once per retry
    assert store.obj["status"]["phase"] == "Working"  # the last phase observed is kept
    ready = store.ready()
    assert (ready["status"], ready["reason"]) == ("Unknown", "SSHUnreachable")
    assert "127.0.0.1:2222" in ready["message"] and "retrying" in ready["message"]
    assert [e for e in recorder.events if e[1] == "SSHUnreachable"] == [
        ("Warning", "SSHUnreachable", ready["message"])
    ]

    host.down = False
    await reconciler.reconcile(KEY)
    ready = store.ready()
    assert (ready["status"], ready["reason"]) == ("True", "SessionRunning")
    assert host.dispatches == 1  # the outage did not cause a second dispatch


async def test_a_polecat_created_during_an_outage_gets_a_status() -> None:
    reconciler, store, host, _ = _rig(_polecat())
    host.down = True
    with pytest.raises(TransientError):
        await reconciler.reconcile(KEY)
    assert store.obj["status"]["phase"] == "Pending"
    assert store.ready()["status"] == "Unknown"
    assert host.dispatches == 0

    host.down = False
    await reconciler.reconcile(KEY)
    assert store.obj["status"]["phase"] == "Working"
    assert host.dispatches == 1


async def test_the_executor_error_is_raised_even_when_the_status_cannot_be_written() -> None:
    reconciler, store, host, _ = _rig(_polecat())
    host.down = store.down = True
    with pytest.raises(TransientError) as raised:
        await reconciler.reconcile(KEY)
    assert raised.value is OUTAGE
    assert "status" not in store.obj


async def test_a_deletion_blocked_by_an_outage_says_so_and_keeps_the_finalizer() -> None:
    obj = _polecat({"phase": "Working", "startTime": "2026-01-01T00:00:00Z"})
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    reconciler, store, host, _ = _rig(obj)
    host.down = True
    with pytest.raises(TransientError):
        await reconciler.reconcile(KEY)
    assert store.obj["metadata"]["finalizers"] == [FINALIZER]
    assert (store.ready()["status"], store.ready()["reason"]) == ("Unknown", "SSHUnreachable")

    host.down = False
    await reconciler.reconcile(KEY)
    assert store.obj["metadata"]["finalizers"] == []
