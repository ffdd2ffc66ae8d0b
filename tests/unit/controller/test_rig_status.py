"""status.effective is recorded with the first dispatched status and kept; Rig status patches."""

from __future__ import annotations

from datetime import UTC, datetime

from gastown.api.models import EffectiveSpec, ExecutionMode, KubernetesSpec, Phase, PolecatStatus
from gastown.controller.rigstatus import status_patch
from gastown.controller.status import UNCHANGED, Subject, decide
from gastown.executors.base import Observation, UserError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
EFFECTIVE = EffectiveSpec(
    rig="r",
    rigGeneration=2,
    executionMode=ExecutionMode.KUBERNETES,
    agent="claude-code",
    kubernetes=KubernetesSpec(gitRepository="https://x/y.git"),
    fromRig=["executionMode", "kubernetes.gitRepository"],
)


def test_effective_is_recorded_only_once_dispatched_and_then_kept() -> None:
    waiting = decide(Subject(None, 1), UserError("RigAtCapacity", "waits"), now=NOW, effective=EFFECTIVE)
    assert waiting.status.effective is None  # nothing ran: nothing to record

    working = decide(Subject(None, 1), Observation(phase=Phase.WORKING), now=NOW, effective=EFFECTIVE)
    assert working.status.effective == EFFECTIVE
    assert working.wire["effective"]["fromRig"] == ["executionMode", "kubernetes.gitRepository"]

    # Later rounds carry it over whatever they are given (a Rig edit cannot reach it).
    other = EFFECTIVE.model_copy(update={"rigGeneration": 3})
    later = decide(Subject(working.status, 1), UNCHANGED, now=NOW, effective=other)
    assert later.status.effective == EFFECTIVE


def test_rig_less_polecats_record_nothing() -> None:
    working = decide(Subject(PolecatStatus(), 1), Observation(phase=Phase.WORKING), now=NOW)
    assert working.status.effective is None
    assert "effective" not in working.wire


def test_rig_status_is_patched_only_when_it_changed() -> None:
    rig = {"metadata": {"name": "r", "generation": 4}, "status": {"activePolecats": 1}}
    assert status_patch(rig, 1, 0) == {"status": {"observedGeneration": 4, "waitingPolecats": 0}}
    rig["status"] = {"observedGeneration": 4, "activePolecats": 1, "waitingPolecats": 0}
    assert status_patch(rig, 1, 0) is None
    assert status_patch(rig, 2, 3) == {"status": {"activePolecats": 2, "waitingPolecats": 3}}
