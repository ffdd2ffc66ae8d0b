"""The Polecat reconciler: one key in, the world nudged toward the spec, status written.

It is level-based, like a controller-runtime ``Reconciler``: it is given only a
``namespace/name`` and never learns which event woke it. Each round it

1. reads the Polecat from the informer cache (gone: nothing to do — Pods are
   garbage-collected through their owner reference, local work was released before
   the finalizer let the object go);
2. picks the executor for ``spec.executionMode`` from its mapping (one interface for
   both modes; the reconciler does not know which it has);
3. acts: on deletion, ``release`` (writing the result it hands back, if any) and drop
   the finalizer; otherwise add the finalizer if the executor needs one (before
   anything, or — ``finalizer_with_dispatch`` — concurrently with the first dispatch,
   so it costs one request and no round; work first seen running without it gets it
   then), ``observe``, then ``dispatch`` (nothing runs, work is wanted), ``terminate``
   (``desiredState: Terminated``; the record stays) or nothing;
4. hands what it learned (an observation, "nothing new", a user error, a transient
   error, a blocked release) to :func:`gastown.controller.status.decide` — the one
   place that computes the status and the Events it is worth — and writes the status
   through the status subresource as a JSON merge patch, only when it changed, with the
   resourceVersion it was computed from as a precondition so a stale cache can never
   overwrite a newer status (a 409 just means "look again");
5. records the Events the decision lists.

Promises:

* **Terminal phases stay.** Done, Failed and Terminated are never re-dispatched.
* **Local run deadline.** Past ``spec.local.activeDeadlineSeconds`` (from ``startTime``)
  the work is stopped like Terminate (kept) and the Polecat is Failed/DeadlineExceeded.
* **Dispatched once.** Executors make ``dispatch`` idempotent; on top of that the
  reconciler remembers, for a short while, what it dispatched and has not yet seen in
  the cache (client-go's "expectations"), so a watch that lags behind a Pod creation
  does not cause a second dispatch call.
* **Errors are typed.** ``UserError`` goes into status and an Event and is looked at
  again slowly (the user may fix a Secret), with no backoff storm; ``TransientError``
  and anything unexpected raise, and the work queue retries them with backoff.
* **Outages are visible.** A ``TransientError`` from the executor (the SSH host
  unreachable, the apiserver overloaded under a Pod create) means the work cannot be
  looked at right now, not that it changed: it goes into status like any other
  finding (phase kept, ``Ready`` Unknown, a Warning Event; see the status module),
  written only when that changed, and is still raised so the work queue backs off.
  The next round that reaches the work writes what it sees, which clears it.

This module decides which executor calls to make; what the status then says is
decided in :mod:`gastown.controller.status` alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from gastown.api import resolve
from gastown.api.models import (
    ANNOTATION_FORCE_DELETE,
    GROUP,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    DesiredState,
    EffectiveSpec,
    ExecutionMode,
    Phase,
    Polecat,
    finalizer_for,
)
from gastown.api.paths import resource_path
from gastown.api.rig import Rig
from gastown.controller import status, ttl
from gastown.controller.capacity import RigCapacity
from gastown.controller.claims import BeadClaims
from gastown.controller.coalesce import wait_for_work_event
from gastown.controller.events import EventRecorder
from gastown.controller.informer import Informer
from gastown.controller.metrics import ControllerMetrics
from gastown.controller.status import UNCHANGED, Finding, Note, Subject, merge_patch, normalize_status, utcnow
from gastown.controller.workqueue import Outcome
from gastown.executors.base import Executor, ExecutorError, Observation, Release, TransientError, UserError
from gastown.kube import KubeClient, error_message, is_transient
from gastown.logging_setup import current_polecat

logger = logging.getLogger(__name__)


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
    status_wait: float = 1.0
    """Longest wait for a just-created Pod's watch event before Dispatching is written anyway
    (the write waits for it so that it can say Working at once: :mod:`..coalesce`)."""
    request_timeout: float = 15.0
    claim_requeue: float = 300.0
    """Backstop for a Polecat waiting on a claimed bead (the holder's events wake it first)."""
    host_unreachable_timeout: float = 600.0
    """Seconds a host outage may last before the Polecat reads Stuck/HostUnreachable; the
    manager sets it from ``Settings.host_unreachable_timeout`` (GASTOWN_HOST_UNREACHABLE_TIMEOUT)."""
    node_lost_timeout: float = status.NODE_LOST_TIMEOUT
    """Seconds work on a lost node stays Stuck before it is Failed (``GASTOWN_NODE_LOST_TIMEOUT``)."""


class _Wait:
    """A round that leaves the status write to the work's own watch event (coalesce)."""


WAIT = _Wait()


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
        claims: BeadClaims | None = None,
        rigs: Callable[[str, str], dict[str, Any] | None] | None = None,
        capacity: RigCapacity | None = None,
        on_write: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._client = client
        # Told about every status this reconciler writes (the watch's echo of it wakes no
        # handler: write-through): the Convoy controller's index of its Polecats.
        self._on_write = on_write
        self._claims = claims
        self._rigs = rigs
        self._capacity = capacity
        # key -> (uid, effective spec) resolved against a Rig and dispatched, not yet in status.
        self._unrecorded: dict[str, tuple[str, EffectiveSpec]] = {}
        self._polecats = polecats
        self._executors = dict(executors)
        self._recorder = recorder
        self._metrics = metrics
        self._options = options or ReconcilerOptions()
        # key -> (uid, monotonic deadline) of dispatches not yet seen in the cache.
        # key -> (uid, monotonic deadline, wall time) of dispatches not yet seen in the cache.
        self._expectations: dict[str, tuple[str, float, datetime]] = {}
        # key -> the Polecat as stored by a finalizer patch made alongside this round's dispatch.
        self._finalized: dict[str, dict[str, Any]] = {}

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
            self._unrecorded.pop(key, None)
            return Outcome(), "success"
        try:
            polecat = Polecat.from_dict(raw)
        except ValidationError as exc:
            await self._write(raw, Subject.of_raw(raw), status.invalid_spec(exc))
            return Outcome(), "user_error"

        # The effective spec (Rig defaults applied, or as recorded at dispatch) steers everything.
        polecat, effective, unresolved = self._resolve(key, polecat)
        executor = self._executors.get(polecat.spec.executionMode)
        if polecat.metadata.deletionTimestamp is not None:
            self._unrecorded.pop(key, None)
            return await self._finalize(raw, polecat, executor)
        expiry = ttl.remaining(polecat, utcnow())
        if expiry is not None and expiry <= 0:
            return await self._expire(raw, polecat)

        if unresolved is not None and polecat.spec.desiredState is not DesiredState.TERMINATED:
            # It waits for its Rig, or the Rig leaves the spec incomplete (a stop request
            # goes on: nothing ran, so it just becomes Terminated).
            await self._write(raw, Subject.of(polecat), unresolved)
            return Outcome(requeue_after=self._options.user_error_requeue), "user_error"

        if executor is None:
            await self._write(raw, Subject.of(polecat), status.mode_disabled(polecat, list(self._executors)))
            return Outcome(), "user_error"

        missing = executor.needs_finalizer and not _has_our_finalizer(polecat)
        if missing and not executor.finalizer_with_dispatch:
            added = await self._add_finalizer(polecat)
            if added is None:
                return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
            raw, polecat = added[0], resolve.with_spec(added[1], polecat.spec)
            missing = False

        subject = Subject.of(polecat)
        result = "success"
        try:
            finding, dispatched, requeue_after, started_at = await self._act(key, polecat, executor)
        except UserError as err:
            finding, dispatched, requeue_after = err, False, self._options.user_error_requeue
            started_at = None
            result = "user_error"
        except TransientError as err:
            raw = self._finalized.pop(key, raw)
            await self._report_unreachable(raw, subject, err)
            raise
        finally:
            fresh = self._finalized.pop(key, None)  # the finalizer patch made alongside a dispatch
        if dispatched and effective is not None and not _status_dispatched(polecat):
            # Recorded by the first status write that says dispatched (kept in memory until then).
            self._unrecorded[key] = (polecat.metadata.uid, effective)
        if fresh is not None:
            raw = fresh
        elif missing and _running(finding):
            # Running without the finalizer (created before kubernetes mode had one, or the
            # patch made alongside its dispatch failed): add it now.
            added = await self._add_finalizer(polecat)
            if added is None:
                return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
            raw = added[0]
        if isinstance(finding, _Wait):  # the status write waits for the work's watch event (coalesce)
            return Outcome(requeue_after=requeue_after), "success"
        lost = status.node_lost_requeue(finding, now=utcnow(), timeout=self._options.node_lost_timeout)
        if lost is not None:
            requeue_after = lost if requeue_after is None else min(requeue_after, lost)
        stored = await self._write_stored(raw, subject, finding, dispatched=dispatched, started_at=started_at)
        if stored is None:
            return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
        if polecat.spec.ttlSecondsAfterFinished is not None:  # woken again when its TTL runs out
            expiry = ttl.remaining(Polecat.from_dict(stored), utcnow())
            if expiry is not None:
                expiry = max(expiry, 0.0)
                requeue_after = expiry if requeue_after is None else min(requeue_after, expiry)
        if requeue_after is not None and result == "success":
            result = "requeue"
        return Outcome(requeue_after=requeue_after), result

    async def _act(
        self, key: str, polecat: Polecat, executor: Executor
    ) -> tuple[Finding | _Wait, bool, float | None, datetime | None]:
        """Make the executor calls this round needs; return what was learned.

        Returns the finding (:data:`WAIT`: write nothing yet), whether work was started for
        the Polecat (now, or seen running), when to look again, and when the work was
        started if that was before this round and the status does not say so yet.
        """
        if Subject.of(polecat).phase in TERMINAL_PHASES:
            # Never re-dispatched. Keep the verdict; only generation/conditions refresh.
            self._expectations.pop(key, None)
            return UNCHANGED, False, None, None

        observation = await executor.observe(polecat)
        expected = self._expectations.pop(key, None) if observation.phase is not None else None

        if polecat.spec.desiredState is DesiredState.TERMINATED:
            dispatched = observation.phase is not None
            if observation.phase in TERMINAL_PHASES:
                return observation, dispatched, observation.requeue_after, None
            if dispatched or _status_dispatched(polecat) or key in self._expectations:
                observation = await executor.terminate(polecat)
                self._expectations.pop(key, None)
            return observation, dispatched, None, None

        if observation.phase is not None:
            if observation.phase not in TERMINAL_PHASES and status.past_deadline(polecat, utcnow()):
                # Past spec.local.activeDeadlineSeconds: stopped like Terminate, the work kept.
                stopped = await executor.terminate(polecat)
                if stopped.phase in (Phase.DONE, Phase.FAILED):
                    return stopped, True, None, None  # it ended by itself meanwhile
                return status.deadline_exceeded(polecat, stopped), True, None, None
            if observation.phase is Phase.DONE and self._metrics is not None:
                self._observe_lifetime(polecat, self._metrics.time_to_done)
            started_at = None
            if not _status_dispatched(polecat):  # started earlier; the status did not say so yet
                mine = expected is not None and expected[0] == polecat.metadata.uid
                started_at = expected[2] if expected is not None and mine else utcnow()
            return observation, True, observation.requeue_after, started_at

        pending = self._expectations.get(key)
        if pending is not None and pending[0] == polecat.metadata.uid:
            remaining = pending[1] - time.monotonic()
            if remaining > 0:
                waited = self._options.dispatch_expectation - remaining
                if not _status_dispatched(polecat) and waited < self._options.status_wait:
                    # Woken inside the coalescing window by something else than the work
                    # (the finalizer patch made alongside the dispatch): keep waiting for it.
                    return WAIT, True, self._options.status_wait - waited, None
                # Dispatched moments ago; the cache has not caught up. Keep the status.
                return UNCHANGED, True, remaining, None
        waiting = self._bead_claimed(key, polecat) or self._at_capacity(key, polecat)
        if waiting is not None:
            return waiting, False, self._options.claim_requeue, None
        try:
            observation = await self._dispatch(key, polecat, executor)
        except Exception:
            if self._capacity is not None:
                self._capacity.release(key)  # the slot it was given goes to the next in line
            raise
        self._expectations[key] = (
            polecat.metadata.uid,
            time.monotonic() + self._options.dispatch_expectation,
            utcnow(),
        )
        if self._metrics is not None and not _status_dispatched(polecat):
            self._observe_lifetime(polecat, self._metrics.dispatch_latency)
        dispatching = (
            observation if observation.phase is not None else replace(observation, phase=Phase.DISPATCHING)
        )
        if wait_for_work_event(dispatching, status_dispatched=_status_dispatched(polecat)):
            return WAIT, True, self._options.status_wait, None
        # The work's own watch events (a Pod) wake us next; pollers ask for a requeue.
        return observation, True, observation.requeue_after, None

    def _bead_claimed(self, key: str, polecat: Polecat) -> UserError | None:
        """Held back: an older live Polecat holds the bead (nothing of ours runs yet)."""
        if self._claims is None or _status_dispatched(polecat) or key in self._expectations:
            return None
        raw = self._polecats.get(key)
        holder = self._claims.holder(raw, key) if raw is not None else None
        return status.bead_claimed(polecat, holder) if holder is not None else None

    def _at_capacity(self, key: str, polecat: Polecat) -> UserError | None:
        """Held back: its Rig's maxActivePolecats is reached (else its slot is reserved)."""
        if self._capacity is None or _status_dispatched(polecat) or key in self._expectations:
            return None
        raw = self._polecats.get(key)
        waiting = self._capacity.admit(key, raw) if raw is not None else None
        return status.rig_at_capacity(polecat, waiting.limit, waiting.active) if waiting else None

    def _resolve(self, key: str, polecat: Polecat) -> tuple[Polecat, EffectiveSpec | None, UserError | None]:
        """The Polecat with its effective spec; what to record at dispatch; why it cannot run yet.

        After dispatch the spec is the one recorded (``status.effective``, or in memory
        until that is written); before it, the spec resolved against the cached Rig.
        Without a Rig informer, or once dispatched without a Rig, the spec is used as it is.
        """
        recorded = polecat.status.effective if polecat.status is not None else None
        if recorded is not None:
            self._unrecorded.pop(key, None)
            return resolve.recorded(polecat), None, None
        pending = self._unrecorded.get(key)
        if pending is not None:
            if pending[0] == polecat.metadata.uid:
                spec = resolve.apply_recorded(polecat.spec, pending[1])
                return resolve.with_spec(polecat, spec), pending[1], None
            self._unrecorded.pop(key, None)
        if self._rigs is None or _status_dispatched(polecat):
            return polecat, None, None
        rig = _parse_rig(self._rigs(polecat.metadata.namespace, polecat.spec.rig))
        return _against(polecat, rig)

    async def _dispatch(self, key: str, polecat: Polecat, executor: Executor) -> Observation:
        """``executor.dispatch``, with the finalizer patch alongside it when it is due then.

        Concurrent, so the Pod create waits for no extra round trip (the finalizer costs
        one request per Polecat). A failed finalizer patch is only logged: the next round
        that sees the work running adds it. The stored Polecat is kept for the status write.
        """
        due = (
            executor.needs_finalizer and executor.finalizer_with_dispatch and not _has_our_finalizer(polecat)
        )
        if not due:
            return await executor.dispatch(polecat)
        dispatched, added = await asyncio.gather(
            executor.dispatch(polecat), self._add_finalizer(polecat), return_exceptions=True
        )
        if isinstance(added, BaseException):
            if not isinstance(added, Exception):
                raise added
            logger.info("could not add the finalizer: %s", added, extra={"key": key})
        elif added is not None:
            self._finalized[key] = added[0]
        if isinstance(dispatched, BaseException):
            raise dispatched
        observation: Observation = dispatched
        return observation

    # -- deletion -------------------------------------------------------------------

    async def _expire(self, raw: dict[str, Any], polecat: Polecat) -> tuple[Outcome, str]:
        """``ttlSecondsAfterFinished`` ran out: delete the Polecat (its finalizer runs as usual)."""
        body = {"propagationPolicy": "Background", "preconditions": {"uid": polecat.metadata.uid}}
        try:
            await self._client.delete(
                self._path(polecat), body=body, request_timeout=self._options.request_timeout
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return Outcome(), "success"  # gone already, or another object by that name now
            raise
        self._recorder.record(raw, "Normal", "TTLExpired", ttl.expired_message(polecat), action="Delete")
        return Outcome(), "success"

    async def _finalize(
        self, raw: dict[str, Any], polecat: Polecat, executor: Executor | None
    ) -> tuple[Outcome, str]:
        self._expectations.pop(polecat.key, None)
        # Either of ours: a Polecat whose mode comes from its Rig may have got the other
        # mode's finalizer while it waited (the Rig's mode changed before it was dispatched).
        ours = {finalizer_for(mode) for mode in ExecutionMode}
        if not ours.intersection(polecat.metadata.finalizers):
            return Outcome(), "success"
        force = polecat.metadata.annotations.get(ANNOTATION_FORCE_DELETE, "").lower() == "true"
        subject = Subject.of(polecat)
        release: Release | None = None  # None: nothing was cleaned up (mode disabled, forced)
        left_behind: str | None = None  # forced while the host was unreachable: what may be left there
        if executor is None:
            if not force:
                await self._write(raw, subject, status.release_mode_disabled(polecat))
                return Outcome(requeue_after=self._options.release_requeue), "user_error"
        else:
            try:
                release = await executor.release(polecat, force=force)
            except TransientError as err:
                if not (force and err.reason in status.HOST_FAULTS):
                    await self._report_unreachable(raw, subject, err)
                    raise
                # Forced, and the host is gone: let the object go, and say what may be left there.
                left_behind = status.released_without_host(polecat, err)
            except UserError as err:
                await self._write(raw, subject, err)
                return Outcome(requeue_after=self._options.release_requeue), "user_error"
            if release is not None and not release.done:
                await self._write(raw, subject, release)
                requeue = self._options.release_requeue
                lost = status.node_lost_requeue(
                    release, now=utcnow(), timeout=self._options.node_lost_timeout
                )
                return Outcome(requeue_after=requeue if lost is None else min(requeue, lost)), "requeue"
            if release is not None and release.observation is not None:
                # The record first: the stopped work's result outlives the Polecat's watchers.
                stored = await self._write_stored(raw, subject, release)
                if stored is None:
                    return Outcome(requeue_after=self._options.conflict_requeue), "conflict"
                raw = stored
        remaining = [f for f in polecat.metadata.finalizers if f not in ours]
        version = (raw.get("metadata") or {}).get("resourceVersion") or polecat.metadata.resourceVersion
        patch = {"metadata": {"resourceVersion": version, "finalizers": remaining}}
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
        if left_behind is not None:
            self._recorder.record(raw, "Warning", "ReleasedWithoutHost", left_behind, action="Release")
            return Outcome(), "success"
        # What the cleanup did (e.g. where kept work is) is the user's record of it.
        detail = f" {release.message.rstrip('. ')}." if release is not None and release.message else ""
        forced = " (forced)" if force else ""
        message = f"Cleaned up the Polecat's work{forced}; removed the finalizer.{detail}"
        self._recorder.record(raw, "Normal", "Released", message, action="Release")
        return Outcome(), "success"

    async def _add_finalizer(self, polecat: Polecat) -> tuple[dict[str, Any], Polecat] | None:
        """Add our finalizer (resourceVersion precondition); None on a conflict."""
        patch = {
            "metadata": {
                "resourceVersion": polecat.metadata.resourceVersion,
                "finalizers": [*polecat.metadata.finalizers, _finalizer(polecat)],
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

    async def _report_unreachable(self, raw: dict[str, Any], subject: Subject, err: TransientError) -> None:
        """Put an executor's transient fault in status (Ready=Unknown), best effort.

        The caller re-raises ``err`` whatever happens here, so the work queue backs off on
        the executor's fault; a status write that fails too (the apiserver is what is
        unreachable) or conflicts is only logged: the retry writes it.
        """
        try:
            await self._write(raw, subject, err)
        except Exception as exc:
            logger.info(
                "could not report %s in status: %s",
                err.reason,
                exc,
                extra={"key": _key(raw), "reason": err.reason},
            )

    async def _write(
        self,
        raw: dict[str, Any],
        subject: Subject,
        finding: Finding,
        *,
        dispatched: bool = False,
        started_at: datetime | None = None,
    ) -> bool:
        """Write the status decided from ``finding`` if it changed; record its Events.

        False on a write conflict (the caller looks again soon).
        """
        stored = await self._write_stored(raw, subject, finding, dispatched=dispatched, started_at=started_at)
        return stored is not None

    async def _write_stored(
        self,
        raw: dict[str, Any],
        subject: Subject,
        finding: Finding,
        *,
        dispatched: bool = False,
        started_at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """:meth:`_write`, returning the Polecat as stored (``raw`` if nothing changed; None: conflict)."""
        pending = self._unrecorded.get(_key(raw))
        uid = (raw.get("metadata") or {}).get("uid")
        decision = status.decide(
            subject,
            finding,
            dispatched=dispatched,
            now=utcnow(),
            started_at=started_at,
            unreachable_after=self._options.host_unreachable_timeout,
            node_lost_timeout=self._options.node_lost_timeout,
            effective=pending[1] if pending is not None and pending[0] == uid else None,
        )
        new_wire = decision.wire
        old_raw = raw.get("status") or {}
        if normalize_status(old_raw) == new_wire:
            return raw
        meta = raw.get("metadata") or {}
        body = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "status": merge_patch(old_raw, new_wire),
        }
        path = resource_path(
            GROUP,
            VERSION,
            PLURAL,
            namespace=meta.get("namespace"),
            name=meta.get("name"),
            subresource="status",
        )
        try:
            stored = await self._client.merge_patch(path, body, request_timeout=self._options.request_timeout)
        except ApiException as exc:
            if exc.status == 409:
                return None
            if exc.status == 404:
                return raw  # deleted meanwhile; nothing to report on
            if is_transient(exc):
                raise TransientError("StatusWriteFailed", error_message(exc)) from exc
            raise
        self._polecats.write_through(stored)
        if self._claims is not None:
            self._claims.on_write(stored)  # a Polecat that just finished wakes its bead's waiters
        if self._capacity is not None:
            self._capacity.on_write(stored)  # one that finished frees its Rig slot for the next
        if (stored.get("status") or {}).get("effective") is not None:
            self._unrecorded.pop(_key(stored), None)
        if self._on_write is not None:
            self._on_write(stored)
        for note in decision.notes:
            self._record(stored, note)
        return stored

    def _record(self, stored: dict[str, Any], note: Note) -> None:
        """Record one Event of a decision; count and log phase transitions."""
        self._recorder.record(stored, note.type, note.reason, note.message, action=note.action)
        key = _key(stored)
        if note.transition is None:
            logger.info("%s: %s", note.reason, note.message, extra={"key": key, "reason": note.reason})
            return
        old_phase, new_phase = note.transition
        if self._metrics is not None:
            self._metrics.phase_transitions.labels(new_phase.value).inc()
        logger.info(
            "phase %s -> %s: %s",
            old_phase.value if old_phase else "None",
            new_phase.value,
            note.message,
            extra={"key": key, "phase": new_phase.value, "reason": note.reason},
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


def _finalizer(polecat: Polecat) -> str:
    return finalizer_for(polecat.spec.executionMode)


_OUR_FINALIZERS = frozenset(finalizer_for(mode) for mode in ExecutionMode)


def _has_our_finalizer(polecat: Polecat) -> bool:
    """Either mode's finalizer will do: release is the same step (the executor of the mode the
    work runs in), and a Polecat whose mode its Rig decides gets, from the chart's finalizer
    policy, the one for the mode it states (local when it states none)."""
    return not _OUR_FINALIZERS.isdisjoint(polecat.metadata.finalizers)


def _running(finding: Finding | _Wait) -> bool:
    """Whether ``finding`` shows work that exists and has not ended."""
    return (
        isinstance(finding, Observation)
        and finding.phase is not None
        and finding.phase not in TERMINAL_PHASES
    )


def _against(polecat: Polecat, rig: Rig | None) -> tuple[Polecat, EffectiveSpec | None, UserError | None]:
    """Resolve a not yet dispatched Polecat against its Rig (None: the Rig does not exist)."""
    if rig is None:
        if resolve.needs_rig(polecat.spec):
            return polecat, None, status.rig_not_found(polecat, resolve.missing(polecat.spec))
        return polecat, None, None  # complete on its own: exactly as without Rigs
    resolution = resolve.resolve(polecat.spec, rig)
    effective = resolve.with_spec(polecat, resolution.spec)
    problem = status.rig_conflict(effective, resolution) or (
        status.rig_incomplete(effective, gaps) if (gaps := resolve.missing(resolution.spec)) else None
    )
    return effective, resolution.effective, problem


def _parse_rig(raw: dict[str, Any] | None) -> Rig | None:
    """The cached Rig as a model; one that does not parse counts as absent (logged)."""
    if raw is None:
        return None
    try:
        return Rig.from_dict(raw)
    except ValidationError as exc:
        logger.warning("Rig %s does not parse; ignored: %s", _key(raw), exc)
        return None


def _status_dispatched(polecat: Polecat) -> bool:
    return polecat.status is not None and polecat.status.startTime is not None


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
