"""Status computation: conditions, transition times, start/completion times, merge patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gastown.api.models import (
    Condition,
    DesiredState,
    ExecutionMode,
    KubernetesStatus,
    Phase,
    Polecat,
    ResultStatus,
)
from gastown.controller.status import (
    DISPATCHED,
    READY,
    Assessment,
    get_condition,
    merge_patch,
    next_status,
    normalize_status,
    ready_status,
    set_condition,
    status_wire,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


def _polecat(
    status: dict[str, Any] | None = None, *, generation: int = 1, desired: str = "Working"
) -> Polecat:
    obj: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "ns", "generation": generation, "resourceVersion": "7"},
        "spec": {"rig": "rig", "beadID": "gt-1", "desiredState": desired, "executionMode": "kubernetes"},
    }
    if status is not None:
        obj["status"] = status
    return Polecat.from_dict(obj)


def _advance(polecat: Polecat, assessment: Assessment, now: datetime) -> Polecat:
    """Apply a round's status to the Polecat, as the apiserver would store it."""
    obj = polecat.to_dict()
    obj["status"] = status_wire(next_status(polecat, assessment, now=now))
    return Polecat.from_dict(obj)


def test_first_round_pending_sets_conditions_and_observed_generation() -> None:
    status = next_status(_polecat(generation=3), Assessment(phase=Phase.PENDING), now=T0)
    assert status.phase is Phase.PENDING
    assert status.observedGeneration == 3
    ready = get_condition(status, READY)
    dispatched = get_condition(status, DISPATCHED)
    assert ready is not None and dispatched is not None
    assert (ready.status, ready.reason, ready.lastTransitionTime) == ("False", "Pending", T0)
    assert ready.observedGeneration == 3
    assert (dispatched.status, dispatched.reason) == ("False", "NotDispatched")
    assert status.startTime is None and status.completionTime is None


def test_lifecycle_keeps_transition_times_until_status_flips() -> None:
    p = _advance(_polecat(), Assessment(phase=Phase.DISPATCHING, dispatched=True), T0)
    assert p.status is not None
    assert p.status.startTime == T0
    dispatched = get_condition(p.status, DISPATCHED)
    assert dispatched is not None and (dispatched.status, dispatched.lastTransitionTime) == ("True", T0)

    p = _advance(p, Assessment(phase=Phase.WORKING, dispatched=True, reason="PodRunning"), T1)
    assert p.status is not None
    ready = get_condition(p.status, READY)
    assert ready is not None and (ready.status, ready.reason, ready.lastTransitionTime) == (
        "True",
        "PodRunning",
        T1,
    )
    dispatched = get_condition(p.status, DISPATCHED)
    assert dispatched is not None and dispatched.lastTransitionTime == T0  # unchanged status: time kept
    assert p.status.startTime == T0

    p = _advance(
        p,
        Assessment(
            phase=Phase.DONE, dispatched=True, result=ResultStatus(branch="b", commit="c", pushed=True)
        ),
        T2,
    )
    assert p.status is not None
    ready = get_condition(p.status, READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", "Completed")
    assert ready.lastTransitionTime == T1  # True -> True: kept even though the reason changed
    assert p.status.completionTime == T2
    assert p.status.result is not None and p.status.result.commit == "c"


def test_same_assessment_twice_yields_identical_wire_status() -> None:
    assessment = Assessment(
        phase=Phase.WORKING, dispatched=True, kubernetes=KubernetesStatus(podName="polecat-p")
    )
    p = _advance(_polecat(), assessment, T0)
    again = status_wire(next_status(p, assessment, now=T2))
    assert normalize_status(p.to_dict()["status"]) == again


def test_details_are_kept_when_an_observation_has_none() -> None:
    p = _advance(
        _polecat(),
        Assessment(phase=Phase.DONE, dispatched=True, kubernetes=KubernetesStatus(podName="x")),
        T0,
    )
    status = next_status(p, Assessment(phase=Phase.DONE, dispatched=True), now=T1)
    assert status.kubernetes is not None and status.kubernetes.podName == "x"


def test_user_error_is_ready_false_with_its_reason_and_message() -> None:
    status = next_status(
        _polecat(),
        Assessment(
            phase=Phase.PENDING, reason="SecretNotFound", message="Secret 'git' not found", ready="False"
        ),
        now=T0,
    )
    ready = get_condition(status, READY)
    dispatched = get_condition(status, DISPATCHED)
    assert ready is not None and (ready.status, ready.reason, ready.message) == (
        "False",
        "SecretNotFound",
        "Secret 'git' not found",
    )
    assert dispatched is not None and dispatched.reason == "SecretNotFound"


def test_terminated_on_request_is_ready_and_records_completion() -> None:
    p = _polecat(desired="Terminated")
    status = next_status(p, Assessment(phase=Phase.TERMINATED), now=T0)
    ready = get_condition(status, READY)
    dispatched = get_condition(status, DISPATCHED)
    assert ready is not None and (ready.status, ready.reason) == ("True", "Terminated")
    assert dispatched is not None and (dispatched.status, dispatched.reason) == ("False", "Terminated")
    assert status.completionTime == T0


def test_ready_status_by_phase() -> None:
    working = DesiredState.WORKING
    assert ready_status(Phase.WORKING, working) == "True"
    assert ready_status(Phase.DONE, working) == "True"
    assert ready_status(Phase.FAILED, working) == "False"
    assert ready_status(Phase.STUCK, working) == "False"
    assert ready_status(Phase.PENDING, working) == "False"
    assert ready_status(Phase.TERMINATED, working) == "False"
    assert ready_status(Phase.TERMINATED, DesiredState.TERMINATED) == "True"


def test_generation_bump_updates_observed_generation_everywhere() -> None:
    p = _advance(_polecat(generation=1), Assessment(phase=Phase.WORKING, dispatched=True), T0)
    obj = p.to_dict()
    obj["metadata"]["generation"] = 2
    status = next_status(Polecat.from_dict(obj), Assessment(phase=Phase.WORKING, dispatched=True), now=T1)
    assert status.observedGeneration == 2
    assert all(c.observedGeneration == 2 for c in status.conditions)
    assert all(c.lastTransitionTime == T0 for c in status.conditions)


def test_set_condition_leaves_other_types_alone() -> None:
    other = Condition(type="Other", status="True", reason="X", lastTransitionTime=T0)
    out = set_condition([other], type=READY, status="True", reason="R", message="m", generation=1, now=T1)
    assert [c.type for c in out] == ["Other", READY]
    assert out[0] == other


def test_wire_times_are_rfc3339_utc_seconds() -> None:
    wire = status_wire(next_status(_polecat(), Assessment(phase=Phase.DISPATCHING, dispatched=True), now=T0))
    assert wire["startTime"] == "2026-01-01T12:00:00Z"
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_merge_patch_is_minimal_and_deletes_with_null() -> None:
    old = {"phase": "Working", "kubernetes": {"podName": "a", "podPhase": "Running"}, "gone": 1, "same": [1]}
    new = {
        "phase": "Done",
        "kubernetes": {"podName": "a", "podPhase": "Succeeded"},
        "same": [1],
        "added": True,
    }
    assert merge_patch(old, new) == {
        "phase": "Done",
        "kubernetes": {"podPhase": "Succeeded"},
        "gone": None,
        "added": True,
    }
    assert merge_patch(new, new) == {}
    assert merge_patch({}, new) == new


def test_normalize_status_tolerates_garbage() -> None:
    assert normalize_status(None) is None
    assert normalize_status({}) is None
    assert normalize_status({"phase": "NotAPhase"}) is None


def test_the_mode_is_recorded_at_dispatch_and_kept() -> None:
    """status.executionMode feeds `kubectl get`'s Mode column, also when the spec leaves it to a Rig."""
    pending = _advance(_polecat(), Assessment(phase=Phase.PENDING), T0)
    assert pending.status is not None and pending.status.executionMode is None
    working = _advance(pending, Assessment(phase=Phase.WORKING, dispatched=True), T1)
    assert working.status is not None and working.status.executionMode is ExecutionMode.KUBERNETES
    local = working.model_copy(
        update={"spec": working.spec.model_copy(update={"executionMode": ExecutionMode.LOCAL})}
    )
    done = _advance(local, Assessment(phase=Phase.DONE), T2)
    assert done.status is not None and done.status.executionMode is ExecutionMode.KUBERNETES
