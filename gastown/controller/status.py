"""Pure status computation: from what a round learned to the Polecat's new status and Events.

This is the one place that decides what a Polecat's status says. The reconciler only
orchestrates — read the cache, ask the executor, hand what it learned (a
:data:`Finding`) to :func:`decide`, patch the status if it changed, record the Events
the decision lists. Nothing here does I/O or reads the clock (the reconciler passes
``now``), so every transition is unit-testable as a table and "did the status change?"
is a plain dict comparison.

What a round can learn, and what the status then says:

* an :class:`~gastown.executors.base.Observation` of the work — its phase, reason and
  message become the status; no work yet is ``Dispatching`` once dispatched (else
  ``Pending``); with ``desiredState: Terminated`` anything not terminal is
  ``Terminated``, except work still saving itself (``stopping``: its phase is kept,
  ``Ready`` False, until it has ended); work on a node lost for longer than the
  node-lost timeout (``node_lost_since``) is ``Failed``, reason ``NodeLost``;
* :data:`UNCHANGED` — nothing new (a terminal phase is never looked at again; a
  dispatch the cache has not caught up with): the status is kept, ``Pending`` becoming
  ``Dispatching`` once work was started;
* a ``UserError`` — the phase is kept and ``Ready`` is False with the error's reason
  and message (what is wrong and what to do);
* a ``TransientError`` — the work cannot be looked at now: the phase is kept (the last
  one observed), ``Ready`` is Unknown and says it is retried; when it is the host that
  cannot be reached (:data:`HOST_FAULTS`) and the same outage (``Ready`` Unknown with
  such a reason since its ``lastTransitionTime``) has lasted ``unreachable_after``
  seconds, phase ``Stuck`` (a terminal phase is kept) with ``Ready`` False, reason
  ``HostUnreachable`` and what to check; the next observation restores the real phase;
* a ``Release`` that is not done — a deletion held back: phase kept, ``Ready`` False;
  a ``Release`` carrying an observation (the stopped work's result) is that
  observation, with ``Ready`` False and the release's reason while it is not done.

A stop the executor asked for reports whether it saved the work: the ``WorkSaved``
condition (True: pushed; False: not, and why; Unknown: not confirmed).

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
* ``lastActivity`` follows the executor's last sign of the agent's life, but moves only
  when it moved by :data:`ACTIVITY_STEP` or more, so a busy agent costs one status write
  a minute, not one per poll.
* ``spec.local.activeDeadlineSeconds`` (local mode): once ``now - startTime`` passes it,
  :func:`past_deadline` says so and the reconciler stops the work like Terminate; the
  Polecat is ``Failed`` with reason ``DeadlineExceeded`` (:func:`deadline_exceeded`).

Events (:class:`Note`): a phase transition is one (Warning for Failed and Stuck,
Normal otherwise); a new problem in ``Ready`` (False or Unknown with a reason it did
not have) is a Warning. A status that does not change records nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import ValidationError

from gastown.api.models import (
    ANNOTATION_FORCE_DELETE,
    TERMINAL_PHASES,
    Condition,
    DesiredState,
    Dispatcher,
    EffectiveSpec,
    ExecutionMode,
    KubernetesStatus,
    LocalSpec,
    LocalStatus,
    Phase,
    Polecat,
    PolecatStatus,
    ResultStatus,
)
from gastown.api.resolve import Resolution
from gastown.controller.coalesce import phase_steps
from gastown.executors.base import Observation, Release, TransientError, UserError, WorkSaved

READY = "Ready"
DISPATCHED = "Dispatched"
WORK_SAVED = "WorkSaved"

NODE_LOST_TIMEOUT = 300.0
"""Default seconds work on a lost node stays Stuck before it is Failed (``GASTOWN_NODE_LOST_TIMEOUT``)."""

ConditionStatus = Literal["True", "False", "Unknown"]
NoteType = Literal["Normal", "Warning"]

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

WARNING_PHASES = frozenset({Phase.FAILED, Phase.STUCK})
"""Phases whose transition Event is a Warning: the user should look."""

STOPPING = "Stopping"
"""Ready's reason while work stops on request (saving itself): Ready False, a Normal Event."""

RELEASE_BLOCKED = "ReleaseBlocked"
RELEASE_UNFINISHED = "Cleanup of the Polecat's work is not finished."

ACTIVITY_STEP = timedelta(seconds=60)
"""``status.lastActivity`` is rewritten only when the agent's activity moved this much."""

DEADLINE_EXCEEDED = "DeadlineExceeded"

HOST_UNREACHABLE = "HostUnreachable"
HOST_FAULTS = frozenset({"SSHUnreachable", "SSHConnectionLost"})
"""Reasons of a ``TransientError`` that mean the work's host cannot be reached at all
(no connection), as opposed to one command failing on a reachable host."""


def utcnow() -> datetime:
    """The current time as Kubernetes stores it: UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


# -- what a round learned ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unchanged:
    """Nothing new was learned this round (see :data:`UNCHANGED`)."""


UNCHANGED: Final = _Unchanged()
"""The round learned nothing new: a terminal phase (never observed again) or a
dispatch the cache has not caught up with. The status is kept as it is."""

Finding = Observation | _Unchanged | UserError | TransientError | Release
"""What a round learned about a Polecat's work; :func:`decide` turns it into status."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The parts of a Polecat the status is computed from.

    A Polecat whose spec does not parse has no :class:`Polecat` model, but still gets a
    status (saying so); :meth:`of_raw` builds the subject from the stored object.
    """

    status: PolecatStatus | None
    generation: int
    desired: DesiredState = DesiredState.WORKING
    mode: ExecutionMode | None = None
    """The mode the work runs in (the Polecat's effective spec); None when the spec does not parse."""

    @classmethod
    def of(cls, polecat: Polecat) -> Subject:
        """The subject of a parsed Polecat (its effective spec, once the reconciler resolved it)."""
        return cls(
            polecat.status, polecat.metadata.generation, polecat.spec.desiredState, polecat.spec.executionMode
        )

    @classmethod
    def of_raw(cls, raw: dict[str, Any]) -> Subject:
        """The subject of a stored object whose spec may not parse (its status may not either)."""
        generation = int((raw.get("metadata") or {}).get("generation") or 0)
        try:
            status = PolecatStatus.model_validate(raw["status"]) if raw.get("status") else None
        except ValidationError:
            status = None
        return cls(status, generation)

    @property
    def phase(self) -> Phase:
        """The phase the status holds now (Pending when there is none)."""
        return self.status.phase if self.status is not None else Phase.PENDING

    @property
    def started(self) -> bool:
        """Whether the status says work was started (``startTime`` is set)."""
        return self.status is not None and self.status.startTime is not None


# -- messages for problems the reconciler finds itself ------------------------------


def mode_disabled(polecat: Polecat, enabled: list[ExecutionMode]) -> UserError:
    """``spec.executionMode`` names a mode this operator does not run."""
    names = ", ".join(sorted(m.value for m in enabled)) or "none"
    return UserError(
        "ExecutionModeDisabled",
        f"spec.executionMode {polecat.spec.executionMode.value!r} is not enabled on this "
        f"operator; enabled modes: {names}. Use an enabled mode, or configure the "
        "operator for this one (local mode needs an SSH target).",
    )


def release_mode_disabled(polecat: Polecat) -> UserError:
    """A deletion that cannot clean up: the Polecat's mode is not enabled here."""
    return UserError(
        RELEASE_BLOCKED,
        f"Cannot clean up: executionMode {polecat.spec.executionMode.value!r} is not "
        "enabled on this operator. Enable it, or set the annotation "
        f"{ANNOTATION_FORCE_DELETE}=true to delete without cleanup.",
    )


BEAD_CLAIMED = "BeadClaimed"


def bead_claimed(polecat: Polecat, holder: str) -> UserError:
    """Another, older live Polecat holds this bead: this one waits, never dispatched."""
    scope = (
        "in this cluster (local mode shares one town)"
        if polecat.spec.executionMode.value == "local"
        else ("in this namespace")
    )
    return UserError(
        BEAD_CLAIMED,
        f"Bead {polecat.spec.beadID} of rig {polecat.spec.rig} is already claimed by Polecat {holder} "
        f"{scope}; this Polecat waits and starts when that one finishes or is deleted. "
        "To work now, use another bead.",
    )


RIG_NOT_FOUND = "RigNotFound"
RIG_AT_CAPACITY = "RigAtCapacity"


def rig_not_found(polecat: Polecat, needed: list[str]) -> UserError:
    """The spec is incomplete on its own and names a Rig that does not exist: wait for it."""
    fields = ", ".join(f"spec.{path}" for path in needed) or "spec.executionMode"
    return UserError(
        RIG_NOT_FOUND,
        f"Rig {polecat.spec.rig!r} was not found in namespace {polecat.metadata.namespace!r}, and this "
        f"Polecat needs it for {fields}; it waits in Pending and starts once the Rig exists. Create the "
        "Rig, or set those fields on the Polecat.",
    )


def rig_at_capacity(polecat: Polecat, limit: int, active: int) -> UserError:
    """The Rig's maxActivePolecats is reached: wait for a slot, in creation order."""
    return UserError(
        RIG_AT_CAPACITY,
        f"Rig {polecat.spec.rig!r} allows {limit} active Polecat{'s' if limit != 1 else ''} "
        f"(spec.maxActivePolecats) and {active} {'is' if active == 1 else 'are'} active; this Polecat "
        "waits in Pending and starts, in creation order, when a slot frees. To run more at once, "
        "raise the Rig's spec.maxActivePolecats.",
    )


def rig_incomplete(polecat: Polecat, needed: list[str]) -> UserError:
    """Resolved against its Rig, the spec still lacks what the work needs."""
    fields = " and ".join(f"spec.{path}" for path in needed) or "spec.kubernetes"
    return UserError(
        "MissingKubernetesSpec",
        f"{fields} is required with executionMode kubernetes: neither the Polecat nor Rig "
        f"{polecat.spec.rig!r} sets it. Set it on the Polecat or in the Rig's spec.kubernetes.",
    )


def rig_conflict(polecat: Polecat, resolution: Resolution) -> UserError | None:
    """The Rig's executionMode makes a mode section the Polecat sets forbidden."""
    if "executionMode" not in resolution.from_rig:
        return None
    mode = polecat.spec.executionMode.value
    section = "local" if polecat.spec.executionMode is ExecutionMode.KUBERNETES else "kubernetes"
    if getattr(polecat.spec, section) is None:
        return None
    return UserError(
        "ExecutionModeConflict",
        f"spec.{section} is forbidden when the execution mode is {mode}, which comes from Rig "
        f"{polecat.spec.rig!r} (spec.executionMode is not set on the Polecat): remove spec.{section} "
        f"or set spec.executionMode: {section}.",
    )


def host_unreachable_message(host: str, since: datetime, after: float, error: str) -> str:
    """Ready's message once the host has been unreachable past the timeout: what to do."""
    return (
        f"The local-mode host {host} has been unreachable since {since.strftime('%Y-%m-%dT%H:%M:%SZ')} "
        f"(longer than {after:g}s; {error.rstrip('. ')}). Check that sshd runs on it, that the network "
        "from the operator reaches it, and the operator's SSH settings (GASTOWN_SSH_HOST, _PORT, _USER, "
        "_KEY_FILE, _KNOWN_HOSTS_FILE). The phase returns to what the work is doing once the host "
        "answers. Deleting this Polecat waits for the host; with the annotation "
        f"{ANNOTATION_FORCE_DELETE}=true it completes without it (what runs there is left for you to "
        "clean up; the Event says what)."
    )


def released_without_host(polecat: Polecat, err: TransientError) -> str:
    """The Warning Event of a force-delete that could not reach the host: what may be left there
    and how to clean it up by hand (names come from the recorded status)."""
    recorded = (polecat.status.local if polecat.status is not None else None) or LocalStatus()
    spec = polecat.spec.local or LocalSpec()
    host = err.host or recorded.host or "the local-mode SSH host"
    left: list[str] = []
    if recorded.tmuxSession and recorded.tmuxSocket:
        socket, session = shlex.quote(recorded.tmuxSocket), shlex.quote(f"={recorded.tmuxSession}")
        left.append(f"tmux session {recorded.tmuxSession} (`tmux -L {socket} kill-session -t {session}`)")
    if spec.dispatcher is Dispatcher.GT:
        rig = polecat.spec.rig
        town = shlex.quote(spec.townRoot) if spec.townRoot else '"$GT_TOWN_ROOT"'
        if recorded.polecatName:
            left.append(
                f"gt polecat {rig}/{recorded.polecatName} and its worktree, which holds its work (push what "
                f"you need, then `cd {town} && gt polecat nuke {rig}/{recorded.polecatName} --force`)"
            )
        else:
            left.append(f"a gt polecat on bead {polecat.spec.beadID} (`cd {town} && gt polecat list {rig}`)")
    elif recorded.tmuxSession:
        work = spec.workDir or f"~/.gastown/sessions/{recorded.tmuxSession}/work"
        left.append(
            f"the state directory ~/.gastown/sessions/{recorded.tmuxSession} (the work is in {work}; "
            "remove the directory when you no longer need it)"
        )
    if not left:
        left.append("nothing was recorded as started (check `tmux ls` there if a start was under way)")
    return (
        f"Force-deleted without cleanup: {host} could not be reached ({err.message.rstrip('. ')}). "
        f"Possibly left on {host}: " + "; ".join(left) + "."
    )


def past_deadline(polecat: Polecat, now: datetime) -> bool:
    """Whether a local-mode Polecat has run longer than ``spec.local.activeDeadlineSeconds``."""
    local = polecat.spec.local
    limit = local.activeDeadlineSeconds if local is not None else None
    started = polecat.status.startTime if polecat.status is not None else None
    if polecat.spec.executionMode is not ExecutionMode.LOCAL or limit is None or started is None:
        return False
    return (now - started).total_seconds() > limit


def deadline_exceeded(polecat: Polecat, stopped: Observation) -> Observation:
    """The finding after the work was stopped for its deadline: Failed, with what was kept."""
    local = polecat.spec.local
    limit = local.activeDeadlineSeconds if local is not None else None
    kept = f" {stopped.message.rstrip('. ')}." if stopped.message else ""
    return replace(
        stopped,
        phase=Phase.FAILED,
        reason=DEADLINE_EXCEEDED,
        message=(
            f"The work ran longer than spec.local.activeDeadlineSeconds ({limit}s) and was stopped; its "
            f"worktree or work directory is kept.{kept}"
        ),
        requeue_after=None,
    )


def invalid_spec(exc: ValidationError) -> UserError:
    """The stored spec does not parse: the first few problems, each with its field."""
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    return UserError(
        "InvalidSpec",
        "The Polecat's spec is not valid: " + "; ".join(problems) + ". Fix the spec and apply it again.",
    )


# -- from a finding to an assessment ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a round concluded about a Polecat: the input of :func:`next_status`.

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
    last_activity: datetime | None = None
    work_saved: WorkSaved | None = None
    """The ``WorkSaved`` condition to set (a stop on request said whether it pushed)."""
    started_at: datetime | None = None
    """When the work was started, if that was before this round (a coalesced write:
    :mod:`gastown.controller.coalesce`); ``startTime`` and the ``Dispatched`` condition
    keep that time rather than the time of the write."""

    @property
    def effective_reason(self) -> str:
        """The reason given, or the phase's default one."""
        return self.reason or PHASE_REASONS[self.phase]

    @property
    def effective_message(self) -> str:
        """The message given, or the phase's default one."""
        return self.message or PHASE_MESSAGES[self.phase]


def assess(
    subject: Subject,
    finding: Finding,
    *,
    dispatched: bool = False,
    now: datetime | None = None,
    unreachable_after: float | None = None,
) -> Assessment:
    """What the status should say, given what the round learned (see the module doc).

    ``dispatched``: the reconciler started work for the Polecat this round, or knows
    it was started before; a ``startTime`` in the status or observed work count too.
    ``now`` and ``unreachable_after`` (seconds) turn a long host outage into ``Stuck``.
    """
    kept = subject.phase
    dispatched = dispatched or subject.started
    if isinstance(finding, Release) and finding.observation is not None:
        seen = assess(subject, finding.observation, dispatched=dispatched)
        if finding.done:
            return seen
        return replace(
            seen,
            reason=finding.reason or RELEASE_BLOCKED,
            message=finding.message or RELEASE_UNFINISHED,
            ready="False",
        )
    if isinstance(finding, Observation):
        observed = finding.phase
        dispatched = dispatched or observed is not None
        stopping = finding.stopping and observed is not None and observed not in TERMINAL_PHASES
        if subject.desired is DesiredState.TERMINATED:
            keep = observed is not None and (observed in TERMINAL_PHASES or stopping)
            phase = observed if observed is not None and keep else Phase.TERMINATED
        elif observed is not None:
            phase = observed
        else:
            phase = Phase.DISPATCHING if dispatched else Phase.PENDING
        # The executor's words describe this phase (a dispatch that has no phase yet
        # may still say what it started; a stop that saw nothing has nothing to say).
        own = observed is phase or (observed is None and subject.desired is not DesiredState.TERMINATED)
        return Assessment(
            phase=phase,
            reason=finding.reason if own else "",
            message=finding.message if own else "",
            dispatched=dispatched,
            # Stopping on request is not where the user asked the Polecat to be yet.
            ready="False" if stopping and subject.desired is DesiredState.TERMINATED else None,
            local=finding.local,
            kubernetes=finding.kubernetes,
            result=finding.result,
            last_activity=finding.last_activity,
            work_saved=finding.work_saved,
        )
    if isinstance(finding, _Unchanged):
        phase = Phase.DISPATCHING if kept is Phase.PENDING and dispatched else kept
        ready = get_condition(subject.status, READY)
        if ready is None or phase is not kept:
            return Assessment(phase=phase, dispatched=dispatched)
        # Ready as it is; stated only where it is not the phase's usual one, so that a
        # kept default does not read as a problem (see the Dispatched condition).
        usual = ready.status == ready_status(phase, subject.desired)
        return Assessment(
            phase=phase,
            reason=ready.reason,
            message=ready.message,
            ready=None if usual else ready.status,
            dispatched=dispatched,
        )
    if isinstance(finding, TransientError):
        stuck = _host_unreachable(subject, finding, dispatched, now=now, after=unreachable_after)
        if stuck is not None:
            return stuck
        # Written once per outage, not once per retry: nothing here changes between
        # attempts (no time, no count). The phase is the last one observed.
        return Assessment(
            phase=kept,
            reason=finding.reason,
            message=(
                f"{finding.message.rstrip('. ')}; retrying with backoff. The phase is the last one observed."
            ),
            ready="Unknown",
            dispatched=dispatched,
        )
    if isinstance(finding, UserError):
        reason, message = finding.reason, finding.message
    else:  # a Release that is not done
        reason, message = finding.reason or RELEASE_BLOCKED, finding.message or RELEASE_UNFINISHED
    return Assessment(phase=kept, reason=reason, message=message, ready="False", dispatched=dispatched)


def _host_unreachable(
    subject: Subject, err: TransientError, dispatched: bool, *, now: datetime | None, after: float | None
) -> Assessment | None:
    """Stuck/HostUnreachable once the host has been unreachable for ``after`` seconds, else None.

    The outage's start is the ``lastTransitionTime`` of ``Ready`` turning Unknown with a
    host fault (it does not move while Ready stays Unknown, whichever fault is seen). Once
    said, it is kept word for word, so a retry writes nothing.
    """
    if now is None or after is None or err.reason not in HOST_FAULTS:
        return None
    ready = get_condition(subject.status, READY)
    if ready is None:
        return None
    if ready.status == "False" and ready.reason == HOST_UNREACHABLE:
        return Assessment(
            phase=subject.phase,
            reason=ready.reason,
            message=ready.message,
            ready="False",
            dispatched=dispatched,
        )
    since = ready.lastTransitionTime
    if ready.status != "Unknown" or ready.reason not in HOST_FAULTS or since is None:
        return None
    if (now - since).total_seconds() < after:
        return None
    recorded = subject.status.local if subject.status is not None else None
    host = err.host or (recorded.host if recorded is not None else None) or "the local-mode SSH host"
    return Assessment(
        phase=subject.phase if subject.phase in TERMINAL_PHASES else Phase.STUCK,
        reason=HOST_UNREACHABLE,
        message=host_unreachable_message(host, since, after, err.message),
        ready="False",
        dispatched=dispatched or subject.started,
    )


# -- from an assessment to a status --------------------------------------------------


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


def next_status(
    subject: Subject | Polecat,
    assessment: Assessment,
    *,
    now: datetime,
    effective: EffectiveSpec | None = None,
) -> PolecatStatus:
    """The status the Polecat should have after this round.

    ``effective``: the spec the work was dispatched with (resolved against a Rig); it is
    recorded once the work is dispatched and kept from then on.
    """
    if isinstance(subject, Polecat):
        subject = Subject.of(subject)
    current = subject.status or PolecatStatus()
    generation = subject.generation
    phase = assessment.phase
    ready = assessment.ready or ready_status(phase, subject.desired)

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
        now=assessment.started_at or now,
    )

    if assessment.work_saved is not None:
        conditions = set_condition(
            conditions,
            type=WORK_SAVED,
            status=assessment.work_saved.status,
            reason=assessment.work_saved.reason,
            message=assessment.work_saved.message,
            generation=generation,
            now=now,
        )

    start_time = current.startTime or ((assessment.started_at or now) if dispatched else None)
    completion_time = current.completionTime or (now if phase in TERMINAL_PHASES else None)
    return PolecatStatus(
        phase=phase,
        observedGeneration=generation,
        conditions=conditions,
        startTime=start_time,
        completionTime=completion_time,
        lastActivity=_activity(current.lastActivity, assessment.last_activity),
        local=assessment.local or current.local,
        kubernetes=assessment.kubernetes or current.kubernetes,
        result=assessment.result or current.result,
        effective=current.effective or (effective if dispatched else None),
        executionMode=current.executionMode or (subject.mode if dispatched else None),
    )


def _activity(recorded: datetime | None, seen: datetime | None) -> datetime | None:
    """``lastActivity`` after this round: the new sign of life only once it moved by ACTIVITY_STEP."""
    if seen is None:
        return recorded
    seen = seen.astimezone(UTC).replace(microsecond=0)
    if recorded is None or abs(seen - recorded) >= ACTIVITY_STEP:
        return seen
    return recorded


# -- Events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """An Event to record about the Polecat once its new status is written.

    ``transition`` is set for a phase change (old phase, None for a first status; new
    phase), so the reconciler can count and log it.
    """

    type: NoteType
    reason: str
    message: str
    action: str = "Reconcile"
    transition: tuple[Phase | None, Phase] | None = None


def notes_for(old: PolecatStatus | None, assessment: Assessment) -> list[Note]:
    """The Events a status change from ``old`` to ``assessment`` is worth.

    A coalesced write (``started_at`` set: :mod:`gastown.controller.coalesce`) from
    before-work straight to a later phase also tells the Dispatching step it skipped.
    """
    old_phase = old.phase if old is not None else None
    steps = phase_steps(old_phase, assessment.phase, coalesced=assessment.started_at is not None)
    if steps:
        notes = []
        for new_phase in steps:
            step = assessment if new_phase is assessment.phase else Assessment(phase=new_phase)
            warning = new_phase in WARNING_PHASES
            notes.append(
                Note(
                    type="Warning" if warning else "Normal",
                    reason=step.reason if warning and step.reason else PHASE_REASONS[new_phase],
                    message=step.effective_message,
                    action="Dispatch" if new_phase is Phase.DISPATCHING else "Reconcile",
                    transition=(old_phase, new_phase),
                )
            )
            old_phase = new_phase
        if assessment.ready == "False" and assessment.reason and assessment.phase not in WARNING_PHASES:
            # A new phase that is not where the user wants it (a held deletion): say why too.
            kind: NoteType = "Normal" if assessment.reason == STOPPING else "Warning"
            notes.append(Note(kind, assessment.reason, assessment.effective_message))
        return notes
    if assessment.ready in ("False", "Unknown") and assessment.reason:
        previous = get_condition(old, READY)
        if previous is None or previous.reason != assessment.reason:
            problem: NoteType = "Normal" if assessment.reason == STOPPING else "Warning"
            return [Note(problem, assessment.reason, assessment.effective_message)]
    return []


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`: the new status, why, and the Events it is worth."""

    assessment: Assessment
    status: PolecatStatus
    notes: list[Note] = field(default_factory=list)

    @property
    def wire(self) -> dict[str, Any]:
        """The new status as it is stored."""
        return status_wire(self.status)


def decide(
    subject: Subject,
    finding: Finding,
    *,
    dispatched: bool = False,
    now: datetime,
    started_at: datetime | None = None,
    unreachable_after: float | None = None,
    node_lost_timeout: float = NODE_LOST_TIMEOUT,
    effective: EffectiveSpec | None = None,
) -> Decision:
    """The whole rule: what a round learned → the new status and its Events.

    ``started_at``: the work was started then, before this round, and the status does
    not say so yet (see :class:`Assessment`). ``unreachable_after``: seconds a host
    outage may last before the Polecat reads Stuck (None: never). ``node_lost_timeout``:
    seconds work on a lost node stays Stuck before it is Failed (:func:`node_lost_verdict`).
    ``effective``: the Rig-resolved spec to record with the first status that says dispatched."""
    finding = node_lost_verdict(finding, now=now, timeout=node_lost_timeout)
    assessment = assess(subject, finding, dispatched=dispatched, now=now, unreachable_after=unreachable_after)
    if started_at is not None:
        assessment = replace(assessment, started_at=started_at)
    return Decision(
        assessment=assessment,
        status=next_status(subject, assessment, now=now, effective=effective),
        notes=notes_for(subject.status, assessment),
    )


def node_lost_verdict(finding: Finding, *, now: datetime, timeout: float) -> Finding:
    """``finding`` with work on a node lost for longer than ``timeout`` made Failed/NodeLost.

    Before that the work is Stuck (the node may come back, and the agent with it); after
    it, the Polecat is given up on: terminal, never looked at again, and the message says
    what was lost and what to do. A held deletion (a :class:`Release` carrying the
    observation) keeps being held: the verdict changes only its observation.
    """
    if isinstance(finding, Release) and finding.observation is not None:
        seen = _node_lost_verdict(finding.observation, now=now, timeout=timeout)
        return finding if seen is finding.observation else replace(finding, observation=seen)
    if isinstance(finding, Observation):
        return _node_lost_verdict(finding, now=now, timeout=timeout)
    return finding


def _node_lost_verdict(finding: Observation, *, now: datetime, timeout: float) -> Observation:
    since = finding.node_lost_since
    if since is None:
        return finding
    if (now - since).total_seconds() < timeout:
        return finding
    node = (finding.kubernetes.nodeName if finding.kubernetes is not None else None) or "of the Pod"
    when = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return replace(
        finding,
        phase=Phase.FAILED,
        reason="NodeLost",
        message=(
            f"node {node} has not reported since {when} (longer than the node-lost timeout, "
            f"{timeout:g}s), so the work is given up on: whatever the agent did since its last push "
            f"is lost. Delete the Polecat (its Pod goes with it) and create it again to redo the "
            f"work; if the deletion is held, set the annotation {ANNOTATION_FORCE_DELETE}=true"
        ),
        stopping=False,
        node_lost_since=None,
    )


def node_lost_requeue(finding: Finding, *, now: datetime, timeout: float) -> float | None:
    """Seconds until work on a lost node reaches the node-lost timeout (look again then)."""
    if isinstance(finding, Release):
        finding = finding.observation if finding.observation is not None else finding
    if not isinstance(finding, Observation) or finding.node_lost_since is None:
        return None
    return max(0.0, timeout - (now - finding.node_lost_since).total_seconds()) + 1.0


# -- the wire -------------------------------------------------------------------------


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
