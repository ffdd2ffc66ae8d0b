"""A Polecat's effective spec: what it sets, and what it leaves out taken from its Rig.

Pure: no I/O, no clock. The controller calls :func:`resolve` at dispatch (with the Rig
from its cache) and records the outcome as ``status.effective``
(:class:`~gastown.api.models.EffectiveSpec`); after that :func:`apply_recorded` rebuilds
the same effective spec from the status, whatever the Rig says by then. The webhook calls
:func:`resolve` too (with a Rig it read), so both check the same values.

"Left out" means not in the model's ``model_fields_set`` (the CRD schema has no defaults
for the fields a Rig can supply, so the apiserver does not fill them in) or null. A field
neither the Polecat nor its Rig sets takes the model's default, as without a Rig.

Precedence, field by field: the Polecat's value, else the Rig's, else the default. The
mode sections merge field by field too, but only the section of the effective mode is
taken from the Rig; ``kubernetes.workBranch`` is per Polecat and never taken from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

from pydantic import BaseModel

from gastown.api.models import (
    EffectiveSpec,
    ExecutionMode,
    KubernetesSpec,
    LocalSpec,
    Polecat,
    PolecatSpec,
)
from gastown.api.rig import Rig

NOT_FROM_RIG: Final = frozenset({("kubernetes", "workBranch")})
"""Spec paths a Rig never supplies (they are per Polecat)."""

_Section = TypeVar("_Section", LocalSpec, KubernetesSpec)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of :func:`resolve`.

    ``spec``: the effective spec. ``effective``: what ``status.effective`` records (None
    without a Rig: the spec is then its own effective spec, as before Rigs). ``from_rig``:
    the spec paths whose value came from the Rig, dotted (``kubernetes.image``).
    """

    spec: PolecatSpec
    effective: EffectiveSpec | None
    from_rig: tuple[str, ...]


def is_set(model: BaseModel, name: str) -> bool:
    """Whether ``model`` sets field ``name`` (given and not null)."""
    return name in model.model_fields_set and getattr(model, name) is not None


def _merge(
    own: _Section | None, rig: _Section | None, kind: type[_Section], section: str
) -> tuple[_Section | None, list[str]]:
    """One mode section: the Polecat's fields, then the Rig's; the paths taken from the Rig."""
    if rig is None:
        return own, []
    values: dict[str, object] = {}
    taken: list[str] = []
    for name in kind.model_fields:
        if own is not None and is_set(own, name):
            values[name] = getattr(own, name)
        elif is_set(rig, name) and (section, name) not in NOT_FROM_RIG:
            values[name] = getattr(rig, name)
            taken.append(f"{section}.{name}")
    if own is None and not taken:
        return None, []
    return kind.model_validate(values), taken


def resolve(spec: PolecatSpec, rig: Rig | None) -> Resolution:
    """The effective spec of ``spec`` given its Rig (None: no Rig exists)."""
    if rig is None:
        return Resolution(spec, None, ())
    taken: list[str] = []
    own = spec.model_fields_set
    updates: dict[str, object] = {}
    for name in ("executionMode", "agent"):
        if not is_set(spec, name) and is_set(rig.spec, name):
            updates[name] = getattr(rig.spec, name)
            taken.append(name)
    mode = updates.get("executionMode", spec.executionMode)
    if mode is ExecutionMode.KUBERNETES:
        k8s, from_rig = _merge(spec.kubernetes, rig.spec.kubernetes, KubernetesSpec, "kubernetes")
        updates["kubernetes"] = k8s
        taken.extend(from_rig)
    else:
        local, from_rig = _merge(spec.local, rig.spec.local, LocalSpec, "local")
        updates["local"] = local
        taken.extend(from_rig)
    fields = {name for name, value in updates.items() if value is not None} | own
    effective_spec = spec.model_copy(update=updates)
    # model_copy keeps the old fields set: say which ones the effective spec sets now.
    object.__setattr__(effective_spec, "__pydantic_fields_set__", fields)
    recorded = EffectiveSpec(
        rig=rig.metadata.name,
        rigGeneration=rig.metadata.generation,
        executionMode=effective_spec.executionMode,
        agent=effective_spec.agent,
        local=effective_spec.local,
        kubernetes=effective_spec.kubernetes,
        fromRig=taken,
    )
    return Resolution(effective_spec, recorded, tuple(taken))


def apply_recorded(spec: PolecatSpec, effective: EffectiveSpec) -> PolecatSpec:
    """The spec as it was resolved at dispatch (``status.effective``)."""
    updates = {
        "executionMode": effective.executionMode,
        "agent": effective.agent,
        "local": effective.local,
        "kubernetes": effective.kubernetes,
    }
    out = spec.model_copy(update=updates)
    fields = spec.model_fields_set | {"executionMode", "agent"}
    fields |= {name for name in ("local", "kubernetes") if updates[name] is not None}
    object.__setattr__(out, "__pydantic_fields_set__", fields)
    return out


def with_spec(polecat: Polecat, spec: PolecatSpec) -> Polecat:
    """A copy of ``polecat`` whose spec is ``spec`` (metadata and status shared, unchanged)."""
    return polecat.model_copy(update={"spec": spec})


def recorded(polecat: Polecat) -> Polecat:
    """``polecat`` with the effective spec recorded in its status, if there is one."""
    status = polecat.status
    if status is None or status.effective is None:
        return polecat
    return with_spec(polecat, apply_recorded(polecat.spec, status.effective))


def missing(spec: PolecatSpec) -> list[str]:
    """Spec paths the work cannot start without and the effective spec leaves out.

    Kubernetes mode needs a repository to clone. Local mode needs nothing more (its
    defaults, and the operator's settings, make a runnable spec).
    """
    if spec.executionMode is ExecutionMode.KUBERNETES and (
        spec.kubernetes is None or spec.kubernetes.gitRepository is None
    ):
        return ["kubernetes.gitRepository"]
    return []


def needs_rig(spec: PolecatSpec) -> bool:
    """Whether the spec cannot run as it is and a Rig might complete it.

    Either something required is missing (:func:`missing`), or it has a kubernetes
    section but leaves the mode to the Rig (without the Rig it would be local mode, where
    that section is forbidden).
    """
    if missing(spec):
        return True
    return not is_set(spec, "executionMode") and spec.kubernetes is not None
