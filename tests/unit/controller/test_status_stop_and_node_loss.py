"""Status decisions for a stop on request, a deletion that saves the work, and a lost node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gastown.api.models import DesiredState, KubernetesStatus, Phase, PolecatStatus, ResultStatus
from gastown.controller.status import (
    READY,
    WORK_SAVED,
    Subject,
    decide,
    get_condition,
    node_lost_requeue,
    node_lost_verdict,
)
from gastown.executors.base import Observation, Release, WorkSaved

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
WORKING = PolecatStatus(phase=Phase.WORKING, startTime=T0)
K8S = KubernetesStatus(podName="polecat-p", podPhase="Running", nodeName="node-1")


def stopping() -> Observation:
    return Observation(
        phase=Phase.WORKING,
        reason="Stopping",
        message="stopping on request: the runner is saving the work to branch polecat/p",
        kubernetes=K8S,
        stopping=True,
    )


def stopped(pushed: bool) -> Observation:
    saved = WorkSaved("True", "Pushed", "pushed") if pushed else WorkSaved("False", "PushFailed", "refused")
    return Observation(
        phase=Phase.TERMINATED,
        reason="Stopped",
        message="stopped on request; ...",
        kubernetes=K8S,
        result=ResultStatus(branch="polecat/p", commit="c" * 40 if pushed else None, pushed=pushed),
        work_saved=saved,
    )


def lost(since: datetime) -> Observation:
    return Observation(
        phase=Phase.STUCK,
        reason="NodeNotReady",
        message="node node-1 ...",
        kubernetes=K8S,
        node_lost_since=since,
    )


def test_terminate_while_the_runner_saves_is_not_terminated_yet() -> None:
    subject = Subject(WORKING, 2, DesiredState.TERMINATED)
    decision = decide(subject, stopping(), now=T0)
    assert decision.status.phase is Phase.WORKING
    ready = get_condition(decision.status, READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "Stopping")
    assert decision.status.completionTime is None
    assert [(n.type, n.reason) for n in decision.notes] == [("Normal", "Stopping")]


def test_terminate_ends_terminated_with_the_result_and_work_saved() -> None:
    subject = Subject(WORKING, 2, DesiredState.TERMINATED)
    decision = decide(subject, stopped(pushed=True), now=T0)
    status = decision.status
    assert status.phase is Phase.TERMINATED and status.completionTime == T0
    assert status.result is not None and status.result.pushed is True
    ready, saved = get_condition(status, READY), get_condition(status, WORK_SAVED)
    assert ready is not None and (ready.status, ready.reason) == ("True", "Stopped")
    assert saved is not None and (saved.status, saved.reason) == ("True", "Pushed")


def test_a_held_deletion_shows_the_result_and_why_it_is_held() -> None:
    release = Release(
        done=False, reason="WorkNotSaved", message="deletion held ...", observation=stopped(False)
    )
    decision = decide(Subject(WORKING, 1), release, now=T0)
    status = decision.status
    assert status.phase is Phase.TERMINATED
    assert status.result is not None and status.result.pushed is False
    ready, saved = get_condition(status, READY), get_condition(status, WORK_SAVED)
    assert ready is not None and (ready.status, ready.reason, ready.message) == (
        "False",
        "WorkNotSaved",
        "deletion held ...",
    )
    assert saved is not None and (saved.status, saved.reason) == ("False", "PushFailed")
    assert [(n.type, n.reason) for n in decision.notes] == [
        ("Normal", "Terminated"),
        ("Warning", "WorkNotSaved"),
    ]


def test_a_finished_deletion_records_the_result_as_is() -> None:
    release = Release(done=True, message="pushed", observation=stopped(True))
    status = decide(Subject(WORKING, 1), release, now=T0).status
    assert status.phase is Phase.TERMINATED
    saved = get_condition(status, WORK_SAVED)
    assert saved is not None and saved.status == "True"


def test_a_lost_node_is_stuck_until_the_timeout_then_failed() -> None:
    before = decide(Subject(WORKING, 1), lost(T0), now=T0 + timedelta(seconds=299), node_lost_timeout=300)
    assert before.status.phase is Phase.STUCK
    after = decide(Subject(WORKING, 1), lost(T0), now=T0 + timedelta(seconds=300), node_lost_timeout=300)
    assert after.status.phase is Phase.FAILED
    ready = get_condition(after.status, READY)
    assert ready is not None and ready.reason == "NodeLost"
    assert "node node-1 has not reported since 2026-01-01T12:00:00Z" in ready.message
    assert "is lost" in ready.message and "Delete the Polecat" in ready.message
    assert "gastown.gastown.io/force-delete=true" in ready.message
    assert after.status.completionTime is not None


def test_a_held_deletion_on_a_lost_node_stays_held_once_failed() -> None:
    release = Release(done=False, reason="NodeLost", message="deletion held ...", observation=lost(T0))
    judged = node_lost_verdict(release, now=T0 + timedelta(seconds=61), timeout=60)
    assert isinstance(judged, Release) and judged.observation is not None
    assert judged.observation.phase is Phase.FAILED and not judged.done
    status = decide(Subject(WORKING, 1), release, now=T0 + timedelta(seconds=61), node_lost_timeout=60).status
    ready = get_condition(status, READY)
    assert status.phase is Phase.FAILED and ready is not None and ready.reason == "NodeLost"


def test_the_reconciler_looks_again_when_the_timeout_is_due() -> None:
    assert node_lost_requeue(lost(T0), now=T0 + timedelta(seconds=50), timeout=60) == 11.0
    assert node_lost_requeue(stopping(), now=T0, timeout=60) is None
