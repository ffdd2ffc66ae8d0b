"""Pure status computation: from what the reconciler decided to the Polecat's status.

Nothing here does I/O or reads the clock: the reconciler passes ``now``. That keeps the
rules (which conditions, when a transition time moves, when start and completion times
are set) unit-testable and makes "did the status change?" a plain dict comparison.

The status follows the Kubernetes API conventions:

* ``phase`` — a one-word summary (``Pending`` … ``Done``).
* ``observedGeneration`` — the ``metadata.generation`` the status was computed from, so
  a client can tell a stale status from a current one.
* ``conditions`` — ``Ready`` (the Polecat is where the user asked it to be: working,
  done, or stopped on request) and ``Dispatched`` (work was started for it), each with
  ``reason``/``message`` and a ``lastTransitionTime`` that moves only when the
  condition's ``status`` flips.
* ``startTime`` is set once, when work is first dispatched; ``completionTime`` once,
  when a terminal phase is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from gastown.api.models import (
    TERMINAL_PHASES,
    Condition,
    DesiredState,
    KubernetesStatus,
    LocalStatus,
    Phase,
    Polecat,
    PolecatStatus,
    ResultStatus,
)

READY = "Ready"
DISPATCHED = "Dispatched"

ConditionStatus = Literal["True", "False", "Unknown"]

# The reason a phase gets when the executor gives none; Events use the same words.
PHASE_REASONS: dict[Phase, str] = {
    Phase.PENDING: "Pending",
    Phase.DISPATCHING: "Dispatching",
    Phase.WORKING: "Working",
    Phase.DONE: "Completed",
    Phase.FAILED: "Failed",
    Phase.STUCK: "Stuck",
    Phase.TERMINATED: "Terminated",
}

PHASE_MESSAGES: dict[Phase, str] = {
    Phase.PENDING: "Waiting to be dispatched.",
    Phase.DISPATCHING: "The work is being started.",
    Phase.WORKING: "The agent is working.",
    Phase.DONE: "The agent finished its work.",
    Phase.FAILED: "The work failed.",
    Phase.STUCK: "The work cannot make progress; see the message of the Ready condition.",
    Phase.TERMINATED: "The work was stopped on request (spec.desiredState: Terminated).",
}


def utcnow() -> datetime:
    """The current time as Kubernetes stores it: UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the reconciler concluded about a Polecat this round.

    ``ready`` overrides the default Ready status for the phase (a user error on a
    Pending Polecat is Ready=False even though Pending is normal). ``dispatched`` says
    whether work was started, now or earlier. Details left None keep what the status
    already holds (a Pod garbage-collected after Done does not erase its name).
    """

    phase: Phase
    reason: str = ""
    message: str = ""
    dispatched: bool = False
    ready: ConditionStatus | None = None
    local: LocalStatus | None = None
    kubernetes: KubernetesStatus | None = None
    result: ResultStatus | None = None

    @property
    def effective_reason(self) -> str:
        """The reason given, or the phase's default one."""
        return self.reason or PHASE_REASONS[self.phase]

    @property
    def effective_message(self) -> str:
        """The message given, or the phase's default one."""
        return self.message or PHASE_MESSAGES[self.phase]


def ready_status(phase: Phase, desired: DesiredState) -> ConditionStatus:
    """Ready is True where the user wants the Polecat: working, done, or stopped on request."""
    if phase in (Phase.WORKING, Phase.DONE):
        return "True"
    if phase is Phase.TERMINATED and desired is DesiredState.TERMINATED:
        return "True"
    return "False"


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Return ``conditions`` with ``type`` set; its transition time moves only if ``status`` flips."""
    out: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.type != type:
            out.append(condition)
            continue
        found = True
        transition = condition.lastTransitionTime if condition.status == status else None
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                lastTransitionTime=transition or now,
                observedGeneration=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                lastTransitionTime=now,
                observedGeneration=generation,
            )
        )
    return out


def get_condition(status: PolecatStatus | None, type: str) -> Condition | None:
    """The condition of ``type`` in ``status``, if any."""
    if status is None:
        return None
    for condition in status.conditions:
        if condition.type == type:
            return condition
    return None


def next_status(polecat: Polecat, assessment: Assessment, *, now: datetime) -> PolecatStatus:
    """The status the Polecat should have after this round."""
    current = polecat.status or PolecatStatus()
    generation = polecat.metadata.generation
    phase = assessment.phase
    ready = assessment.ready or ready_status(phase, polecat.spec.desiredState)

    conditions = set_condition(
        current.conditions,
        type=READY,
        status=ready,
        reason=assessment.effective_reason,
        message=assessment.effective_message,
        generation=generation,
        now=now,
    )
    dispatched = assessment.dispatched or current.startTime is not None
    if dispatched:
        dispatched_reason, dispatched_message = "Dispatched", "Work was started for this Polecat."
    elif phase is Phase.TERMINATED:
        dispatched_reason, dispatched_message = "Terminated", "Stopped before any work was started."
    elif assessment.ready == "False" and assessment.reason:
        dispatched_reason, dispatched_message = assessment.reason, assessment.effective_message
    else:
        dispatched_reason, dispatched_message = "NotDispatched", "No work was started yet."
    conditions = set_condition(
        conditions,
        type=DISPATCHED,
        status="True" if dispatched else "False",
        reason=dispatched_reason,
        message=dispatched_message,
        generation=generation,
        now=now,
    )

    start_time = current.startTime or (now if dispatched else None)
    completion_time = current.completionTime or (now if phase in TERMINAL_PHASES else None)
    return PolecatStatus(
        phase=phase,
        observedGeneration=generation,
        conditions=conditions,
        startTime=start_time,
        completionTime=completion_time,
        lastActivity=current.lastActivity,
        local=assessment.local or current.local,
        kubernetes=assessment.kubernetes or current.kubernetes,
        result=assessment.result or current.result,
    )


def status_wire(status: PolecatStatus) -> dict[str, Any]:
    """A status as it is stored (camelCase, RFC 3339 times, unset fields left out)."""
    return status.model_dump(mode="json", exclude_none=True)


def normalize_status(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored status in :func:`status_wire` form, for comparison; None if unparseable or absent."""
    if not raw:
        return None
    try:
        return status_wire(PolecatStatus.model_validate(raw))
    except ValidationError:
        return None


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns ``old`` into ``new``.

    Keys missing from ``new`` become null (deleted); lists and scalars are replaced
    whole; equal subtrees are left out. ``{}`` means no change.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(old[key], dict) and isinstance(value, dict):
                patch[key] = merge_patch(old[key], value)
            else:
                patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def current_status(polecat: Polecat) -> PolecatStatus:
    """The Polecat's status, or the empty one."""
    return polecat.status or PolecatStatus()
