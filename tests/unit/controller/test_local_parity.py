"""Local-mode parity in the pure status module: the run deadline and lastActivity's granularity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gastown.api.models import Phase, Polecat, ResultStatus
from gastown.controller.status import DEADLINE_EXCEEDED, Subject, deadline_exceeded, decide, past_deadline
from gastown.executors.base import Observation

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _polecat(deadline: int | None, *, mode: str = "local", activity: datetime | None = None) -> Polecat:
    spec: dict[str, object] = {"rig": "demo", "beadID": "de-1", "executionMode": mode}
    if mode == "local":
        spec["local"] = {"dispatcher": "tmux", "command": "true", "activeDeadlineSeconds": deadline}
    else:
        spec["kubernetes"] = {"gitRepository": "https://example.invalid/r.git"}
    status: dict[str, object] = {"phase": "Working", "startTime": T0.isoformat()}
    if activity is not None:
        status["lastActivity"] = activity.isoformat()
    return Polecat.from_dict(
        {"metadata": {"name": "p", "namespace": "ns", "generation": 1}, "spec": spec, "status": status}
    )


def test_the_deadline_counts_from_start_time() -> None:
    assert not past_deadline(_polecat(60), T0 + timedelta(seconds=60))
    assert past_deadline(_polecat(60), T0 + timedelta(seconds=61))
    assert not past_deadline(_polecat(None), T0 + timedelta(days=30))  # no deadline by default
    assert not past_deadline(_polecat(None, mode="kubernetes"), T0 + timedelta(days=30))


def test_a_stopped_run_past_its_deadline_is_failed_with_its_result() -> None:
    stopped = Observation(
        Phase.TERMINATED,
        "Terminated",
        "tmux session gastown-ns-p was stopped",
        result=ResultStatus(branch="b"),
    )
    finding = deadline_exceeded(_polecat(60), stopped)
    decision = decide(Subject.of(_polecat(60)), finding, now=T0 + timedelta(seconds=70))
    assert decision.status.phase is Phase.FAILED
    ready = decision.status.conditions[0]
    assert (ready.status, ready.reason) == ("False", DEADLINE_EXCEEDED)
    assert "spec.local.activeDeadlineSeconds (60s)" in ready.message and "kept" in ready.message
    assert decision.status.result == ResultStatus(branch="b")
    assert decision.status.completionTime is not None


def test_last_activity_moves_only_by_a_minute_or_more() -> None:
    polecat = _polecat(None, activity=T0)
    running = Observation(
        Phase.WORKING, "SessionRunning", "running", last_activity=T0 + timedelta(seconds=59)
    )
    kept = decide(Subject.of(polecat), running, now=T0 + timedelta(seconds=60))
    assert kept.status.lastActivity == T0  # no write for a few seconds of activity
    moved = Observation(Phase.WORKING, "SessionRunning", "running", last_activity=T0 + timedelta(seconds=61))
    assert decide(Subject.of(polecat), moved, now=T0).status.lastActivity == T0 + timedelta(seconds=61)
    first = decide(Subject.of(_polecat(None)), running, now=T0)
    assert first.status.lastActivity == T0 + timedelta(seconds=59)
