"""Generate the Polecat CustomResourceDefinition from the pydantic models.

The models in ``gastown.api.models`` are the single source of truth; the CRD YAML in
``crds/`` is a build product, kept in git so ``kubectl apply -f crds/`` and the Helm chart
need no Python, and kept honest by a test that regenerates it and diffs.

pydantic's JSON Schema is not a *structural* schema as the apiserver wants it: it has
``$defs``/``$ref``, ``title``, ``anyOf: [X, null]`` for optionals, ``const``, numeric
``exclusiveMinimum``, ``additionalProperties: false`` and ``default: null``. Some of these
the apiserver rejects, some it silently misreads (an ``anyOf`` hides the type from
``kubectl explain``). The converter is two steps:

1. :class:`CRDSchemaGenerator`, a ``GenerateJsonSchema`` that already drops the ``null``
   branch of optionals, so the post-pass sees fewer shapes;
2. :func:`structural`, a post-pass that inlines references and rebuilds every node from a
   whitelist of keywords the apiserver understands. A keyword it does not know is an
   error, not something to pass through: a new pydantic feature must fail the generator,
   not produce a CRD the apiserver misreads. Every property must have a description,
   so ``kubectl explain`` is useful; a field without one fails generation too.

Rules that span fields (mode-specific sections, immutability) are CEL
``x-kubernetes-validations`` on ``spec``: they hold even when the webhook is down. Their
messages are reused by ``gastown.webhook.rules`` so both layers speak alike.

Run ``python -m gastown.api.crd`` to rewrite the committed file, ``--check`` to diff.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gastown.api import convoy as convoy_api
from gastown.api import models
from gastown.api import rig as rig_api

CRD_NAME: Final = f"{models.PLURAL}.{models.GROUP}"
CRD_FILENAME: Final = f"{models.GROUP}_{models.PLURAL}.yaml"
DEFAULT_DIR: Final = Path("crds")
DEFAULT_OUTPUT: Final = DEFAULT_DIR / CRD_FILENAME

HEADER: Final = (
    "# Generated from gastown/api/models.py by `python -m gastown.api.crd`. Do not edit by hand:\n"
    "# change the models and regenerate (a test fails when this file is out of date).\n"
)


# --------------------------------------------------------------------------------------
# CEL rules on spec. Messages name the field, the problem and what is allowed; the
# webhook reuses them (gastown.webhook.rules) for the same checks.
# --------------------------------------------------------------------------------------
MSG_KUBERNETES_REQUIRED: Final = (
    "spec.kubernetes is required when spec.executionMode is kubernetes: "
    "set at least spec.kubernetes.gitRepository"
)
MSG_KUBERNETES_FORBIDDEN: Final = (
    "spec.kubernetes is forbidden when spec.executionMode is local (the default): "
    "remove spec.kubernetes or set executionMode: kubernetes"
)
MSG_LOCAL_FORBIDDEN: Final = (
    "spec.local is forbidden when spec.executionMode is kubernetes: "
    "remove spec.local or set executionMode: local"
)
MSG_MODE_IMMUTABLE: Final = (
    "spec.executionMode is immutable: delete the Polecat and create a new one to change where it runs"
)
MSG_RIG_IMMUTABLE: Final = "spec.rig is immutable: delete the Polecat and create a new one for another rig"

# An unset executionMode is not "local" any more: the Rig may supply it, at dispatch. So
# CEL checks what it can see: an explicit mode forbids the other mode's section, and the
# mode (set or not) never changes. "kubernetes mode needs spec.kubernetes" depends on the
# Rig and is checked by the webhook and at dispatch (gastown.api.resolve).
_MODE: Final = "(has(self.executionMode) ? self.executionMode : '')"
_OLD_MODE: Final = "(has(oldSelf.executionMode) ? oldSelf.executionMode : '')"

SPEC_VALIDATIONS: Final[list[dict[str, str]]] = [
    {
        "rule": f"{_MODE} != 'local' || !has(self.kubernetes)",
        "message": MSG_KUBERNETES_FORBIDDEN,
        "fieldPath": ".kubernetes",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"{_MODE} != 'kubernetes' || !has(self.local)",
        "message": MSG_LOCAL_FORBIDDEN,
        "fieldPath": ".local",
        "reason": "FieldValueForbidden",
    },
    {
        # A transition rule (it reads oldSelf): checked on UPDATE only. Set or left out
        # (the Rig's) is part of the mode: neither may change.
        "rule": f"{_MODE} == {_OLD_MODE}",
        "message": MSG_MODE_IMMUTABLE,
        "fieldPath": ".executionMode",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "self.rig == oldSelf.rig",
        "message": MSG_RIG_IMMUTABLE,
        "fieldPath": ".rig",
        "reason": "FieldValueInvalid",
    },
]

# --------------------------------------------------------------------------------------
# Transition rules on the whole object: they read oldSelf.status, which a rule on spec
# cannot see. Once the work is dispatched (status.startTime set, or the phase moved past
# Pending) every field that steers it is frozen; only spec.desiredState may change, and
# only towards Terminated. Status-only and metadata-only updates leave spec alone, so
# they always pass (the operator can always write status and remove its finalizer).
# --------------------------------------------------------------------------------------
MSG_DISPATCHED_IMMUTABLE: Final = "is immutable once the Polecat is dispatched"
MSG_DISPATCHED_ADVICE: Final = (
    "To change it, delete the Polecat and create a new one, or set spec.desiredState: Terminated "
    "and create a new Polecat"
)
MSG_NO_RESUME: Final = (
    "spec.desiredState: a stopped Polecat does not resume: Terminated cannot go back to Working "
    "once the work was dispatched. Create a new Polecat for the bead instead (in kubernetes mode "
    "it can start from the pushed work branch by setting spec.kubernetes.gitBranch to it)"
)


def dispatched_immutable_message(field: str, phase: str, before: str | None = None) -> str:
    """The one wording, for the webhook (with the old value) and CEL (messageExpression)."""
    was = "" if before is None else f"; it was {before}"
    return f"{field}: {MSG_DISPATCHED_IMMUTABLE} (phase {phase}){was}. {MSG_DISPATCHED_ADVICE}"


# Fields that steer dispatched work, as paths under spec: everything but desiredState.
def dispatched_frozen_fields() -> list[tuple[str, ...]]:
    """spec paths frozen once dispatched: the top-level work fields and every mode field."""
    top = [(name,) for name in models.PolecatSpec.model_fields if name in {"beadID", "task", "agent"}]
    local = [("local", name) for name in models.LocalSpec.model_fields]
    k8s = [("kubernetes", name) for name in models.KubernetesSpec.model_fields]
    return [*top, *local, *k8s]


_DISPATCHED: Final = (
    "(has(oldSelf.status) && (has(oldSelf.status.startTime) || "
    "(has(oldSelf.status.phase) && oldSelf.status.phase != 'Pending')))"
)
_OLD_PHASE: Final = "(has(oldSelf.status) && has(oldSelf.status.phase) ? oldSelf.status.phase : 'dispatched')"
# Maps and lists without size bounds: CEL's cost estimate for comparing them is over the
# apiserver's budget, so these are frozen by the webhook alone.
WEBHOOK_ONLY_FROZEN: Final = frozenset(
    {("kubernetes", "resources"), ("kubernetes", "nodeSelector"), ("kubernetes", "tolerations")}
)


def _present(root: str, path: tuple[str, ...]) -> str:
    """``has()`` for every step of a spec path (optional chaining loses the size bounds)."""
    steps = [f"has({root}.spec.{'.'.join(path[: i + 1])})" for i in range(len(path))]
    return "(" + " && ".join(steps) + ")"


def _frozen_rule(path: tuple[str, ...]) -> dict[str, str]:
    field = "spec." + ".".join(path)
    dotted = ".".join(path)
    old_has, new_has = _present("oldSelf", path), _present("self", path)
    prefix = dispatched_immutable_message(field, "@@").split("@@")
    return {
        "rule": (
            f"!{_DISPATCHED} || ({old_has} == {new_has} && "
            f"(!{old_has} || oldSelf.spec.{dotted} == self.spec.{dotted}))"
        ),
        "messageExpression": f"{_cel_string(prefix[0])} + {_OLD_PHASE} + {_cel_string(prefix[1])}",
        "message": dispatched_immutable_message(field, "past Pending"),
        "fieldPath": "." + field,
        "reason": "FieldValueInvalid",
    }


def _cel_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


OBJECT_VALIDATIONS: Final[list[dict[str, str]]] = [
    *(_frozen_rule(path) for path in dispatched_frozen_fields() if path not in WEBHOOK_ONLY_FROZEN),
    {
        "rule": (
            f"!{_DISPATCHED} || !has(oldSelf.spec.desiredState) || "
            "oldSelf.spec.desiredState != 'Terminated' || "
            "(has(self.spec.desiredState) && self.spec.desiredState == 'Terminated')"
        ),
        "message": MSG_NO_RESUME,
        "fieldPath": ".spec.desiredState",
        "reason": "FieldValueInvalid",
    },
]

# Extra keywords for nodes at a path (property names from the root of spec/status):
# things pydantic has no words for.
_OVERLAYS: Final[dict[tuple[str, ...], dict[str, Any]]] = {
    ("spec",): {"x-kubernetes-validations": SPEC_VALIDATIONS},
    # Bounds for enum strings the root CEL rules compare, so their estimated cost is small.
    ("spec", "desiredState"): {"maxLength": 32},
    ("spec", "local", "dispatcher"): {"maxLength": 32},
    ("status", "phase"): {"maxLength": 32},
    # conditions are keyed by type, as metav1.Condition lists are everywhere.
    ("status", "conditions"): {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    },
}

_CONDITIONS_LIST_MAP: Final = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
RIG_OVERLAYS: Final[dict[tuple[str, ...], dict[str, Any]]] = {("status", "conditions"): _CONDITIONS_LIST_MAP}
CONVOY_FROZEN_MESSAGE: Final = (
    "cannot be changed after the Convoy is created (its Polecats are made from it); only "
    "spec.parallelism, spec.maxFailures and spec.ttlSecondsAfterFinished may change"
)
# The scalar frozen fields are frozen by CEL too (held with the webhook down); spec.beads and
# spec.template are too large for CEL's cost budget to compare, so the webhook alone freezes them.
CONVOY_SPEC_VALIDATIONS: Final[list[dict[str, str]]] = [
    {
        "rule": "has(self.count) == has(oldSelf.count) && (!has(self.count) || self.count == oldSelf.count)",
        "message": f"spec.count: {CONVOY_FROZEN_MESSAGE}",
        "fieldPath": ".count",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": (
            "has(self.failurePolicy) == has(oldSelf.failurePolicy) && "
            "(!has(self.failurePolicy) || self.failurePolicy == oldSelf.failurePolicy)"
        ),
        "message": f"spec.failurePolicy: {CONVOY_FROZEN_MESSAGE}",
        "fieldPath": ".failurePolicy",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "has(self.beads) == has(oldSelf.beads)",
        "message": f"spec.beads: {CONVOY_FROZEN_MESSAGE}",
        "fieldPath": ".beads",
        "reason": "FieldValueInvalid",
    },
]
CONVOY_OVERLAYS: Final[dict[tuple[str, ...], dict[str, Any]]] = {
    ("spec",): {"x-kubernetes-validations": CONVOY_SPEC_VALIDATIONS},
    ("spec", "failurePolicy"): {"maxLength": 32},
    ("status", "conditions"): _CONDITIONS_LIST_MAP,
}

PRINTER_COLUMNS: Final[list[dict[str, Any]]] = [
    {"name": "Rig", "type": "string", "jsonPath": ".spec.rig", "description": "Gas Town rig."},
    {
        "name": "Mode",
        "type": "string",
        "jsonPath": ".status.executionMode",
        "description": "Where the work runs (decided at dispatch; empty before).",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the work is."},
    {"name": "Bead", "type": "string", "jsonPath": ".spec.beadID", "description": "Bead being worked on."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Pod",
        "type": "string",
        "jsonPath": ".status.kubernetes.podName",
        "priority": 1,
        "description": "Agent Pod (kubernetes mode).",
    },
    {
        "name": "Session",
        "type": "string",
        "jsonPath": ".status.local.tmuxSession",
        "priority": 1,
        "description": "tmux session (local mode).",
    },
    {
        "name": "Branch",
        "type": "string",
        "jsonPath": ".status.result.branch",
        "priority": 1,
        "description": "Branch the results were pushed to.",
    },
]


class SchemaConversionError(ValueError):
    """The models use something a structural CRD schema cannot express."""


class CRDSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, minus what a structural schema cannot hold.

    Optionals (``X | None``) become plain ``X``: in Kubernetes an absent field *is* the
    null case, and ``anyOf`` would hide the type from pruning and ``kubectl explain``.
    Titles are never emitted (they only repeat the field name).
    """

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


# Keywords copied as they are (after the checks in _node).
_SCALAR_KEYWORDS: Final = (
    "format",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
# Keywords that are dropped on purpose.
_DROPPED: Final = frozenset({"title", "$defs", "examples"})
_HANDLED: Final = frozenset(
    {
        *_SCALAR_KEYWORDS,
        "$ref",
        "anyOf",
        "allOf",
        "type",
        "description",
        "const",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "properties",
        "required",
        "items",
        "additionalProperties",
    }
)


def _merge_ref(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``$ref``/single ``allOf``/``anyOf`` minus null by the schema they point at.

    Keywords at the use site (the field's description and default) win over the
    referenced definition's (the class docstring), so each field keeps its own words.
    """
    out = dict(node)
    while True:
        if "$ref" in out:
            ref = out.pop("$ref")
            prefix = "#/$defs/"
            if not isinstance(ref, str) or not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
                raise SchemaConversionError(f"unresolvable $ref {ref!r}")
            out = {**defs[ref[len(prefix) :]], **out}
            continue
        for key in ("allOf", "anyOf"):
            if key in out:
                branches = [b for b in out.pop(key) if b != {"type": "null"}]
                if len(branches) != 1:
                    raise SchemaConversionError(
                        f"{key} with {len(branches)} non-null branches cannot be structural; "
                        "model 'one of' as optional sibling fields plus a CEL rule"
                    )
                out = {**branches[0], **out}
                break
        else:
            return out


Overlays = Mapping[tuple[str, ...], Mapping[str, Any]]


def _node(
    raw: Mapping[str, Any], defs: Mapping[str, Any], path: tuple[str, ...], overlays: Overlays
) -> dict[str, Any]:
    """Rebuild one schema node (and its children) from whitelisted keywords."""
    node = _merge_ref(raw, defs)
    unknown = set(node) - _HANDLED - _DROPPED
    if unknown:
        raise SchemaConversionError(f"{'.'.join(path) or '<root>'}: unsupported keywords {sorted(unknown)}")

    out: dict[str, Any] = {}
    if "description" in node:
        out["description"] = " ".join(str(node["description"]).split())
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    if "type" in node:
        if not isinstance(node["type"], str):
            raise SchemaConversionError(f"{'.'.join(path)}: a type list {node['type']!r} is not structural")
        out["type"] = node["type"]
    elif "enum" in node:
        out["type"] = "string"
    else:
        raise SchemaConversionError(f"{'.'.join(path)}: no type")

    for key in _SCALAR_KEYWORDS:
        if key in node:
            if key == "default" and node[key] is None:
                continue  # absent already means "not set"
            out[key] = node[key]

    # Draft 2020-12 numeric exclusive bounds -> OpenAPI v3 minimum/maximum.
    for exclusive, inclusive, step in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        if exclusive in node:
            bound = node[exclusive]
            if out["type"] == "integer":
                out[inclusive] = bound + step
            else:
                out[inclusive] = bound
                out[exclusive] = True

    if out["type"] == "object":
        props = node.get("properties") or {}
        if props:
            converted: dict[str, Any] = {}
            for name, sub in props.items():
                child = _node(sub, defs, (*path, name), overlays)
                if not child.get("description"):
                    raise SchemaConversionError(
                        f"{'.'.join((*path, name))}: no description; give the field a "
                        "Field(description=...) so `kubectl explain` is useful"
                    )
                converted[name] = child
            out["properties"] = converted
        if node.get("required"):
            out["required"] = list(node["required"])
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            if props:
                raise SchemaConversionError(f"{'.'.join(path)}: properties with additionalProperties")
            out["additionalProperties"] = _node(extra, defs, (*path, "*"), overlays)
        elif extra is True and not props:
            out["x-kubernetes-preserve-unknown-fields"] = True
        # additionalProperties: false is dropped: the apiserver prunes unknown fields.
    if out["type"] == "array":
        if "items" not in node:
            raise SchemaConversionError(f"{'.'.join(path)}: array without items")
        out["items"] = _node(node["items"], defs, (*path, "[]"), overlays)

    out.update(overlays.get(path, {}))
    return out


def structural(
    schema: Mapping[str, Any], path: tuple[str, ...] = (), overlays: Overlays | None = None
) -> dict[str, Any]:
    """Convert one pydantic JSON Schema (with its ``$defs``) into a structural schema."""
    return _node(schema, schema.get("$defs", {}), path, _OVERLAYS if overlays is None else overlays)


def model_schema(
    model: type[BaseModel], path: tuple[str, ...], overlays: Overlays | None = None
) -> dict[str, Any]:
    """The structural schema of a model, as wire names, in validation mode.

    ``overlays`` add keywords at paths (default: the Polecat's).
    """
    raw = model.model_json_schema(by_alias=True, schema_generator=CRDSchemaGenerator, mode="validation")
    return structural(raw, path, overlays)


def _object_schema(
    doc: str | None,
    spec: type[BaseModel],
    status: type[BaseModel],
    validations: list[dict[str, str]] | None = None,
    overlays: Overlays | None = None,
) -> dict[str, Any]:
    """The openAPIV3Schema of one kind: apiVersion/kind/metadata, spec and status."""
    schema: dict[str, Any] = {
        "description": " ".join((doc or "").split()),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": (
                    "APIVersion defines the versioned schema of this representation of an object."
                ),
                "type": "string",
            },
            "kind": {
                "description": (
                    "Kind is a string value representing the REST resource this object represents."
                ),
                "type": "string",
            },
            "metadata": {"type": "object"},
            "spec": model_schema(spec, ("spec",), overlays),
            "status": model_schema(status, ("status",), overlays),
        },
        "required": ["spec"],
    }
    if validations:
        schema["x-kubernetes-validations"] = validations
    return schema


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of a Polecat."""
    # OBJECT_VALIDATIONS are not in the CRD: root rules run on every write, status writes
    # too; they ship as an admission policy that only sees spec updates (gastown.api.policy).
    return _object_schema(models.Polecat.__doc__, models.PolecatSpec, models.PolecatStatus)


def _crd(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    categories: list[str],
    printer_columns: list[dict[str, Any]],
    schema: dict[str, Any],
) -> dict[str, Any]:
    """A CustomResourceDefinition of the group, namespaced, one served version with status."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "gastown-operator", "app.kubernetes.io/part-of": "gastown"},
        },
        "spec": {
            "group": models.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": list(short_names),
                "categories": list(categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def build_crd() -> dict[str, Any]:
    """The Polecat CustomResourceDefinition object."""
    return _crd(
        kind=models.KIND,
        plural=models.PLURAL,
        singular=models.SINGULAR,
        short_names=models.SHORT_NAMES,
        categories=models.CATEGORIES,
        printer_columns=PRINTER_COLUMNS,
        schema=openapi_schema(),
    )


RIG_PRINTER_COLUMNS: Final[list[dict[str, Any]]] = [
    {
        "name": "Mode",
        "type": "string",
        "jsonPath": ".spec.executionMode",
        "description": "Default execution mode of the rig's Polecats.",
    },
    {
        "name": "Max",
        "type": "integer",
        "jsonPath": ".spec.maxActivePolecats",
        "description": "Polecats that may run at once (empty: no limit).",
    },
    {
        "name": "Active",
        "type": "integer",
        "jsonPath": ".status.activePolecats",
        "description": "Polecats dispatched and not finished.",
    },
    {
        "name": "Waiting",
        "type": "integer",
        "jsonPath": ".status.waitingPolecats",
        "description": "Polecats waiting for a slot.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_rig_crd() -> dict[str, Any]:
    """The Rig CustomResourceDefinition object."""
    return _crd(
        kind=rig_api.KIND,
        plural=rig_api.PLURAL,
        singular=rig_api.SINGULAR,
        short_names=rig_api.SHORT_NAMES,
        categories=rig_api.CATEGORIES,
        printer_columns=RIG_PRINTER_COLUMNS,
        schema=_object_schema(rig_api.Rig.__doc__, rig_api.RigSpec, rig_api.RigStatus, overlays=RIG_OVERLAYS),
    )


CONVOY_PRINTER_COLUMNS: Final[list[dict[str, Any]]] = [
    {"name": "Rig", "type": "string", "jsonPath": ".spec.template.spec.rig", "description": "Gas Town rig."},
    {"name": "Total", "type": "integer", "jsonPath": ".status.total", "description": "Beads in the Convoy."},
    {
        "name": "Working",
        "type": "integer",
        "jsonPath": ".status.counts.working",
        "description": "Beads being worked on.",
    },
    {"name": "Done", "type": "integer", "jsonPath": ".status.counts.done", "description": "Beads done."},
    {
        "name": "Failed",
        "type": "integer",
        "jsonPath": ".status.counts.failed",
        "description": "Beads failed.",
    },
    {
        "name": "Complete",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Complete")].status',
        "description": "Whether every bead has finished.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Parallelism",
        "type": "integer",
        "jsonPath": ".spec.parallelism",
        "priority": 1,
        "description": "Polecats unfinished at once, at most.",
    },
]


def build_convoy_crd() -> dict[str, Any]:
    """The Convoy CustomResourceDefinition object."""
    return _crd(
        kind=convoy_api.KIND,
        plural=convoy_api.PLURAL,
        singular=convoy_api.SINGULAR,
        short_names=convoy_api.SHORT_NAMES,
        categories=convoy_api.CATEGORIES,
        printer_columns=CONVOY_PRINTER_COLUMNS,
        schema=_object_schema(
            convoy_api.Convoy.__doc__,
            convoy_api.ConvoySpec,
            convoy_api.ConvoyStatus,
            overlays=CONVOY_OVERLAYS,
        ),
    )


def build_crds() -> list[dict[str, Any]]:
    """Every CRD of the group: Polecat, Rig, Convoy."""
    return [build_crd(), build_rig_crd(), build_convoy_crd()]


def crd_filename(obj: Mapping[str, Any]) -> str:
    """The file a CRD is committed as, in ``crds/`` and the chart: <group>_<plural>.yaml."""
    return f"{models.GROUP}_{obj['spec']['names']['plural']}.yaml"


CRD_FILENAMES: Final = tuple(
    f"{models.GROUP}_{plural}.yaml" for plural in (models.PLURAL, rig_api.PLURAL, convoy_api.PLURAL)
)
CRD_NAMES: Final = tuple(
    f"{plural}.{models.GROUP}" for plural in (models.PLURAL, rig_api.PLURAL, convoy_api.PLURAL)
)


def render_crd(obj: dict[str, Any] | None = None) -> str:
    """A CRD (the Polecat's by default) as the YAML text committed in ``crds/``."""
    body = yaml.safe_dump(
        obj if obj is not None else build_crd(), sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


def render_crds() -> str:
    """Every CRD as one multi-document YAML stream (for ``gastown operator crd``)."""
    return "---\n".join(render_crd(obj) for obj in build_crds())


def main(argv: list[str] | None = None) -> int:
    """Write the CRDs into a directory (``-o -`` for stdout), or with ``--check`` report stale files.

    Into the repository's ``crds/`` (the default), the dispatch policy's files are written
    (checked) too: they are generated from the same rules (:mod:`gastown.api.policy`).
    """
    from gastown.api import policy  # noqa: PLC0415 - policy imports this module

    parser = argparse.ArgumentParser(prog="python -m gastown.api.crd", description=main.__doc__)
    parser.add_argument("-o", "--output", default=str(DEFAULT_DIR), help=f"directory; default: {DEFAULT_DIR}")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs; write nothing")
    args = parser.parse_args(argv)
    if args.output == "-":
        sys.stdout.write(render_crds())
        return 0
    out_dir = Path(args.output)
    files = {out_dir / crd_filename(obj): render_crd(obj) for obj in build_crds()}
    if out_dir.resolve() == (policy.REPO / DEFAULT_DIR).resolve():
        files |= policy.outputs()
    stale = 0
    for out, text in files.items():
        if args.check:
            current = out.read_text(encoding="utf-8") if out.exists() else ""
            if current != text:
                print(f"{out} is out of date: run python -m gastown.api.crd", file=sys.stderr)
                stale += 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
