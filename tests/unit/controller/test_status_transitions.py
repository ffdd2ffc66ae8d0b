"""Every status transition, as a table: (status now, desiredState, what the round learned) →
(phase, Ready, Dispatched, Event).

:func:`gastown.controller.status.decide` is the one place that computes a Polecat's
status, so this table is the whole rule book; the reconciler only decides which executor
calls to make. The first part lists each transition with its expected outcome written
out; the second sweeps every phase × finding × desiredState × "work was started" and
checks the promises that hold for all of them (observedGeneration, transition times
that move only on a flip, completionTime, errors keeping the phase, a second identical
round writing and recording nothing).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gastown.api.models import ANNOTATION_FORCE_DELETE, ExecutionMode, Phase, Polecat
from gastown.controller.status import (
    DISPATCHED,
    READY,
    RELEASE_UNFINISHED,
    UNCHANGED,
    Finding,
    Subject,
    decide,
    get_condition,
    invalid_spec,
    mode_disabled,
    release_mode_disabled,
    status_wire,
)
from gastown.executors.base import Observation, Release, TransientError, UserError

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
GENERATION = 4

SECRET = UserError("SecretNotFound", "Secret 'git' not found in namespace ns; create it or fix gitSecretRef.")
OUTAGE = TransientError("SSHUnreachable", "cannot connect to op@127.0.0.1:2222: Connection refused")
UNPUSHED = Release(done=False, reason="UnpushedWork", message="push the work, or set force-delete")


def polecat(
    phase: Phase | None = None,
    ready: tuple[str, str] = ("False", "Pending"),
    *,
    started: bool = False,
    desired: str = "Working",
    mode: str = "local",
) -> Polecat:
    """A Polecat whose status is in ``phase`` with Ready ``(status, reason)``; no status if None."""
    obj: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "ns", "generation": GENERATION, "resourceVersion": "9"},
        "spec": {"rig": "rig", "beadID": "gt-1", "desiredState": desired, "executionMode": mode},
    }
    if phase is not None:
        status: dict[str, Any] = {
            "phase": phase.value,
            "observedGeneration": GENERATION - 1,
            "conditions": [
                {
                    "type": READY,
                    "status": ready[0],
                    "reason": ready[1],
                    "message": f"was {ready[1]}",
                    "lastTransitionTime": "2026-01-01T11:00:00Z",
                }
            ],
        }
        if started:
            status["startTime"] = "2026-01-01T11:00:00Z"
        if phase in (Phase.DONE, Phase.FAILED, Phase.TERMINATED):
            status["completionTime"] = "2026-01-01T11:30:00Z"
        obj["status"] = status
    return Polecat.from_dict(obj)


@dataclass(frozen=True)
class Row:
    """One transition: the input and what must come out."""

    name: str
    before: Polecat
    finding: Finding
    dispatched: bool
    phase: Phase
    ready: tuple[str, str]  # (status, reason) of Ready
    dispatched_condition: tuple[str, str]  # (status, reason) of Dispatched
    event: tuple[str, str] | None  # (type, reason) of the one Event, if any


W, T = "Working", "Terminated"
RUNNING = ("True", "StandInWorking")

ROWS = [
    # -- desiredState Working: the work's life ----------------------------------------
    Row("new, nothing runs yet", polecat(), Observation(None), False,
        Phase.PENDING, ("False", "Pending"), ("False", "NotDispatched"), None),
    Row("first status, nothing runs yet", polecat(None), Observation(None), False,
        Phase.PENDING, ("False", "Pending"), ("False", "NotDispatched"), None),
    Row("dispatched, no phase yet", polecat(Phase.PENDING), Observation(None, "Creating", "creating Pod"),
        True,
        Phase.DISPATCHING, ("False", "Creating"), ("True", "Dispatched"), ("Normal", "Dispatching")),
    Row("dispatched, executor says Dispatching", polecat(Phase.PENDING), Observation(Phase.DISPATCHING), True,
        Phase.DISPATCHING, ("False", "Dispatching"), ("True", "Dispatched"), ("Normal", "Dispatching")),
    Row("starts working", polecat(Phase.DISPATCHING, started=True), Observation(Phase.WORKING, "PodRunning"),
        True, Phase.WORKING, ("True", "PodRunning"), ("True", "Dispatched"), ("Normal", "Working")),
    Row("goes on working", polecat(Phase.WORKING, RUNNING, started=True),
        Observation(Phase.WORKING, "StandInWorking"), True,
        Phase.WORKING, RUNNING, ("True", "Dispatched"), None),
    Row("finishes", polecat(Phase.WORKING, RUNNING, started=True), Observation(Phase.DONE), True,
        Phase.DONE, ("True", "Completed"), ("True", "Dispatched"), ("Normal", "Completed")),
    Row("fails", polecat(Phase.WORKING, RUNNING, started=True),
        Observation(Phase.FAILED, "PodFailed", "exit 3"), True,
        Phase.FAILED, ("False", "PodFailed"), ("True", "Dispatched"), ("Warning", "PodFailed")),
    Row("fails, no reason", polecat(Phase.WORKING, RUNNING, started=True), Observation(Phase.FAILED), True,
        Phase.FAILED, ("False", "Failed"), ("True", "Dispatched"), ("Warning", "Failed")),
    Row("gets stuck", polecat(Phase.WORKING, RUNNING, started=True), Observation(Phase.STUCK, "Stalled"),
        True,
        Phase.STUCK, ("False", "Stalled"), ("True", "Dispatched"), ("Warning", "Stalled")),
    Row("recovers from stuck", polecat(Phase.STUCK, ("False", "Stalled"), started=True),
        Observation(Phase.WORKING, "StandInWorking"), True,
        Phase.WORKING, RUNNING, ("True", "Dispatched"), ("Normal", "Working")),
    Row("work vanished, dispatched again", polecat(Phase.WORKING, RUNNING, started=True), Observation(None),
        True,
        Phase.DISPATCHING, ("False", "Dispatching"), ("True", "Dispatched"), ("Normal", "Dispatching")),
    # -- nothing new: terminal phases, and a dispatch the cache has not caught up with -
    Row("done stays done", polecat(Phase.DONE, ("True", "Completed"), started=True), UNCHANGED, False,
        Phase.DONE, ("True", "Completed"), ("True", "Dispatched"), None),
    Row("failed stays failed", polecat(Phase.FAILED, ("False", "PodFailed"), started=True), UNCHANGED, False,
        Phase.FAILED, ("False", "PodFailed"), ("True", "Dispatched"), None),
    Row("terminated stays terminated, even asked to work", polecat(Phase.TERMINATED, ("True", "Killed")),
        UNCHANGED, False, Phase.TERMINATED, ("True", "Killed"), ("False", "Terminated"), None),
    Row("dispatch not in the cache yet", polecat(Phase.PENDING), UNCHANGED, True,
        Phase.DISPATCHING, ("False", "Dispatching"), ("True", "Dispatched"), ("Normal", "Dispatching")),
    Row("dispatch still not in the cache", polecat(Phase.DISPATCHING, ("False", "Creating"), started=True),
        UNCHANGED, True, Phase.DISPATCHING, ("False", "Creating"), ("True", "Dispatched"), None),
    # -- user errors: the phase is kept, Ready says what to fix ------------------------
    Row("user error before dispatch", polecat(Phase.PENDING), SECRET, False,
        Phase.PENDING, ("False", "SecretNotFound"), ("False", "SecretNotFound"),
        ("Warning", "SecretNotFound")),
    Row("user error on a first status", polecat(None), SECRET, False,
        Phase.PENDING, ("False", "SecretNotFound"), ("False", "SecretNotFound"),
        ("Warning", "SecretNotFound")),
    Row("same user error again: no second Event", polecat(Phase.PENDING, ("False", "SecretNotFound")), SECRET,
        False, Phase.PENDING, ("False", "SecretNotFound"), ("False", "SecretNotFound"), None),
    Row("user error while working", polecat(Phase.WORKING, RUNNING, started=True), SECRET, False,
        Phase.WORKING, ("False", "SecretNotFound"), ("True", "Dispatched"), ("Warning", "SecretNotFound")),
    Row("mode not enabled", polecat(None), mode_disabled(polecat(), [ExecutionMode.KUBERNETES]), False,
        Phase.PENDING, ("False", "ExecutionModeDisabled"), ("False", "ExecutionModeDisabled"),
        ("Warning", "ExecutionModeDisabled")),
    # -- transient errors: the phase is kept, Ready is Unknown -------------------------
    Row("host unreachable while working", polecat(Phase.WORKING, RUNNING, started=True), OUTAGE, False,
        Phase.WORKING, ("Unknown", "SSHUnreachable"), ("True", "Dispatched"), ("Warning", "SSHUnreachable")),
    Row("host still unreachable: no second Event",
        polecat(Phase.WORKING, ("Unknown", "SSHUnreachable"), started=True), OUTAGE, False,
        Phase.WORKING, ("Unknown", "SSHUnreachable"), ("True", "Dispatched"), None),
    Row("host unreachable on a first status", polecat(None), OUTAGE, False,
        Phase.PENDING, ("Unknown", "SSHUnreachable"), ("False", "NotDispatched"),
        ("Warning", "SSHUnreachable")),
    Row("host back", polecat(Phase.WORKING, ("Unknown", "SSHUnreachable"), started=True),
        Observation(Phase.WORKING, "StandInWorking"), True,
        Phase.WORKING, RUNNING, ("True", "Dispatched"), None),
    # -- desiredState Terminated ---------------------------------------------------------
    Row("stopped while working", polecat(Phase.WORKING, RUNNING, started=True, desired=T),
        Observation(Phase.TERMINATED, "Killed"), True,
        Phase.TERMINATED, ("True", "Killed"), ("True", "Dispatched"), ("Normal", "Terminated")),
    Row("stopped before any work", polecat(Phase.PENDING, desired=T), Observation(None), False,
        Phase.TERMINATED, ("True", "Terminated"), ("False", "Terminated"), ("Normal", "Terminated")),
    Row("stop finds no phase: Terminated, without the executor's words",
        polecat(Phase.WORKING, RUNNING, started=True, desired=T), Observation(None, "Gone", "nothing"), True,
        Phase.TERMINATED, ("True", "Terminated"), ("True", "Dispatched"), ("Normal", "Terminated")),
    Row("stop sees it still working", polecat(Phase.WORKING, RUNNING, started=True, desired=T),
        Observation(Phase.WORKING, "StandInWorking"), True,
        Phase.TERMINATED, ("True", "Terminated"), ("True", "Dispatched"), ("Normal", "Terminated")),
    Row("finished before the stop", polecat(Phase.WORKING, RUNNING, started=True, desired=T),
        Observation(Phase.DONE, "PodSucceeded"), True,
        Phase.DONE, ("True", "PodSucceeded"), ("True", "Dispatched"), ("Normal", "Completed")),
    Row("failed before the stop", polecat(Phase.WORKING, RUNNING, started=True, desired=T),
        Observation(Phase.FAILED, "PodFailed"), True,
        Phase.FAILED, ("False", "PodFailed"), ("True", "Dispatched"), ("Warning", "PodFailed")),
    # -- deletion: cleanup held back --------------------------------------------------
    Row("deletion held: unpushed work", polecat(Phase.WORKING, RUNNING, started=True), UNPUSHED, False,
        Phase.WORKING, ("False", "UnpushedWork"), ("True", "Dispatched"), ("Warning", "UnpushedWork")),
    Row("deletion held, no reason given", polecat(Phase.DONE, ("True", "Completed"), started=True),
        Release(done=False), False,
        Phase.DONE, ("False", "ReleaseBlocked"), ("True", "Dispatched"), ("Warning", "ReleaseBlocked")),
    Row("deletion, mode not enabled", polecat(Phase.WORKING, RUNNING, started=True),
        release_mode_disabled(polecat()), False,
        Phase.WORKING, ("False", "ReleaseBlocked"), ("True", "Dispatched"), ("Warning", "ReleaseBlocked")),
    Row("deletion, host unreachable", polecat(Phase.DONE, ("True", "Completed"), started=True), OUTAGE, False,
        Phase.DONE, ("Unknown", "SSHUnreachable"), ("True", "Dispatched"), ("Warning", "SSHUnreachable")),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_transition(row: Row) -> None:
    decision = decide(Subject.of(row.before), row.finding, dispatched=row.dispatched, now=T1)
    status = decision.status
    assert status.phase is row.phase
    ready = get_condition(status, READY)
    dispatched = get_condition(status, DISPATCHED)
    assert ready is not None and dispatched is not None
    assert (ready.status, ready.reason) == row.ready
    assert (dispatched.status, dispatched.reason) == row.dispatched_condition
    assert [(n.type, n.reason) for n in decision.notes] == ([row.event] if row.event else [])
    assert ready.message  # never empty: it says what is going on
    for note in decision.notes:
        assert note.message == ready.message


def test_messages_say_what_is_wrong_and_what_to_do() -> None:
    outage = decide(Subject.of(polecat(Phase.WORKING, RUNNING)), OUTAGE, now=T1)
    ready = get_condition(outage.status, READY)
    assert ready is not None
    assert ready.message == (
        "cannot connect to op@127.0.0.1:2222: Connection refused; retrying with backoff. "
        "The phase is the last one observed."
    )
    disabled = mode_disabled(polecat(), [ExecutionMode.KUBERNETES])
    assert "'local' is not enabled" in disabled.message and "enabled modes: kubernetes" in disabled.message
    assert "enabled modes: none" in mode_disabled(polecat(), []).message
    assert f"{ANNOTATION_FORCE_DELETE}=true" in release_mode_disabled(polecat()).message
    held = decide(Subject.of(polecat(Phase.DONE)), Release(done=False), now=T1)
    assert get_condition(held.status, READY).message == RELEASE_UNFINISHED  # type: ignore[union-attr]


def test_dispatch_note_is_a_dispatch_action_and_counts_the_transition() -> None:
    decision = decide(Subject.of(polecat(Phase.PENDING)), Observation(None), dispatched=True, now=T1)
    (note,) = decision.notes
    assert (note.action, note.transition) == ("Dispatch", (Phase.PENDING, Phase.DISPATCHING))
    decision = decide(Subject.of(polecat(None)), Observation(Phase.WORKING), dispatched=True, now=T1)
    (note,) = decision.notes
    assert (note.action, note.transition) == ("Reconcile", (None, Phase.WORKING))


class _Spec(BaseModel):
    beadID: int


def test_an_invalid_spec_gets_a_status_from_the_raw_object() -> None:
    with pytest.raises(ValidationError) as raised:
        _Spec.model_validate({"beadID": "not a number"})
    error = invalid_spec(raised.value)
    assert error.reason == "InvalidSpec"
    assert error.message.startswith("The Polecat's spec is not valid: beadID: ")
    assert error.message.endswith("Fix the spec and apply it again.")

    raw = {"metadata": {"generation": 3}, "status": {"phase": "NotAPhase", "conditions": "garbage"}}
    decision = decide(Subject.of_raw(raw), error, now=T0)
    ready = get_condition(decision.status, READY)
    assert decision.status.phase is Phase.PENDING and decision.status.observedGeneration == 3
    assert ready is not None and (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert [(n.type, n.reason) for n in decision.notes] == [("Warning", "InvalidSpec")]

    # Stored again, the same problem writes nothing new and records nothing.
    stored = {**raw, "status": status_wire(decision.status)}
    again = decide(Subject.of_raw(stored), error, now=T1)
    assert again.wire == stored["status"] and again.notes == []

    working = {
        "metadata": {"generation": 5},
        "status": {"phase": "Working", "startTime": "2026-01-01T11:00:00Z"},
    }
    kept = decide(Subject.of_raw(working), error, now=T1)
    assert kept.status.phase is Phase.WORKING  # the phase is kept, as for every user error


# -- every combination: the promises that hold for all of them ------------------------------

PHASES: list[Phase | None] = [None, *Phase]
FINDINGS: list[Finding] = [
    *(Observation(p, f"Exec{p.value}" if p else "") for p in [None, *Phase]),
    UNCHANGED,
    SECRET,
    OUTAGE,
    UNPUSHED,
]


def _before(phase: Phase | None, desired: str, dispatched: bool) -> Polecat:
    ready = ("True", "Was") if phase in (Phase.WORKING, Phase.DONE) else ("False", "Was")
    return polecat(phase, ready, started=dispatched and phase is not None, desired=desired)


@pytest.mark.parametrize(
    ("phase", "desired", "dispatched"),
    list(itertools.product(PHASES, [W, T], [False, True])),
    ids=str,
)
def test_every_combination_keeps_the_promises(phase: Phase | None, desired: str, dispatched: bool) -> None:
    before = _before(phase, desired, dispatched)
    old_ready = get_condition(before.status, READY)
    for finding in FINDINGS:
        decision = decide(Subject.of(before), finding, dispatched=dispatched, now=T1)
        new = decision.status
        what = (phase, desired, dispatched, finding)

        assert new.observedGeneration == GENERATION, what
        assert all(c.observedGeneration == GENERATION for c in new.conditions), what
        assert {c.type for c in new.conditions} == {READY, DISPATCHED}, what

        ready = get_condition(new, READY)
        assert ready is not None and ready.reason and ready.message, what
        if old_ready is not None and old_ready.status == ready.status:
            assert ready.lastTransitionTime == old_ready.lastTransitionTime, what  # kept: no flip
        else:
            assert ready.lastTransitionTime == T1, what

        if isinstance(finding, UserError | TransientError | Release):
            assert new.phase is (phase or Phase.PENDING), what  # errors never move the phase
            assert ready.status == ("Unknown" if isinstance(finding, TransientError) else "False"), what
        if finding is UNCHANGED and phase is not None and phase is not Phase.PENDING:
            assert new.phase is phase, what

        terminal = new.phase in (Phase.DONE, Phase.FAILED, Phase.TERMINATED)
        completed_before = before.status.completionTime if before.status is not None else None
        assert (new.completionTime is not None) == (terminal or completed_before is not None), what
        if completed_before is not None:
            assert new.completionTime == completed_before, what  # set once
        started = get_condition(new, DISPATCHED)
        assert started is not None and (new.startTime is not None) == (started.status == "True"), what

        first = phase is None and new.phase is Phase.PENDING  # a first status is no transition
        transitions = [n for n in decision.notes if n.transition is not None]
        assert len(transitions) == (1 if new.phase is not phase and not first else 0), what
        assert len(decision.notes) <= 1, what

        # The same round again, on the status as stored: nothing to write, nothing to record.
        stored = before.to_dict()
        stored["status"] = status_wire(new)
        again = decide(
            Subject.of(Polecat.from_dict(stored)), finding, dispatched=dispatched, now=T1 + timedelta(1)
        )
        assert again.wire == stored["status"], what
        assert again.notes == [], what


def test_desired_state_terminated_never_reports_a_running_phase() -> None:
    for phase, finding in itertools.product(PHASES, FINDINGS):
        if not isinstance(finding, Observation):
            continue
        decision = decide(Subject.of(_before(phase, T, True)), finding, dispatched=True, now=T1)
        assert decision.status.phase in (Phase.DONE, Phase.FAILED, Phase.TERMINATED), (phase, finding)
        if decision.status.phase is Phase.TERMINATED:
            ready = get_condition(decision.status, READY)
            assert ready is not None and ready.status == "True"  # where the user asked it to be
