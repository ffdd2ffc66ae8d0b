"""``ttlSecondsAfterFinished``: when a finished Polecat is due for deletion (pure).

Like a Job's: the clock starts at ``status.completionTime``, which the operator writes
when the Polecat reaches Done, Failed or Terminated. The reconciler deletes the Polecat
once :func:`remaining` is zero or less (normal deletion: its finalizer saves the work
first), and otherwise asks to be woken at the expiry — one requeue, no polling.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gastown.api.models import TERMINAL_PHASES, Polecat


def remaining(polecat: Polecat, now: datetime) -> float | None:
    """Seconds until the Polecat's TTL runs out (<= 0: due now); None when it has none running."""
    ttl = polecat.spec.ttlSecondsAfterFinished
    status = polecat.status
    if ttl is None or status is None or status.phase not in TERMINAL_PHASES or status.completionTime is None:
        return None
    return (status.completionTime + timedelta(seconds=ttl) - now).total_seconds()


def expired_message(polecat: Polecat) -> str:
    """The Event note for a Polecat deleted by its TTL."""
    status = polecat.status
    phase = status.phase.value if status is not None else "finished"
    when = status.completionTime.isoformat() if status is not None and status.completionTime else "?"
    return (
        f"Deleting the Polecat: it finished ({phase}) at {when} and ttlSecondsAfterFinished "
        f"({polecat.spec.ttlSecondsAfterFinished}s) has passed."
    )
