"""The Polecat reconciler: one key in, the world nudged toward the spec, status written.

It is level-based, like a controller-runtime ``Reconciler``: it is given only a
``namespace/name`` and never learns which event woke it. Each round it

1. reads the Polecat from the informer cache (gone: nothing to do — Pods are
   garbage-collected through their owner reference, local work was released before
   the finalizer let the object go);
2. picks the executor for ``spec.executionMode`` from its mapping (one interface for
   both modes; the reconciler does not know which it has);
3. acts: on deletion, ``release`` and drop the finalizer; otherwise add the finalizer
   if the executor needs one, ``observe``, then ``dispatch`` (nothing runs, work is
   wanted), ``terminate`` (``desiredState: Terminated``; the record stays) or nothing;
4. computes the status (:mod:`gastown.controller.status`) and writes it through the
   status subresource as a JSON merge patch — only when it changed, with the
   resourceVersion it was computed from as a precondition so a stale cache can never
   overwrite a newer status (a 409 just means "look again");
5. records Events for phase transitions and for problems the user must fix.

Promises:

* **Terminal phases stay.** Done, Failed and Terminated are never re-dispatched.
* **Dispatched once.** Executors make ``dispatch`` idempotent; on top of that the
  reconciler remembers, for a short while, what it dispatched and has not yet seen in
  the cache (client-go's "expectations"), so a watch that lags behind a Pod creation
  does not cause a second dispatch call.
* **Errors are typed.** ``UserError`` goes into status and an Event and is looked at
  again slowly (the user may fix a Secret), with no backoff storm; ``TransientError``
  and anything unexpected raise, and the work queue retries them with backoff.
* **Outages are visible.** A ``TransientError`` from the executor (the SSH host
  unreachable, the apiserver overloaded under a Pod create) means the work cannot be
  looked at right now, not that it changed: the phase is kept, ``Ready`` becomes
  ``Unknown`` with the executor's reason and message (what is unreachable, that it is
  retried) and a Warning Event, written only when that changed; the error is still
  raised so the work queue backs off. The next round that reaches the work writes
  what it sees, which clears it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from gastown.api.models import (
    ANNOTATION_FORCE_DELETE,
    FINALIZER,
    GROUP,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    DesiredState,
    ExecutionMode,
    Phase,
    Polecat,
)
from gastown.api.paths import resource_path
from gastown.controller.events import EventRecorder, EventType
from gastown.controller.informer import Informer
from gastown.controller.metrics import ControllerMetrics
from gastown.controller.status import (
    PHASE_REASONS,
    READY,
    Assessment,
    get_condition,
    merge_patch,
    next_status,
    normalize_status,
    status_wire,
    utcnow,
)
from gastown.controller.workqueue import Outcome
from gastown.executors.base import Executor, ExecutorError, Observation, TransientError, UserError
from gastown.kube import KubeClient, error_message, is_transient
from gastown.logging_setup import current_polecat

logger = logging.getLogger(__name__)

_WARNING_PHASES = frozenset({Phase.FAILED, Phase.STUCK})


@dataclass(frozen=True, slots=True)
class ReconcilerOptions:
    """Timings of the reconciler."""

    user_error_requeue: float = 60.0
    """Seconds before a Polecat held back by a user error is looked at again."""
    release_requeue: float = 30.0
    """Seconds between cleanup attempts while a deletion is blocked."""
    dispatch_expectation: float = 30.0
    """Seconds a dispatch may stay invisible in the cache before it is attempted again."""
    conflict_requeue: float = 0.5
    """Look again this soon after a write conflict, should the watch not wake us first."""
    request_timeout: float = 15.0


class Reconciler:
    """Reconciles one Polecat per call (see the module doc)."""

    def __init__(
        self,
        *,
        client: KubeClient,
        polecats: Informer,
        executors: Mapping[ExecutionMode, Executor],
        recorder: EventRecorder,
        metrics: ControllerMetrics | None = None,
        options: ReconcilerOptions | None = None,
    ) -> None:
        self._client = client
        self._polecats = polecats
        self._executors = dict(executors)
        self._recorder = recorder
        self._metrics = metrics
        self._options = options or ReconcilerOptions()
        # key -> (uid, monotonic deadline) of dispatches not yet seen in the cache.
        self._expectations: dict[str, tuple[str, float]] = {}

    async def reconcile(self, key: str) -> Outcome:
        """Reconcile ``key``; raise to be retried with backoff."""
        started = time.perf_counter()
        result = "error"
        token = current_polecat.set(key)
        try:
            outcome, result = await self._reconcile(key)
            return outcome
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.reconcile_errors.inc()
            if not isinstance(exc, ExecutorError) and is_transient(exc):
                # The apiserver unreachable or overloaded: a fault, not a bug.
                raise TransientError("APIUnavailable", error_message(exc)) from exc
            raise
        finally:
            current_polecat.reset(token)
            if self._metrics is not None:
                self._metrics.reconcile_total.labels(result).inc()
                self._metrics.reconcile_duration.labels(result).observe(time.perf_counter() - started)

    # -- the round ------------------------------------------------------------------

    async def _reconcile(self, key: str) -> tuple[Outcome, str]:
        raw = self._polecats.get(key)
        if raw is None:
            self._expectations.pop(key, None)
            return Outcome(), "success"
        try:
            polecat = Polecat.from_dict(raw)
        except ValidationError as exc:
            await self._write(raw, None, _invalid_spec(raw, exc))
            return Outcome(), "user_error"

        executor = self._executors.get(polecat.spec.executionMode)
        if polecat.metadata.deletionTimestamp is not None:
            return await self._finalize(raw, polecat, executor)

        if executor is None:
            enabled = ", ".join(sorted(m.value for m in self._executors)) or "none"
            assessment = Assessment(
                phase=_keep_phase(polecat),
                reason="ExecutionModeDisabled",
                message=(
                    f"spec.executionMode {polecat.spec.executionMode.value!r} is not enabled on this "
                    f"operator; enabled modes: {enabled}. Use an enabled mode, or configure the "
                    "operator for this one (local mode needs an SSH target)."
                ),
                ready="False",
                dispatched=_status_dispatched(polecat),
            )
            await self._write(raw, polecat, assessment)
            return Outcome(), "user_error"

        if executor.needs_finalizer and FINALIZER not in polecat.metadata.finalizers:
            added = await self._add_finalizer(polecat)
            if added is None:
                return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
            raw, polecat = added

        requeue_after: float | None = None
        result = "success"
        try:
            assessment, requeue_after = await self._assess(key, polecat, executor)
        except UserError as err:
            assessment = Assessment(
                phase=_keep_phase(polecat),
                reason=err.reason,
                message=err.message,
                ready="False",
                dispatched=_status_dispatched(polecat),
            )
            requeue_after = self._options.user_error_requeue
            result = "user_error"
        except TransientError as err:
            await self._report_unreachable(raw, polecat, err)
            raise
        written = await self._write(raw, polecat, assessment)
        if not written:
            return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
        if requeue_after is not None and result == "success":
            result = "requeue"
        return Outcome(requeue_after=requeue_after), result

    async def _assess(
        self, key: str, polecat: Polecat, executor: Executor
    ) -> tuple[Assessment, float | None]:
        """Decide and act; return what the status should say and when to look again."""
        status = polecat.status
        current_phase = status.phase if status is not None else Phase.PENDING
        if current_phase in TERMINAL_PHASES:
            # Never re-dispatched. Keep the verdict; only generation/conditions refresh.
            self._expectations.pop(key, None)
            ready = get_condition(status, READY)
            return (
                Assessment(
                    phase=current_phase,
                    reason=ready.reason if ready else "",
                    message=ready.message if ready else "",
                    ready=ready.status if ready else None,
                    dispatched=_status_dispatched(polecat),
                ),
                None,
            )

        observation = await executor.observe(polecat)
        dispatched_before = _status_dispatched(polecat) or observation.phase is not None

        if observation.phase is not None:
            self._expectations.pop(key, None)

        if polecat.spec.desiredState is DesiredState.TERMINATED:
            if observation.phase in TERMINAL_PHASES:
                return _from_observation(observation, dispatched=dispatched_before), observation.requeue_after
            if observation.phase is not None or dispatched_before or key in self._expectations:
                observation = await executor.terminate(polecat)
                self._expectations.pop(key, None)
            phase = observation.phase if observation.phase in TERMINAL_PHASES else Phase.TERMINATED
            assert phase is not None
            return (
                Assessment(
                    phase=phase,
                    reason=observation.reason if observation.phase is phase else "",
                    message=observation.message if observation.phase is phase else "",
                    dispatched=dispatched_before,
                    local=observation.local,
                    kubernetes=observation.kubernetes,
                    result=observation.result,
                ),
                None,
            )

        if observation.phase is not None:
            if observation.phase is Phase.DONE and self._metrics is not None:
                self._observe_lifetime(polecat, self._metrics.time_to_done)
            return _from_observation(observation, dispatched=True), observation.requeue_after

        pending = self._expectations.get(key)
        if pending is not None and pending[0] == polecat.metadata.uid:
            remaining = pending[1] - time.monotonic()
            if remaining > 0:
                # Dispatched moments ago; the cache has not caught up. Keep the status.
                return (
                    Assessment(
                        phase=current_phase if current_phase is not Phase.PENDING else Phase.DISPATCHING,
                        dispatched=True,
                        reason=_ready_reason(polecat),
                        message=_ready_message(polecat),
                    ),
                    remaining,
                )
        observation = await executor.dispatch(polecat)
        self._expectations[key] = (
            polecat.metadata.uid,
            time.monotonic() + self._options.dispatch_expectation,
        )
        if self._metrics is not None and not _status_dispatched(polecat):
            self._observe_lifetime(polecat, self._metrics.dispatch_latency)
        if observation.phase is None:
            observation = replace(observation, phase=Phase.DISPATCHING)
        # The work's own watch events (a Pod) wake us next; pollers ask for a requeue.
        return _from_observation(observation, dispatched=True), observation.requeue_after

    # -- deletion -------------------------------------------------------------------

    async def _finalize(
        self, raw: dict[str, Any], polecat: Polecat, executor: Executor | None
    ) -> tuple[Outcome, str]:
        self._expectations.pop(polecat.key, None)
        if FINALIZER not in polecat.metadata.finalizers:
            return Outcome(), "success"
        force = polecat.metadata.annotations.get(ANNOTATION_FORCE_DELETE, "").lower() == "true"
        if executor is None:
            if not force:
                await self._write(
                    raw,
                    polecat,
                    Assessment(
                        phase=_keep_phase(polecat),
                        reason="ReleaseBlocked",
                        message=(
                            f"Cannot clean up: executionMode {polecat.spec.executionMode.value!r} is not "
                            "enabled on this operator. Enable it, or set the annotation "
                            f"{ANNOTATION_FORCE_DELETE}=true to delete without cleanup."
                        ),
                        ready="False",
                        dispatched=_status_dispatched(polecat),
                    ),
                )
                return Outcome(requeue_after=self._options.release_requeue), "user_error"
        else:
            try:
                release = await executor.release(polecat, force=force)
            except TransientError as err:
                await self._report_unreachable(raw, polecat, err)
                raise
            except UserError as err:
                await self._write(
                    raw,
                    polecat,
                    Assessment(
                        phase=_keep_phase(polecat),
                        reason=err.reason,
                        message=err.message,
                        ready="False",
                        dispatched=_status_dispatched(polecat),
                    ),
                )
                return Outcome(requeue_after=self._options.release_requeue), "user_error"
            if not release.done:
                await self._write(
                    raw,
                    polecat,
                    Assessment(
                        phase=_keep_phase(polecat),
                        reason=release.reason or "ReleaseBlocked",
                        message=release.message or "Cleanup of the Polecat's work is not finished.",
                        ready="False",
                        dispatched=_status_dispatched(polecat),
                    ),
                )
                return Outcome(requeue_after=self._options.release_requeue), "requeue"
        remaining = [f for f in polecat.metadata.finalizers if f != FINALIZER]
        patch = {"metadata": {"resourceVersion": polecat.metadata.resourceVersion, "finalizers": remaining}}
        try:
            await self._client.merge_patch(
                self._path(polecat), patch, request_timeout=self._options.request_timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return Outcome(), "success"
            if exc.status == 409:
                return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
            raise
        self._recorder.record(
            raw,
            "Normal",
            "Released",
            "Cleaned up the Polecat's work" + (" (forced)" if force else "") + "; removed the finalizer.",
            action="Release",
        )
        return Outcome(), "success"

    async def _add_finalizer(self, polecat: Polecat) -> tuple[dict[str, Any], Polecat] | None:
        """Add our finalizer (resourceVersion precondition); None on a conflict."""
        patch = {
            "metadata": {
                "resourceVersion": polecat.metadata.resourceVersion,
                "finalizers": [*polecat.metadata.finalizers, FINALIZER],
            }
        }
        try:
            stored = await self._client.merge_patch(
                self._path(polecat), patch, request_timeout=self._options.request_timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        self._polecats.write_through(stored)
        return stored, Polecat.from_dict(stored)

    # -- writing --------------------------------------------------------------------

    async def _report_unreachable(self, raw: dict[str, Any], polecat: Polecat, err: TransientError) -> None:
        """Put an executor's transient fault in status (Ready=Unknown), best effort.

        The caller re-raises ``err`` whatever happens here, so the work queue backs off on
        the executor's fault; a status write that fails too (the apiserver is what is
        unreachable) or conflicts is only logged: the retry writes it.
        """
        try:
            await self._write(raw, polecat, unreachable_assessment(polecat, err))
        except Exception as exc:
            logger.info(
                "could not report %s in status: %s",
                err.reason,
                exc,
                extra={"key": polecat.key, "reason": err.reason},
            )

    async def _write(self, raw: dict[str, Any], polecat: Polecat | None, assessment: Assessment) -> bool:
        """Write the status if it changed; record Events. False on a write conflict."""
        now = utcnow()
        if polecat is None:
            # The spec does not parse: write a minimal status straight from the raw object.
            return await self._write_raw_failure(raw, assessment, now)
        new = next_status(polecat, assessment, now=now)
        new_wire = status_wire(new)
        old_raw = raw.get("status") or {}
        if normalize_status(old_raw) == new_wire:
            return True
        patch = merge_patch(old_raw, new_wire)
        body = {"metadata": {"resourceVersion": polecat.metadata.resourceVersion}, "status": patch}
        try:
            stored = await self._client.merge_patch(
                self._path(polecat, "status"), body, request_timeout=self._options.request_timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            if exc.status == 404:
                return True  # deleted meanwhile; nothing to report on
            if is_transient(exc):
                raise TransientError("StatusWriteFailed", error_message(exc)) from exc
            raise
        self._polecats.write_through(stored)
        self._after_write(stored, polecat, assessment)
        return True

    async def _write_raw_failure(self, raw: dict[str, Any], assessment: Assessment, now: datetime) -> bool:
        meta = raw.get("metadata") or {}
        generation = int(meta.get("generation") or 0)
        old = raw.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != READY]
        previous = next((c for c in old.get("conditions") or [] if c.get("type") == READY), None)
        transition = (
            previous.get("lastTransitionTime")
            if previous and previous.get("status") == "False"
            else now.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        conditions.append(
            {
                "type": READY,
                "status": "False",
                "reason": assessment.effective_reason,
                "message": assessment.effective_message,
                "lastTransitionTime": transition,
                "observedGeneration": generation,
            }
        )
        new = {**old, "phase": old.get("phase") or Phase.PENDING.value, "observedGeneration": generation}
        new["conditions"] = conditions
        if new == old:
            return True
        path = resource_path(GROUP, VERSION, PLURAL, namespace=meta.get("namespace"), name=meta.get("name"))
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": merge_patch(old, new)}
        try:
            stored = await self._client.merge_patch(
                path + "/status", body, request_timeout=self._options.request_timeout
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return exc.status == 404
            raise
        self._polecats.write_through(stored)
        if not previous or previous.get("reason") != assessment.effective_reason:
            self._recorder.record(raw, "Warning", assessment.effective_reason, assessment.effective_message)
        return True

    def _after_write(self, stored: dict[str, Any], polecat: Polecat, assessment: Assessment) -> None:
        """Events and metrics for what changed."""
        old_status = polecat.status
        old_phase = old_status.phase if old_status is not None else None
        new_phase = assessment.phase
        if new_phase is not old_phase and not (old_phase is None and new_phase is Phase.PENDING):
            event_type: EventType = "Warning" if new_phase in _WARNING_PHASES else "Normal"
            self._recorder.record(
                stored,
                event_type,
                assessment.reason
                if new_phase in _WARNING_PHASES and assessment.reason
                else PHASE_REASONS[new_phase],
                assessment.effective_message,
                action="Dispatch" if new_phase is Phase.DISPATCHING else "Reconcile",
            )
            if self._metrics is not None:
                self._metrics.phase_transitions.labels(new_phase.value).inc()
            logger.info(
                "phase %s -> %s: %s",
                old_phase.value if old_phase else "None",
                new_phase.value,
                assessment.effective_message,
                extra={"key": polecat.key, "phase": new_phase.value, "reason": assessment.effective_reason},
            )
        elif assessment.ready in ("False", "Unknown") and assessment.reason:
            previous = get_condition(old_status, READY)
            if previous is None or previous.reason != assessment.reason:
                self._recorder.record(stored, "Warning", assessment.reason, assessment.effective_message)
                logger.info(
                    "%s: %s",
                    assessment.reason,
                    assessment.effective_message,
                    extra={"key": polecat.key, "reason": assessment.reason},
                )

    def _observe_lifetime(self, polecat: Polecat, histogram: Any) -> None:
        created = polecat.metadata.creationTimestamp
        if created is None:
            return
        seconds = (utcnow() - created).total_seconds()
        histogram.labels(polecat.spec.executionMode.value).observe(max(seconds, 0.0))

    @staticmethod
    def _path(polecat: Polecat, subresource: str | None = None) -> str:
        return resource_path(
            GROUP,
            VERSION,
            PLURAL,
            namespace=polecat.metadata.namespace,
            name=polecat.metadata.name,
            subresource=subresource,
        )


def _status_dispatched(polecat: Polecat) -> bool:
    return polecat.status is not None and polecat.status.startTime is not None


def _keep_phase(polecat: Polecat) -> Phase:
    return polecat.status.phase if polecat.status is not None else Phase.PENDING


def _ready_reason(polecat: Polecat) -> str:
    condition = get_condition(polecat.status, READY)
    return condition.reason if condition is not None else ""


def _ready_message(polecat: Polecat) -> str:
    condition = get_condition(polecat.status, READY)
    return condition.message if condition is not None else ""


def unreachable_assessment(polecat: Polecat, err: TransientError) -> Assessment:
    """What the status says while the executor cannot reach the work (see the module doc).

    The phase is the last one observed, so it is kept (a Working Polecat whose host is
    unreachable may well still be working); only Ready says that it is not known now.
    The message is the executor's (it names what is unreachable) plus that it is
    retried, with nothing added that changes between attempts (no time, no count), so
    a long outage is written once, not once per retry.
    """
    return Assessment(
        phase=_keep_phase(polecat),
        reason=err.reason,
        message=f"{err.message.rstrip('. ')}; retrying with backoff. The phase is the last one observed.",
        ready="Unknown",
        dispatched=_status_dispatched(polecat),
    )


def _from_observation(observation: Observation, *, dispatched: bool) -> Assessment:
    assert observation.phase is not None
    return Assessment(
        phase=observation.phase,
        reason=observation.reason,
        message=observation.message,
        dispatched=dispatched,
        local=observation.local,
        kubernetes=observation.kubernetes,
        result=observation.result,
    )


def _invalid_spec(raw: dict[str, Any], exc: ValidationError) -> Assessment:
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    message = "The Polecat's spec is not valid: " + "; ".join(problems) + ". Fix the spec and apply it again."
    return Assessment(phase=Phase.PENDING, reason="InvalidSpec", message=message, ready="False")
