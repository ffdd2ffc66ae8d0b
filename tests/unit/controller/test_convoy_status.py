"""The Convoy's pure decision: what to create, what to delete (TTL), what the status says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gastown.api.convoy import LABEL_CONVOY, Convoy
from gastown.api.models import Phase, Polecat
from gastown.controller import convoy_status as cs
from gastown.controller import ttl
from gastown.controller.convoy_status import Member, member_of, plan

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
UID = "uid-convoy"


def convoy(status: dict[str, Any] | None = None, deleting: bool = False, **spec: Any) -> Convoy:
    body: dict[str, Any] = {
        "metadata": {"name": "cv", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {
            "template": {
                "metadata": {"labels": {"team": "a"}},
                "spec": {
                    "rig": "webshop",
                    "task": "the template's task",
                    "executionMode": "kubernetes",
                    "ttlSecondsAfterFinished": 5,
                    "kubernetes": {"gitRepository": "https://github.com/acme/app.git"},
                },
            },
            **spec,
        },
    }
    if deleting:
        body["metadata"]["deletionTimestamp"] = NOW.isoformat()
    if status is not None:
        body["status"] = status
    return Convoy.model_validate(body)


def member(n: int, phase: Phase | None, **kw: Any) -> Member:
    return Member(name=f"cv-{n}", owner_uid=UID, uid=f"uid-{n}", phase=phase, **kw)


def members(*items: Member) -> dict[str, Member]:
    return {m.name: m for m in items}


def names(p: cs.Plan) -> list[str]:
    return [cs.polecat_name("cv", b.index) for b in p.create]


def condition(p: cs.Plan, type: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in p.status["conditions"] if c["type"] == type)
    return found


def test_first_round_creates_parallelism_polecats_in_bead_order() -> None:
    p = plan(convoy(count=10, parallelism=3), {}, now=NOW)
    assert names(p) == ["cv-1", "cv-2", "cv-3"]
    assert p.status["total"] == 10
    assert p.status["counts"]["pending"] == 10
    assert p.status["startTime"] == "2026-12-07T12:00:00Z"
    assert condition(p, "Ready")["reason"] == cs.PROGRESSING
    assert condition(p, "Complete") | {"lastTransitionTime": None} == {
        "type": "Complete",
        "status": "False",
        "reason": cs.IN_PROGRESS,
        "message": "0 of 10 beads finished (0 done, 0 failed, 0 terminated).",
        "lastTransitionTime": None,
        "observedGeneration": 1,
    }


def test_unseen_creates_and_pending_polecats_count_against_parallelism() -> None:
    seen = members(member(1, None), member(2, Phase.PENDING))
    p = plan(convoy(count=10, parallelism=3), seen, created=["cv-3"], now=NOW)
    assert p.create == []
    p = plan(convoy(count=10, parallelism=4), seen, created=["cv-3"], now=NOW)
    assert names(p) == ["cv-4"]


def test_finished_polecats_free_their_slots_and_are_never_recreated() -> None:
    seen = members(member(1, Phase.DONE), member(2, Phase.FAILED), member(3, Phase.WORKING))
    p = plan(convoy(count=5, parallelism=3), seen, now=NOW)
    assert names(p) == ["cv-4", "cv-5"]


def test_a_bead_whose_polecat_is_gone_is_not_run_again() -> None:
    """Recorded in status (then deleted by TTL, or by someone): never a second Polecat."""
    stored = {
        "beads": [
            {"beadID": "cv-1", "polecat": "cv-1", "phase": "Done", "branch": "polecat/cv-1"},
            {"beadID": "cv-2", "polecat": "cv-2", "phase": "Working"},
        ]
    }
    p = plan(convoy(stored, count=3, parallelism=3), {}, now=NOW)
    assert names(p) == ["cv-3"]
    beads = {b["beadID"]: b for b in p.status["beads"]}
    assert beads["cv-1"]["phase"] == "Done" and beads["cv-1"]["branch"] == "polecat/cv-1"
    assert beads["cv-2"]["phase"] == "Failed" and beads["cv-2"]["reason"] == cs.POLECAT_DELETED


def test_beads_mode_polecat_carries_the_bead_task_labels_and_owner() -> None:
    c = convoy(
        beads=[{"beadID": "gt-a1", "task": "fix a"}, {"beadID": "gt-b2"}],
        parallelism=5,
    )
    p = plan(c, {}, now=NOW)
    bodies = [cs.polecat_for(c, b) for b in p.create]
    assert [b["metadata"]["name"] for b in bodies] == ["cv-1", "cv-2"]
    assert [b["spec"]["beadID"] for b in bodies] == ["gt-a1", "gt-b2"]
    assert [b["spec"]["task"] for b in bodies] == ["fix a", "the template's task"]
    first = bodies[0]
    assert first["metadata"]["labels"] == {"team": "a", LABEL_CONVOY: "cv"}
    assert first["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Convoy",
            "name": "cv",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "ttlSecondsAfterFinished" not in first["spec"]  # the Convoy deletes its Polecats itself
    Polecat.model_validate(first)  # a valid Polecat


def test_failure_policy_stop_starts_nothing_after_max_failures_and_completes_when_drained() -> None:
    seen = members(member(1, Phase.FAILED, reason="AgentFailed"), member(2, Phase.WORKING))
    p = plan(convoy(count=5, parallelism=3, failurePolicy="Stop", maxFailures=1), seen, now=NOW)
    assert p.create == []
    assert not p.complete
    assert condition(p, "Ready")["reason"] == cs.FAILURE_LIMIT
    assert condition(p, "Ready")["status"] == "False"

    seen = members(member(1, Phase.FAILED, reason="AgentFailed"), member(2, Phase.DONE))
    p = plan(convoy(count=5, parallelism=3, failurePolicy="Stop", maxFailures=1), seen, now=NOW)
    assert p.complete
    assert condition(p, "Complete")["reason"] == cs.STOPPED
    assert condition(p, "Complete")["message"] == (
        "Stopped after 1 failed Polecats (maxFailures 1): 2 of 5 beads finished "
        "(1 done, 1 failed, 0 terminated), 3 not started."
    )
    assert {b["beadID"]: b.get("reason") for b in p.status["beads"]}["cv-1"] == "AgentFailed"


def test_failure_policy_continue_runs_every_bead() -> None:
    seen = members(member(1, Phase.FAILED), member(2, Phase.FAILED))
    p = plan(convoy(count=4, parallelism=2, maxFailures=1), seen, now=NOW)
    assert names(p) == ["cv-3", "cv-4"]


def test_all_done_is_complete_with_the_last_completion_time() -> None:
    t1, t2 = NOW - timedelta(seconds=30), NOW - timedelta(seconds=10)
    seen = members(
        member(1, Phase.DONE, completion_time=t1, branch="b1", commit="c1"),
        member(2, Phase.DONE, completion_time=t2),
    )
    p = plan(convoy(count=2), seen, now=NOW)
    assert p.complete
    assert p.status["completionTime"] == "2026-12-07T11:59:50Z"
    assert p.status["counts"]["done"] == 2
    assert condition(p, "Complete")["reason"] == cs.ALL_DONE
    assert condition(p, "Ready")["reason"] == cs.FINISHED
    assert p.status["beads"][0] == {
        "beadID": "cv-1",
        "polecat": "cv-1",
        "phase": "Done",
        "branch": "b1",
        "commit": "c1",
        "completionTime": "2026-12-07T11:59:30Z",
    }


def test_deleting_convoy_creates_nothing() -> None:
    p = plan(convoy(count=3, deleting=True), {}, now=NOW)
    assert p.create == []
    assert condition(p, "Ready")["reason"] == cs.DELETING


def test_a_polecat_owned_by_another_object_holds_its_bead_back() -> None:
    other = Member(name="cv-1", owner_uid="old-uid", phase=Phase.WORKING)
    p = plan(convoy(count=2, parallelism=2), {"cv-1": other}, now=NOW)
    assert names(p) == ["cv-2"]
    assert condition(p, "Ready")["reason"] == cs.NAME_TAKEN


def test_ttl_deletes_only_what_the_stored_status_records() -> None:
    done_at = NOW - timedelta(seconds=20)
    seen = members(
        member(1, Phase.DONE, completion_time=done_at), member(2, Phase.DONE, completion_time=done_at)
    )
    stored = {"beads": [{"beadID": "cv-1", "polecat": "cv-1", "phase": "Done"}]}
    p = plan(convoy(stored, count=2, ttlSecondsAfterFinished=10), seen, now=NOW)
    assert p.delete == ["cv-1"]  # cv-2's result is not recorded yet
    p = plan(convoy(stored, count=2, ttlSecondsAfterFinished=60), seen, now=NOW)
    assert p.delete == []
    assert p.requeue_after == 40.0
    p = plan(convoy(stored, count=2), seen, now=NOW)
    assert p.delete == [] and p.requeue_after is None


def test_status_unchanged_when_nothing_moved() -> None:
    seen = members(member(1, Phase.WORKING))
    first = plan(convoy(count=2, parallelism=1), seen, now=NOW)
    again = plan(convoy(first.status, count=2, parallelism=1), seen, now=NOW + timedelta(seconds=5))
    assert again.status == cs.normalize(first.status)


def test_member_of_reads_a_polecat() -> None:
    obj = {
        "metadata": {
            "name": "cv-1",
            "uid": "u1",
            "labels": {LABEL_CONVOY: "cv"},
            "ownerReferences": [{"kind": "Convoy", "name": "cv", "uid": UID}],
        },
        "status": {
            "phase": "Failed",
            "completionTime": "2026-12-07T11:00:00Z",
            "conditions": [{"type": "Ready", "status": "False", "reason": "AgentFailed"}],
            "result": {"branch": "polecat/cv-1", "commit": "abc"},
        },
    }
    m = member_of(obj)
    assert m == Member(
        name="cv-1",
        owner_uid=UID,
        uid="u1",
        phase=Phase.FAILED,
        reason="AgentFailed",
        branch="polecat/cv-1",
        commit="abc",
        completion_time=datetime(2026, 12, 7, 11, 0, tzinfo=UTC),
    )
    assert member_of({"metadata": {"name": "x"}}) is None


def polecat(ttl_s: int | None, phase: str, completed: datetime | None) -> Polecat:
    status: dict[str, Any] = {"phase": phase}
    if completed is not None:
        status["completionTime"] = completed.isoformat()
    spec: dict[str, Any] = {"rig": "r", "beadID": "gt-1", "task": "t", "executionMode": "local"}
    if ttl_s is not None:
        spec["ttlSecondsAfterFinished"] = ttl_s
    return Polecat.model_validate({"metadata": {"name": "p"}, "spec": spec, "status": status})


def test_polecat_ttl_remaining() -> None:
    done = NOW - timedelta(seconds=4)
    assert ttl.remaining(polecat(10, "Done", done), NOW) == 6.0
    assert ttl.remaining(polecat(0, "Failed", done), NOW) == -4.0
    assert ttl.remaining(polecat(10, "Working", None), NOW) is None
    assert ttl.remaining(polecat(None, "Done", done), NOW) is None
