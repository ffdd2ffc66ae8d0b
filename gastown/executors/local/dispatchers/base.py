"""The interface of a local-mode dispatcher and what dispatchers share.

A dispatcher is the mode-specific half of ``LocalExecutor``: it owns the
idempotency of starting work (never twice for one Polecat, crash-safe) and maps
what it finds on the host to a Polecat phase. The executor adds nothing but the
choice of dispatcher and the user-facing commands (logs, attach).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gastown.api.models import TERMINAL_PHASES, LocalStatus, Phase, Polecat
from gastown.executors.base import Observation, Release


@dataclass(frozen=True, slots=True)
class SessionRef:
    """Where a Polecat's agent runs: enough to capture its pane or attach to it."""

    socket: str
    session: str


class Dispatcher(Protocol):
    """The executor operations, for one way of starting agents."""

    async def observe(self, polecat: Polecat) -> Observation: ...

    async def dispatch(self, polecat: Polecat) -> Observation: ...

    async def terminate(self, polecat: Polecat) -> Observation: ...

    async def release(self, polecat: Polecat, *, force: bool) -> Release: ...

    async def session_ref(self, polecat: Polecat) -> SessionRef | None:
        """The tmux session of the Polecat, if known (for logs)."""
        ...


def observation(
    phase: Phase | None,
    reason: str,
    message: str,
    *,
    local: LocalStatus | None,
    poll_interval: float,
) -> Observation:
    """An Observation that asks to be polled again while the work can still change."""
    requeue = None if phase in TERMINAL_PHASES else poll_interval
    return Observation(phase=phase, reason=reason, message=message, local=local, requeue_after=requeue)
