"""The one interface both execution modes implement.

The reconciler is level-based: for a Polecat it asks its executor what *is*
(``observe``), and when nothing runs yet and the user wants work, asks it to start
(``dispatch``). It never learns which mode it talks to. Executors own the idempotency
of their side effects: ``dispatch`` called twice for one Polecat (a crash between
dispatch and the status write, a duplicate queue entry) must not start work twice.

Errors are typed so the reconciler knows what to retry:

* ``UserError``  – the spec or its referenced objects are wrong; retrying will not
  help until the user changes something. Reported in status, not retried with backoff.
* ``TransientError`` – a fault outside the user's control (timeouts, ssh drops,
  409s); retried with per-key exponential backoff.
* anything else is a bug; logged with its traceback and retried with backoff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from gastown.api.models import KubernetesStatus, LocalStatus, Phase, Polecat, ResultStatus


class ExecutorError(Exception):
    """Base of the typed executor errors. ``reason`` is a CamelCase condition reason.

    ``host`` names the machine that could not be reached (``user@host:port``) when the
    error is that the work's host is unreachable, so status can say which host.
    """

    def __init__(self, reason: str, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.host = host


class UserError(ExecutorError):
    """The user must change something (spec, Secret, host setup); not retried with backoff."""


class TransientError(ExecutorError):
    """A fault that may pass by itself; retried with backoff."""


@dataclass(frozen=True, slots=True)
class WorkSaved:
    """Whether the work of a stopped Polecat reached its branch: the ``WorkSaved`` condition.

    Set by an executor that stopped the work itself (``desiredState: Terminated``, a
    deletion): ``status`` True (pushed), False (not pushed: ``message`` says why and what
    to do), Unknown (nothing confirmed the push).
    """

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """What an executor sees of a Polecat's work.

    ``phase`` is None when no work exists for the Polecat (nothing was dispatched, or
    what was dispatched is gone). ``reason``/``message`` explain the phase and become
    the Ready condition. ``requeue_after`` asks the reconciler to look again after
    that many seconds, for executors that poll (local mode) rather than watch.
    """

    phase: Phase | None
    reason: str = ""
    message: str = ""
    local: LocalStatus | None = None
    kubernetes: KubernetesStatus | None = None
    result: ResultStatus | None = None
    requeue_after: float | None = None
    last_activity: datetime | None = None
    """The agent's last sign of life (its tmux session's activity), if the executor knows it."""
    stopping: bool = False
    """The work was asked to stop and is still saving it: with ``desiredState: Terminated``
    the phase stays the observed one (not yet Terminated) until the work has ended."""
    node_lost_since: datetime | None = None
    """The work's node has not reported since then (its state is unknown); the status
    module turns this into Failed once that lasted longer than the node-lost timeout."""
    work_saved: WorkSaved | None = None
    """Whether a stop the executor asked for saved the work (the ``WorkSaved`` condition)."""


@dataclass(frozen=True, slots=True)
class Release:
    """Outcome of cleaning up a deleted Polecat's work.

    ``done`` True lets the reconciler drop the finalizer; False keeps the Polecat
    (and its work) and puts ``reason``/``message`` in a condition and an Event that
    tell the user what to do (e.g. push unpushed commits, or set force-delete).
    """

    done: bool
    reason: str = ""
    message: str = ""
    observation: Observation | None = None
    """What the executor saw of the work while releasing it (the stopped work's result):
    written to the status before the finalizer goes, so the record outlives the work."""


class Executor(Protocol):
    """Runs the work of Polecats in one execution mode."""

    @property
    def needs_finalizer(self) -> bool:
        """Whether deleting a Polecat needs this executor's cleanup first.

        Both modes need one: local mode must kill tmux sessions and refuse to lose
        unpushed work; kubernetes mode stops the Pod, records its result and keeps the
        Polecat while the push failed (owner references then garbage-collect the Pod).
        """
        ...

    @property
    def finalizer_with_dispatch(self) -> bool:
        """Whether the finalizer is added in the dispatch round, concurrently with it.

        True where the work is cleaned up by garbage collection anyway and the finalizer
        only guards its record (kubernetes mode): no extra round before the Pod create.
        False adds it in a round of its own before anything is dispatched (local mode: a
        tmux session must never exist without its cleanup).
        """
        ...

    async def observe(self, polecat: Polecat) -> Observation:
        """Report what runs for this Polecat now. Must not change anything."""
        ...

    async def dispatch(self, polecat: Polecat) -> Observation:
        """Start the work if it is not running. Idempotent and crash-safe."""
        ...

    async def terminate(self, polecat: Polecat) -> Observation:
        """Stop the work (desiredState Terminated), keeping what it produced."""
        ...

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        """Clean up when the Polecat is deleted. ``force`` skips the lost-work check."""
        ...

    def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        """Stream the agent's output: Pod logs, or the tmux pane."""
        ...

    def attach_command(self, polecat: Polecat) -> list[str]:
        """The argv a user runs to attach to the work (ssh+tmux attach, kubectl attach)."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (SSH connections); called once, at shutdown.

        The manager calls it after the engine has stopped, so no call is in flight.
        """
        ...
