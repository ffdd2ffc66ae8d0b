"""Rigs and Convoys reach their own rules through the one webhook path, with field-named messages."""

from __future__ import annotations

from typing import Any

from gastown.settings import Settings, SSHSettings
from gastown.webhook import review
from tests.unit.webhook.samples import envelope

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
