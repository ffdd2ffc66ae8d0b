"""The Rig API: one Gas Town rig's defaults for its Polecats, and how many may run at once.

A Polecat names its rig in ``spec.rig``. When a Rig of that name exists in the Polecat's
namespace, every field the Polecat leaves out is taken from the Rig, once, at dispatch;
the values used are recorded in the Polecat's status, so a later Rig edit never changes
work already running. A Rig is optional: a Polecat complete on its own runs without one.

The defaults reuse the Polecat's own mode models, so a field means the same thing in
both places and is validated by the same rules and messages.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gastown.api.models import (
    API_VERSION,
    DNS1123_LABEL,
    Condition,
    ExecutionMode,
    KubernetesSpec,
    LocalSpec,
    ObjectMeta,
    _Model,
)

KIND = "Rig"
PLURAL = "rigs"
SINGULAR = "rig"
SHORT_NAMES = ["gtrig"]  # not "rig": short names must not shadow a plural someone may install
CATEGORIES = ["gastown"]


class RigSpec(_Model):
    """Defaults for the rig's Polecats, and its capacity."""

    executionMode: ExecutionMode | None = Field(
        default=None,
        description="Execution mode of Polecats that leave spec.executionMode out. Unset: local.",
    )
    agent: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Agent of Polecats that leave spec.agent out. Unset: claude-code.",
    )
    local: LocalSpec | None = Field(
        default=None,
        description="Local-mode defaults (dispatcher, townRoot, command, workDir, deadline).",
    )
    kubernetes: KubernetesSpec | None = Field(
        default=None,
        description=(
            "Kubernetes-mode defaults (repository, branch, Secrets, known_hosts, image, resources, "
            "deadline, scheduling). workBranch is per Polecat and not taken from the Rig."
        ),
    )
    maxActivePolecats: int | None = Field(
        default=None,
        ge=0,
        description=(
            "How many of the rig's Polecats in this namespace may be dispatched and not yet finished "
            "at once. Others wait in Pending (RigAtCapacity) and start in creation order as slots "
            "free. 0 holds every new Polecat. Unset: no limit."
        ),
    )


class RigStatus(_Model):
    """What the operator observed about the rig's Polecats."""

    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation this status was computed from."
    )
    activePolecats: int | None = Field(
        default=None, description="Polecats of the rig dispatched and not yet finished."
    )
    waitingPolecats: int | None = Field(
        default=None, description="Polecats of the rig waiting in Pending for a free slot."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")


class Rig(_Model):
    """A Gas Town rig: defaults for its Polecats and how many may run at once."""

    apiVersion: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RigSpec = Field(default_factory=RigSpec)
    status: RigStatus | None = None

    @property
    def key(self) -> str:
        """The namespace/name key used by caches and the work queue."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Rig:
        """Parse an object as the apiserver returns it."""
        return cls.model_validate(obj)

    def to_dict(self) -> dict[str, Any]:
        """Dump to wire form, leaving out unset optional fields."""
        return self.model_dump(mode="json", exclude_none=True)
