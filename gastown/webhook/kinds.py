"""Validation of the fleet kinds (Rig, Convoy) at admission: the shape, for now.

Polecats have their own rules module (:mod:`gastown.webhook.rules`); Rigs and Convoys
start here with what every kind gets: pydantic's checks turned into field-named
messages (the same wording as the Polecat's). Kind-specific rules are added per kind
(``validate_rig``, ``validate_convoy``) and reached from :func:`gastown.webhook.review.review`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gastown.api.convoy import Convoy
from gastown.api.rig import Rig
from gastown.settings import Settings
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
    """Validate a Rig as sent to the webhook."""
    if operation == "UPDATE" and _spec_unchanged(obj, old_obj):
        return Verdict()
    _, errors = _shape(Rig, "Rig", obj)
    return Verdict(tuple(errors))


def validate_convoy(
    obj: Any, settings: Settings, *, operation: Literal["CREATE", "UPDATE"] = "CREATE", old_obj: Any = None
) -> Verdict:
    """Validate a Convoy as sent to the webhook."""
    if operation == "UPDATE" and _spec_unchanged(obj, old_obj):
        return Verdict()
    _, errors = _shape(Convoy, "Convoy", obj)
    return Verdict(tuple(errors))
