"""Validation of the fleet kinds (Rig, Convoy) at admission.

Polecats have their own rules module (:mod:`gastown.webhook.rules`). Every kind gets
pydantic's checks turned into field-named messages (the same wording as the Polecat's);
a Rig's mode sections are then checked with the Polecat's own rules and messages
(:func:`gastown.webhook.rules.check_rig_defaults`). Kind-specific rules are reached
from :func:`gastown.webhook.review.review`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ValidationError

from gastown.api.convoy import Convoy
from gastown.api.rig import Rig
from gastown.controller import convoy_status
from gastown.settings import Settings
from gastown.webhook import formats, rules
from gastown.webhook.rules import MAX_POLECAT_NAME, Verdict, pydantic_messages, validate_object


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
    """Validate a Convoy as sent to the webhook.

    Beyond the shape: exactly one of spec.beads and spec.count; bead ids unique; a name
    that leaves room for the Polecat names ``<convoy>-<n>``; the template checked as the
    Polecats it makes will be (the Polecat rules, on the template plus a bead); and on
    UPDATE the fields its Polecats are made from frozen (:data:`CONVOY_FROZEN`).
    """
    if operation == "UPDATE" and _spec_unchanged(obj, old_obj):
        return Verdict()
    parsed, errors = _shape(Convoy, "Convoy", obj)
    if parsed is None:
        return Verdict(tuple(errors))
    assert isinstance(parsed, Convoy)
    warnings: list[str] = []
    if operation == "UPDATE" and isinstance(old_obj, Mapping):
        errors.extend(_frozen(obj, old_obj))
        if errors or _deleting(obj):
            return Verdict(tuple(errors))
    spec = parsed.spec
    if (spec.beads is None) == (spec.count is None):
        errors.append(
            "spec: set exactly one of spec.beads (the beads, each with its task) and spec.count "
            "(run the template's task that many times)"
        )
        return Verdict(tuple(errors))
    seen: dict[str, int] = {}
    for index, bead in enumerate(spec.beads or []):
        if bead.beadID in seen:
            errors.append(
                f"spec.beads[{index}].beadID: {bead.beadID!r} is listed twice (also spec.beads"
                f"[{seen[bead.beadID]}]); each bead runs once, so bead ids must be unique"
            )
        else:
            seen[bead.beadID] = index
    if spec.beads is not None and not spec.beads:
        errors.append("spec.beads: must list at least one bead")
    if spec.template.spec.ttlSecondsAfterFinished is not None:
        errors.append(
            "spec.template.spec.ttlSecondsAfterFinished: is not allowed in a Convoy's template; set "
            "spec.ttlSecondsAfterFinished (the Convoy deletes its Polecats after recording their results)"
        )
    if spec.template.spec.beadID is not None:
        errors.append(
            "spec.template.spec.beadID: must not be set; each Polecat gets its bead from spec.beads "
            "or spec.count"
        )
    errors.extend(_check_name(obj, parsed))
    if not errors:
        template_errors, warnings = _check_template(parsed, settings, obj)
        errors.extend(template_errors)
    return Verdict(tuple(errors), tuple(warnings))


CONVOY_FROZEN: Final = ("beads", "count", "template", "failurePolicy")
"""Convoy spec fields that cannot change after creation (parallelism, maxFailures and
ttlSecondsAfterFinished may)."""


def _frozen(obj: Mapping[str, Any], old_obj: Mapping[str, Any]) -> list[str]:
    new_spec, old_spec = obj.get("spec") or {}, old_obj.get("spec") or {}
    if not isinstance(new_spec, Mapping) or not isinstance(old_spec, Mapping):
        return []
    return [
        f"spec.{field}: cannot be changed after the Convoy is created (its Polecats are made from it); "
        "only spec.parallelism, spec.maxFailures and spec.ttlSecondsAfterFinished may change. "
        "To run other work, create another Convoy"
        for field in CONVOY_FROZEN
        if new_spec.get(field) != old_spec.get(field)
    ]


def _deleting(obj: Any) -> bool:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    return isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))


def _check_name(obj: Any, convoy: Convoy) -> list[str]:
    """The name must leave room for ``-<n>``: its Polecats are ``<convoy>-1`` ... ``-<total>``."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return []
    name = meta.get("name")
    total = len(convoy.spec.beads or []) or (convoy.spec.count or 0)
    suffix = len(str(total)) + 1
    if isinstance(name, str) and name:
        longest = MAX_POLECAT_NAME - suffix
        if len(name) > longest:
            return [
                f"metadata.name: is {len(name)} characters long; at most {longest} are allowed for "
                f"{total} beads, because its Polecats are named <convoy>-<n> (up to {name}-{total}) and a "
                f"Polecat name has at most {MAX_POLECAT_NAME} characters"
            ]
        problem = formats.dns1123_label(name)
        return [f"metadata.name: {problem} (it names the Convoy's Polecats)"] if problem else []
    if meta.get("generateName"):
        return [
            "metadata.generateName: is not supported for a Convoy; set metadata.name (it names the Polecats)"
        ]
    return ["metadata.name: is required"]


def _check_template(convoy: Convoy, settings: Settings, obj: Any) -> tuple[list[str], list[str]]:
    """The Polecat rules on the Polecat the template makes for the first bead (and the beads' tasks)."""
    beads = convoy_status.beads_of(convoy)
    errors: list[str] = []
    template_task = convoy.spec.template.spec.task
    if template_task is None:
        for bead in beads:
            if bead.task is None:
                where = (
                    f"spec.beads[{bead.index - 1}].task" if convoy.spec.beads is not None else "spec.count"
                )
                errors.append(
                    f"{where}: a bead needs a task: set spec.template.spec.task, or a task on each "
                    "of spec.beads"
                )
                break
    sample = beads[0]
    if template_task is None:
        sample = next((b for b in beads if b.task is not None), sample)
    polecat = convoy_status.polecat_for(convoy, sample)
    verdict = validate_object(polecat, settings)
    for message in verdict.errors:
        field = message.split(":", 1)[0]
        if field.startswith("metadata.name"):
            continue  # checked for the Convoy's own name above
        if field in ("spec.task", "spec.beadID") and errors:
            continue  # already said, per bead
        errors.append(_in_template(message))
    return errors, [_in_template(w) for w in verdict.warnings]


def _in_template(message: str) -> str:
    """A Polecat rule's message, with its field named as it is in the Convoy."""
    if message.startswith("spec.task:") or message.startswith("spec.beadID:"):
        return message
    if message.startswith("spec."):
        return "spec.template." + message
    if message.startswith("metadata."):
        return "spec.template." + message
    return message
