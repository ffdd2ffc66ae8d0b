"""Rigs and Convoys reach their own rules through the one webhook path, with field-named messages."""

from __future__ import annotations

from typing import Any

from gastown.settings import Settings, SSHSettings
from gastown.webhook import kinds, review
from gastown.webhook.rules import MAX_POLECAT_NAME
from tests.unit.webhook.samples import envelope, k8s_polecat

SETTINGS = Settings(ssh=SSHSettings(host="127.0.0.1"))


def _resource(plural: str) -> dict[str, Any]:
    return {"resource": {"group": "gastown.gastown.io", "version": "v1alpha1", "resource": plural}}


def _rig(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": "r1"},
        "spec": spec,
    }


def test_a_rig_with_a_negative_capacity_is_denied_naming_the_field() -> None:
    _, body = review.handle_review(envelope(_rig(maxActivePolecats=-1), **_resource("rigs")), SETTINGS)
    response = body["response"]
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("spec.maxActivePolecats: -1 is out of range")


def test_a_good_rig_is_allowed() -> None:
    rig = _rig(executionMode="kubernetes", maxActivePolecats=3, kubernetes={"gitRepository": "git@h:r.git"})
    _, body = review.handle_review(envelope(rig, **_resource("rigs")), SETTINGS)
    assert body["response"]["allowed"] is True


def test_a_convoy_without_a_template_is_denied_naming_the_field() -> None:
    convoy = {"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Convoy", "metadata": {"name": "c1"}}
    convoy["spec"] = {"count": 3}
    _, body = review.handle_review(envelope(convoy, **_resource("convoys")), SETTINGS)
    response = body["response"]
    assert response["allowed"] is False
    assert "spec.template: is required" in response["status"]["message"]


def test_another_resource_is_waved_through_with_a_warning() -> None:
    _, body = review.handle_review(envelope({"spec": {}}, **_resource("widgets")), SETTINGS)
    assert body["response"]["allowed"] is True
    assert "ignored" in body["response"]["warnings"][0]


# -- Convoy rules (issue 21) ------------------------------------------------------------


def _convoy(name: str = "c1", **spec: Any) -> dict[str, Any]:
    template = {
        "spec": {
            "rig": "gastown",
            "task": "Do the thing.",
            "executionMode": "kubernetes",
            "kubernetes": k8s_polecat()["spec"]["kubernetes"],
        }
    }
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Convoy",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"template": template, **spec},
    }


def _verdict(obj: dict[str, Any], **kw: Any) -> Any:
    return kinds.validate_convoy(obj, SETTINGS, **kw)


def test_a_good_convoy_is_allowed() -> None:
    assert _verdict(_convoy(count=3)).errors == ()
    beads = [{"beadID": "gt-a1", "task": "a"}, {"beadID": "gt-b2"}]
    assert _verdict(_convoy(beads=beads, parallelism=2)).errors == ()


def test_beads_and_count_are_exclusive_and_one_is_required() -> None:
    both = _verdict(_convoy(count=2, beads=[{"beadID": "gt-a1"}])).errors
    neither = _verdict(_convoy()).errors
    for errors in (both, neither):
        assert errors == (
            "spec: set exactly one of spec.beads (the beads, each with its task) and spec.count "
            "(run the template's task that many times)",
        )


def test_bead_ids_must_be_unique() -> None:
    errors = _verdict(_convoy(beads=[{"beadID": "gt-a1"}, {"beadID": "gt-b2"}, {"beadID": "gt-a1"}])).errors
    assert errors == (
        "spec.beads[2].beadID: 'gt-a1' is listed twice (also spec.beads[0]); each bead runs once, "
        "so bead ids must be unique",
    )


def test_the_name_leaves_room_for_the_polecat_names() -> None:
    ok = "c" * (MAX_POLECAT_NAME - 4)  # "-100"
    assert _verdict(_convoy(ok, count=100)).errors == ()
    errors = _verdict(_convoy(ok + "c", count=100)).errors
    assert len(errors) == 1 and errors[0].startswith(
        f"metadata.name: is {len(ok) + 1} characters long; at most {len(ok)} are allowed for 100 beads"
    )


def test_the_template_is_checked_with_the_polecat_rules_naming_the_template_field() -> None:
    convoy = _convoy(count=2)
    convoy["spec"]["template"]["spec"]["kubernetes"]["gitRepository"] = "not a url"
    errors = _verdict(convoy).errors
    assert errors and all(e.startswith("spec.template.spec.kubernetes.gitRepository:") for e in errors)


def test_the_template_may_not_carry_its_own_ttl_or_bead() -> None:
    convoy = _convoy(count=2)
    convoy["spec"]["template"]["spec"]["ttlSecondsAfterFinished"] = 5
    convoy["spec"]["template"]["spec"]["beadID"] = "gt-x1"
    errors = _verdict(convoy).errors
    assert [e.split(":")[0] for e in errors] == [
        "spec.template.spec.ttlSecondsAfterFinished",
        "spec.template.spec.beadID",
    ]


def test_a_bead_without_a_task_needs_the_templates() -> None:
    convoy = _convoy(beads=[{"beadID": "gt-a1", "task": "a"}, {"beadID": "gt-b2"}])
    del convoy["spec"]["template"]["spec"]["task"]
    assert _verdict(convoy).errors == (
        "spec.beads[1].task: a bead needs a task: set spec.template.spec.task, or a task on each "
        "of spec.beads",
    )


def test_work_fields_are_frozen_but_parallelism_and_max_failures_may_change() -> None:
    old = _convoy(count=3, parallelism=2)
    new = _convoy(count=3, parallelism=5, maxFailures=3, ttlSecondsAfterFinished=60)
    assert _verdict(new, operation="UPDATE", old_obj=old).errors == ()
    changed = _convoy(count=4, parallelism=2, failurePolicy="Stop")
    changed["spec"]["template"]["spec"]["task"] = "Another thing."
    errors = _verdict(changed, operation="UPDATE", old_obj=old).errors
    assert [e.split(":")[0] for e in errors] == ["spec.count", "spec.template", "spec.failurePolicy"]
    assert errors[0] == (
        "spec.count: cannot be changed after the Convoy is created (its Polecats are made from it); "
        "only spec.parallelism, spec.maxFailures and spec.ttlSecondsAfterFinished may change. "
        "To run other work, create another Convoy"
    )


def test_a_convoy_rule_reaches_the_user_through_the_webhook() -> None:
    convoy = _convoy(count=2, beads=[{"beadID": "gt-a1"}])
    _, body = review.handle_review(envelope(convoy, **_resource("convoys")), SETTINGS)
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["message"].startswith("spec: set exactly one of spec.beads")
