"""Validation of the fleet kinds (Rig, Convoy) at admission.

Polecats have their own rules module (:mod:`gastown.webhook.rules`). Every kind gets
pydantic's checks turned into field-named messages (the same wording as the Polecat's);
a Rig's mode sections are then checked with the Polecat's own rules and messages
(:func:`gastown.webhook.rules.check_rig_defaults`). Kind-specific rules are reached
from :func:`gastown.webhook.review.review`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gastown.api.convoy import Convoy
from gastown.api.rig import Rig
from gastown.settings import Settings
from gastown.webhook import rules
from gastown.webhook.rules import Verdict, pydantic_messages


def _shape(model: type[BaseModel], kind: str, obj: Any) -> tuple[BaseModel | None, list[str]]:
    """Parse metadata and spec (status is the operator's); messages name the field."""
    if not isinstance(obj, Mapping):
        return None, [f"object: must be a {kind} object (a JSON/YAML mapping)"]
    try:
        return model.model_validate({k: v for k, v in obj.items() if k != "status"}), []
    except ValidationError as exc:
        return None, pydantic_messages(exc)
    except (RecursionError, ValueError, TypeError) as exc:  # pathological input
        return None, [f"object: cannot be read as a {kind} ({type(exc).__name__})"]


def _spec_unchanged(obj: Any, old_obj: Any) -> bool:
    return (
        isinstance(obj, Mapping) and isinstance(old_obj, Mapping) and obj.get("spec") == old_obj.get("spec")
    )


def validate_rig(
    obj: Any, settings: Settings, *, operation: Literal["CREATE", "UPDATE"] = "CREATE", old_obj: Any = None
) -> Verdict:
    """Validate a Rig as sent to the webhook: the Polecat's rules for the values it gives.

    A Rig's mode sections are defaults, so nothing in them is required (a Polecat may set
    what the Rig leaves out); every value given is checked with the Polecat's rules and
    messages (same field paths), and the operator's image/ServiceAccount policy applies
    to the Rig's image and serviceAccountName as it would to a Polecat's (an UPDATE that
    leaves one of them as it was is not refused for it, as for Polecats).
    """
    if operation == "UPDATE" and _spec_unchanged(obj, old_obj):
        return Verdict()
    parsed, errors = _shape(Rig, "Rig", obj)
    if not isinstance(parsed, Rig):
        return Verdict(tuple(errors))
    old_spec = old_obj.get("spec") if operation == "UPDATE" and isinstance(old_obj, Mapping) else None
    found = rules.check_rig_defaults(
        parsed.spec, settings, strict_install=operation == "CREATE", old_spec=old_spec
    )
    return Verdict((*errors, *found.errors), found.warnings)


def validate_convoy(
    obj: Any, settings: Settings, *, operation: Literal["CREATE", "UPDATE"] = "CREATE", old_obj: Any = None
) -> Verdict:
    """Validate a Convoy as sent to the webhook."""
    if operation == "UPDATE" and _spec_unchanged(obj, old_obj):
        return Verdict()
    _, errors = _shape(Convoy, "Convoy", obj)
    return Verdict(tuple(errors))
