"""AdmissionReview v1 in and out: uid echoed, denials, warnings, malformed bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gastown.settings import Settings, SSHSettings
from gastown.webhook import review
from gastown.webhook.rules import Verdict
from tests.unit.webhook.samples import envelope, k8s_polecat, local_polecat

SETTINGS = Settings(ssh=SSHSettings(host="127.0.0.1"))


def test_allowed_review_echoes_uid() -> None:
    status, body = review.handle_review(envelope(local_polecat(), uid="u-1"), SETTINGS)
    assert status == 200
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u-1", "allowed": True},
    }


def test_denial_has_status_and_all_messages() -> None:
    obj = k8s_polecat(image="Bad Image", agentSecretRef=None)
    obj["spec"]["kubernetes"].pop("agentSecretRef")
    status, body = review.handle_review(envelope(obj), SETTINGS)
    assert status == 200
    response = body["response"]
    assert response["uid"] == "abc-123"
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert response["status"]["reason"] == "Invalid"
    message = response["status"]["message"]
    assert message.startswith(
        "Polecat 'ns/p1' has 2 problems:\n- spec.kubernetes.agentSecretRef: is required"
    )
    assert "\n- spec.kubernetes.image: 'Bad Image' is not a valid image reference" in message


def test_single_problem_is_one_line() -> None:
    _, body = review.handle_review(envelope(local_polecat(dispatcher="tmux")), SETTINGS)
    message = body["response"]["status"]["message"]
    assert message.startswith("spec.local.command: is required with dispatcher tmux")
    assert "\n" not in message


def test_warnings_are_returned_on_allowed_reviews() -> None:
    _, body = review.handle_review(envelope(k8s_polecat(image="busybox")), SETTINGS)
    assert body["response"]["allowed"] is True
    assert body["response"]["warnings"] == [
        "spec.kubernetes.image: has no tag or uses 'latest'; pin a version or digest for repeatable runs"
    ]


def test_warnings_are_bounded() -> None:
    request = review.parse_review(envelope(local_polecat()))
    verdict = Verdict(warnings=tuple("w" * 1000 for _ in range(50)))
    warnings = review.build_response(request, verdict)["response"]["warnings"]
    assert len(warnings) == review.MAX_WARNINGS
    assert all(len(w) <= review.MAX_WARNING_LENGTH for w in warnings)
    assert warnings[-1] == "… and 31 more warnings"


def test_update_passes_old_object() -> None:
    old = local_polecat()
    old["status"] = {"phase": "Working"}
    new = json.loads(json.dumps(old))
    new["spec"]["beadID"] = "gt-zzz"
    _, body = review.handle_review(envelope(new, operation="UPDATE", old=old), SETTINGS)
    assert body["response"]["allowed"] is False
    assert "spec.beadID: is immutable once the Polecat is dispatched" in body["response"]["status"]["message"]


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_allowed(operation: str) -> None:
    _, body = review.handle_review(envelope(None, operation=operation), SETTINGS)
    assert body["response"] == {"uid": "abc-123", "allowed": True}


def test_other_resources_are_let_through_with_a_warning() -> None:
    body = envelope({"kind": "Pod"}, resource={"group": "", "version": "v1", "resource": "pods"})
    _, out = review.handle_review(body, SETTINGS)
    assert out["response"]["allowed"] is True
    assert "ignored" in out["response"]["warnings"][0]


def test_status_subresource_is_not_validated() -> None:
    body = envelope({"spec": {}}, operation="UPDATE", old={"spec": {}}, subResource="status")
    _, out = review.handle_review(body, SETTINGS)
    assert out["response"]["allowed"] is True


def test_missing_object_on_create_is_denied_not_crashed() -> None:
    _, out = review.handle_review(envelope(None), SETTINGS)
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"].startswith("object: must be a Polecat object")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "not a JSON object"),
        (
            b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
            "AdmissionReview",
        ),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request is missing"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}', "uid"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
            b'"request": {"uid": "x", "operation": "X"}}',
            "operation",
        ),
        (b'{"a": 1' + b"1" * 10_000 + b"}", "not JSON"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, reason: str) -> None:
    status, out = review.handle_review(body, SETTINGS)
    assert status == 400
    assert reason in out["error"]


def test_oversized_body_is_refused() -> None:
    with pytest.raises(review.MalformedReviewError, match="larger than"):
        review.parse_review(b" " * (review.MAX_BODY_BYTES + 1))


def test_a_bug_in_the_rules_denies_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Verdict:
        raise RuntimeError("bug")

    monkeypatch.setattr(review.rules, "validate_object", boom)
    status, out = review.handle_review(envelope(local_polecat()), SETTINGS)
    assert status == 200
    assert out["response"]["uid"] == "abc-123"
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["code"] == 500


def test_very_long_denials_are_cut() -> None:
    request = review.parse_review(envelope(local_polecat()))
    verdict = Verdict(errors=tuple(f"spec.x{i}: " + "y" * 500 for i in range(100)))
    message = review.build_response(request, verdict)["response"]["status"]["message"]
    assert len(message) <= review.MAX_MESSAGE_LENGTH
    assert message.endswith("(more problems)")
