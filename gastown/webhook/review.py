"""AdmissionReview (``admission.k8s.io/v1``): reading requests, writing responses.

The contract with the apiserver:

* A well-formed review always gets HTTP 200 with ``response.uid`` copied from the
  request; a denial is ``allowed: false`` with ``status.code``/``status.message``, and
  ``warnings`` is a list of short strings shown by kubectl.
* A body that is not a v1 AdmissionReview gets HTTP 400 (:class:`MalformedReviewError`),
  never a crash: the apiserver then applies the webhook's ``failurePolicy``.
* A bug in a rule does not become a 500 either: the request is denied with a message
  that says the webhook failed (``failurePolicy: Fail`` would deny it anyway).

Everything here is synchronous and pure; the aiohttp server (``server.py``) adds what
needs the cluster (warnings about missing Secrets) around :func:`review`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import orjson

from gastown.api import convoy as convoy_api
from gastown.api import models
from gastown.api import rig as rig_api
from gastown.settings import Settings
from gastown.webhook import kinds, rules
from gastown.webhook.rules import Verdict

log = logging.getLogger(__name__)

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
# A Polecat is at most ~1.5 MiB in etcd and a review of an UPDATE carries two of them.
MAX_BODY_BYTES: Final = 6 * 1024 * 1024
MAX_UID_LENGTH: Final = 256
# The apiserver may truncate warnings over 256 characters or when there are many.
MAX_WARNING_LENGTH: Final = 256
MAX_WARNINGS: Final = 20
MAX_MESSAGE_LENGTH: Final = 8192

_OPERATIONS_TO_VALIDATE: Final = frozenset({"CREATE", "UPDATE"})
_OPERATIONS_TO_ALLOW: Final = frozenset({"DELETE", "CONNECT"})


class MalformedReviewError(ValueError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview request (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of an AdmissionRequest the webhook uses."""

    uid: str
    operation: str
    namespace: str
    name: str
    object: Any
    old_object: Any
    group: str | None
    resource: str | None
    sub_resource: str | None

    @property
    def resource_kind(self) -> str | None:
        """The plural of the group's kind the request is about (None: another group, or a subresource).

        Missing kind info counts as a Polecat: validate rather than wave through.
        """
        if self.group is None and self.resource is None:
            return models.PLURAL
        if self.group != models.GROUP or self.sub_resource:
            return None
        return self.resource

    @property
    def is_polecat(self) -> bool:
        """Whether the request is about Polecats (missing kind info counts as yes: validate)."""
        if self.group is None and self.resource is None:
            return True
        return self.group == models.GROUP and self.resource == models.PLURAL and not self.sub_resource


def parse_review(body: bytes) -> AdmissionRequest:
    """Read a review body; raise :class:`MalformedReviewError` with the reason if it is not one."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedReviewError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except (ValueError, RecursionError) as exc:  # orjson's JSONDecodeError is a ValueError
        raise MalformedReviewError(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise MalformedReviewError("body is not a JSON object")
    if doc.get("apiVersion") != ADMISSION_API_VERSION or doc.get("kind") != "AdmissionReview":
        raise MalformedReviewError(f"not an AdmissionReview of {ADMISSION_API_VERSION}")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise MalformedReviewError("request is missing")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID_LENGTH:
        raise MalformedReviewError("request.uid is missing or not a string")
    operation = req.get("operation")
    if operation not in _OPERATIONS_TO_VALIDATE | _OPERATIONS_TO_ALLOW:
        raise MalformedReviewError("request.operation is not CREATE, UPDATE, DELETE or CONNECT")
    resource = req.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        namespace=_str(req.get("namespace")),
        name=_str(req.get("name")),
        object=req.get("object"),
        old_object=req.get("oldObject"),
        group=_opt_str(resource.get("group")),
        resource=_opt_str(resource.get("resource")),
        sub_resource=_opt_str(req.get("subResource")) or None,
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def review(request: AdmissionRequest, settings: Settings, *, rig: rules.RigLookup | None = None) -> Verdict:
    """Decide on one request with the pure rules (no cluster lookups).

    ``rig``: for a Polecat, its Rig as the server read it (see :func:`rules.validate_object`).
    """
    if request.operation in _OPERATIONS_TO_ALLOW:
        return Verdict()
    operation: Literal["CREATE", "UPDATE"] = "UPDATE" if request.operation == "UPDATE" else "CREATE"
    old_obj = request.old_object if request.operation == "UPDATE" else None
    validate = _validator(request.resource_kind)
    if validate is None:
        return Verdict(
            warnings=(f"the Polecat webhook was sent a {request.group}/{request.resource}; ignored",)
        )
    if rig is not None and validate is rules.validate_object:
        return rules.validate_object(request.object, settings, operation=operation, old_obj=old_obj, rig=rig)
    return validate(request.object, settings, operation=operation, old_obj=old_obj)


class _Validator(Protocol):
    def __call__(
        self, obj: Any, settings: Settings, *, operation: Literal["CREATE", "UPDATE"], old_obj: Any
    ) -> Verdict: ...


def _validator(resource: str | None) -> _Validator | None:
    """The rules for a resource of the group (looked up per call, so tests can swap them)."""
    if resource == models.PLURAL:
        return rules.validate_object
    if resource == rig_api.PLURAL:
        return kinds.validate_rig
    if resource == convoy_api.PLURAL:
        return kinds.validate_convoy
    return None


def _object_label(request: AdmissionRequest) -> str:
    name = request.name
    obj = request.object
    if not name and isinstance(obj, Mapping) and isinstance(obj.get("metadata"), Mapping):
        name = _str(obj["metadata"].get("name")) or _str(obj["metadata"].get("generateName"))
    key = f"{request.namespace}/{name}" if request.namespace else name
    kind = _KIND_NAMES.get(request.resource_kind or "", "Polecat")
    return f"{kind} {key!r}" if key else f"the {kind}"


_KIND_NAMES: Final = {
    models.PLURAL: models.KIND,
    rig_api.PLURAL: rig_api.KIND,
    convoy_api.PLURAL: convoy_api.KIND,
}


def denial_message(request: AdmissionRequest, verdict: Verdict) -> str:
    """One message with every problem: a single line for one, a list for several."""
    errors = verdict.errors
    if len(errors) == 1:
        text = errors[0]
    else:
        text = f"{_object_label(request)} has {len(errors)} problems:\n" + "\n".join(f"- {e}" for e in errors)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 20] + "\n… (more problems)"
    return text


def _warnings(verdict: Verdict) -> list[str]:
    out = [w if len(w) <= MAX_WARNING_LENGTH else w[: MAX_WARNING_LENGTH - 1] + "…" for w in verdict.warnings]
    if len(out) > MAX_WARNINGS:
        out = [*out[: MAX_WARNINGS - 1], f"… and {len(out) - MAX_WARNINGS + 1} more warnings"]
    return out


def build_response(request: AdmissionRequest, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview to send back for a verdict."""
    response: dict[str, Any] = {"uid": request.uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": denial_message(request, verdict),
        }
    warnings = _warnings(verdict)
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def internal_error_response(request: AdmissionRequest) -> dict[str, Any]:
    """A denial for a request the rules failed on (a bug): deny, say so, never 500."""
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": {
            "uid": request.uid,
            "allowed": False,
            "status": {
                "status": "Failure",
                "code": 500,
                "reason": "InternalError",
                "message": (
                    "the gastown webhook failed while validating this Polecat (an internal error, "
                    "logged by the operator); try again, and report it if it persists"
                ),
            },
        },
    }


def handle_review(body: bytes, settings: Settings) -> tuple[int, dict[str, Any]]:
    """The whole synchronous path: body in, ``(http_status, json_body)`` out. Never raises.

    The server uses the pieces (to add cluster lookups); tests and benchmarks use this.
    """
    try:
        request = parse_review(body)
    except MalformedReviewError as exc:
        return 400, {"error": str(exc)}
    try:
        return 200, build_response(request, review(request, settings))
    except Exception:
        log.exception("validating admission request %s failed", request.uid)
        return 200, internal_error_response(request)
