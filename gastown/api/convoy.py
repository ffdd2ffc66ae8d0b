"""The Convoy API: a batch of beads fanned out over owned Polecats.

A Convoy lists beads (each with its task), or asks for ``count`` copies of one task,
and a Polecat template (rig and overrides). It creates one owned Polecat per bead,
never two for one bead, at most ``parallelism`` unfinished at a time, within the Rig's
capacity, and keeps an aggregate status: counts by phase, times, and each bead's result.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from gastown.api.models import (
    API_VERSION,
    BEAD_ID,
    GROUP,
    Condition,
    ObjectMeta,
    Phase,
    PolecatSpec,
    _Model,
)

KIND = "Convoy"
PLURAL = "convoys"
SINGULAR = "convoy"
SHORT_NAMES = ["cvy"]
CATEGORIES = ["gastown"]

LABEL_CONVOY = f"{GROUP}/convoy"
"""Label on every Polecat a Convoy creates: the Convoy's name."""
MAX_BEADS = 5000
"""Beads per Convoy: each has an entry in status, which must fit in one etcd object."""


class FailurePolicy(StrEnum):
    """What a Convoy does when one of its Polecats fails."""

    CONTINUE = "Continue"
    STOP = "Stop"


class ConvoyBead(_Model):
    """One bead of the batch, with its own instructions."""

    beadID: str = Field(
        min_length=1, max_length=63, pattern=BEAD_ID, description="Gas Town bead id, e.g. gt-abc12."
    )
    task: str | None = Field(
        default=None,
        max_length=65536,
        description="Instructions for this bead's agent. Unset: the template's task.",
    )


class PolecatTemplateSpec(PolecatSpec):
    """A Polecat spec without its bead: the Convoy fills in beadID (and task) per bead."""

    beadID: str | None = Field(  # type: ignore[assignment]
        default=None,
        max_length=63,
        pattern=BEAD_ID,
        description="Leave unset (refused): each Polecat gets its bead from spec.beads or spec.count.",
    )


class PolecatTemplateMetadata(_Model):
    """Labels and annotations copied onto every Polecat the Convoy creates."""

    labels: dict[str, str] = Field(default_factory=dict, description="Labels for the Polecats.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations for the Polecats.")


class PolecatTemplate(_Model):
    """What each of the Convoy's Polecats looks like."""

    metadata: PolecatTemplateMetadata | None = Field(
        default=None, description="Labels and annotations for the Polecats."
    )
    spec: PolecatTemplateSpec = Field(description="The Polecat spec, less the bead.")


class ConvoySpec(_Model):
    """A batch of beads and how to run them."""

    beads: list[ConvoyBead] | None = Field(
        default=None,
        max_length=MAX_BEADS,
        description="The beads to work on, each with its task. Set this or count, not both.",
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BEADS,
        description=(
            "Run the template's task this many times, as beads <convoy name>-1 ... -<count>. "
            "Set this or beads, not both."
        ),
    )
    template: PolecatTemplate = Field(description="The Polecat each bead runs as (rig and overrides).")
    parallelism: int = Field(
        default=10,
        ge=1,
        le=MAX_BEADS,
        description="At most this many of the Convoy's Polecats exist unfinished at any moment.",
    )
    failurePolicy: FailurePolicy = Field(
        default=FailurePolicy.CONTINUE,
        description=(
            "Continue: every bead is tried whatever fails. Stop: once maxFailures Polecats have "
            "failed, no new ones are started (running ones finish) and the Convoy is Complete, Failed."
        ),
    )
    maxFailures: int = Field(
        default=1, ge=1, description="With failurePolicy Stop: failures that stop the Convoy."
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds after each of the Convoy's Polecats finishes before it is deleted; its result "
            "stays in the Convoy's status. Unset: Polecats are kept until the Convoy is deleted."
        ),
    )


class ConvoyBeadStatus(_Model):
    """Where one bead of the Convoy is, and what it produced."""

    beadID: str = Field(description="The bead.")
    polecat: str | None = Field(default=None, description="Name of the Polecat working on it.")
    phase: Phase | None = Field(default=None, description="The Polecat's phase; unset before it exists.")
    reason: str | None = Field(default=None, description="Why it failed or is stuck, when it did.")
    branch: str | None = Field(default=None, description="Branch its results were pushed to.")
    commit: str | None = Field(default=None, description="Commit holding its results.")
    completionTime: datetime | None = Field(default=None, description="When its work ended.")


class ConvoyCounts(_Model):
    """How many beads are in each phase (beads not started yet count as pending)."""

    pending: int = Field(default=0, description="Not started, or Polecat Pending.")
    dispatching: int = Field(default=0, description="Polecat Dispatching.")
    working: int = Field(default=0, description="Polecat Working.")
    stuck: int = Field(default=0, description="Polecat Stuck.")
    done: int = Field(default=0, description="Polecat Done.")
    failed: int = Field(default=0, description="Polecat Failed.")
    terminated: int = Field(default=0, description="Polecat Terminated.")


class ConvoyStatus(_Model):
    """What the operator observed about the batch."""

    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation this status was computed from."
    )
    total: int | None = Field(default=None, description="Beads in the Convoy.")
    counts: ConvoyCounts | None = Field(default=None, description="Beads by phase.")
    startTime: datetime | None = Field(default=None, description="When the first Polecat was created.")
    completionTime: datetime | None = Field(default=None, description="When the last bead finished.")
    beads: list[ConvoyBeadStatus] = Field(
        default_factory=list, description="Each bead's Polecat, phase and result."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (work going as asked) and Complete."
    )


class Convoy(_Model):
    """A batch of beads worked on by owned Polecats."""

    apiVersion: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ConvoySpec
    status: ConvoyStatus | None = None

    @property
    def key(self) -> str:
        """The namespace/name key used by caches and the work queue."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Convoy:
        """Parse an object as the apiserver returns it."""
        return cls.model_validate(obj)

    def to_dict(self) -> dict[str, Any]:
        """Dump to wire form, leaving out unset optional fields."""
        return self.model_dump(mode="json", exclude_none=True)
