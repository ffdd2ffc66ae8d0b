"""The Convoy controller: creates a Convoy's Polecats, deletes them after their TTL,
and writes the Convoy's aggregate status.

It runs in the engine beside the Polecat reconciler, on its own work queue and workers
(a Convoy round reads every one of its Polecats and may create up to ``parallelism`` of
them; sharing the Polecat queue would put those rounds in front of single-Polecat
ones, and mix their backoffs and metrics). What to do is decided by
:func:`gastown.controller.convoy_status.plan` alone; this module gathers its inputs and
makes the requests:

* **Inputs from caches only.** The Convoy from the Convoy informer; its Polecats from an
  index this controller keeps from the Polecat informer's events (label
  ``gastown.gastown.io/convoy``), so a round never lists or decodes the whole cache.
  A Polecat event wakes its Convoy after :data:`WAKE_DELAY` (the timer is per key, so a
  burst of events is one round).
* **Never two Polecats for one bead.** Names are ``<convoy>-<n>``; a create that meets
  AlreadyExists is fine (the Polecat exists). Polecats created and not yet in the cache
  are remembered (expectations) and count against ``parallelism`` like any unfinished
  one, so a lagging watch never lets a round create more.
* **Status writes coalesced.** At most one per :data:`STATUS_INTERVAL` per Convoy, and
  only when the content changed (JSON merge patch on ``/status`` with the
  resourceVersion as precondition); creations and deletions are not delayed by it.
* **TTL after the record.** A finished Polecat is deleted only once the stored Convoy
  status records its phase (and result); the round that wrote it requeues for the
  earliest expiry. Deletion is normal deletion: the Polecat's finalizer saves its work.
* **Deleting the Convoy.** No finalizer of its own: the Polecats carry the work, and
  their finalizers save it whichever propagation the user picks. With background
  deletion (kubectl's default) the Convoy goes at once and the garbage collector deletes
  its Polecats; with foreground deletion it stays (deletionTimestamp set, Ready False
  ``Deleting``), starts nothing new and keeps its status current until they are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from gastown.api import convoy as convoy_api
from gastown.api.convoy import LABEL_CONVOY, Convoy
from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.api.paths import resource_path
from gastown.controller import convoy_status
from gastown.controller.convoy_status import COMPLETE, Member, member_of
from gastown.controller.events import EventRecorder, EventType
from gastown.controller.informer import Informer, WatchEvent, object_key
from gastown.controller.status import merge_patch, utcnow
from gastown.controller.workqueue import Outcome, WorkQueue
from gastown.executors.base import TransientError
from gastown.kube import KubeClient, error_message, is_transient

logger = logging.getLogger(__name__)

WAKE_DELAY = 0.2
"""Seconds from a Polecat event to its Convoy's round (events meanwhile share it)."""
STATUS_INTERVAL = 1.0
"""Least seconds between two status writes of one Convoy."""
CREATE_CONCURRENCY = 16
"""Polecat creates in flight at once for one Convoy round."""


@dataclass(frozen=True, slots=True)
class ConvoyOptions:
    """Timings of the Convoy controller (tests may shorten them)."""

    expectation: float = 60.0
    """Seconds a created Polecat may stay invisible in the cache before it is forgotten."""
    rejected_requeue: float = 60.0
    """Seconds before a Convoy whose Polecat create was refused tries again."""
    conflict_requeue: float = 0.5
    request_timeout: float = 15.0


class ConvoyController:
    """Reconciles one Convoy per call (see the module doc)."""

    def __init__(
        self,
        *,
        client: KubeClient,
        convoys: Informer,
        queue: WorkQueue,
        recorder: EventRecorder,
        options: ConvoyOptions | None = None,
    ) -> None:
        self._client = client
        self._convoys = convoys
        self._queue = queue
        self._recorder = recorder
        self._options = options or ConvoyOptions()
        # convoy key -> Polecat name -> what the Convoy needs of it
        self._members: dict[str, dict[str, Member]] = {}
        # convoy key -> Polecat name -> monotonic deadline of a create not yet seen
        self._created: dict[str, dict[str, float]] = {}
        self._last_write: dict[str, float] = {}
        self._rejected: dict[str, str] = {}
        # convoy key -> (resourceVersion, parsed Convoy, normalized stored status)
        self._parsed: dict[str, tuple[str, Convoy, dict[str, Any] | None]] = {}

    # -- events ---------------------------------------------------------------------

    def on_polecat(self, event: WatchEvent) -> None:
        """Keep the index of Convoy-owned Polecats; wake the owning Convoy."""
        meta = event.obj.get("metadata") or {}
        convoy = (meta.get("labels") or {}).get(LABEL_CONVOY)
        if not convoy:
            return
        key = f"{meta.get('namespace')}/{convoy}"
        name = str(meta.get("name"))
        members = self._members.setdefault(key, {})
        if event.type == "DELETED":
            members.pop(name, None)
            if not members:
                self._members.pop(key, None)
        else:
            member = member_of(event.obj)
            if member is not None:
                members[name] = member
                self._created.get(key, {}).pop(name, None)
        self._queue.add_after(key, WAKE_DELAY)

    def on_polecat_written(self, stored: dict[str, Any]) -> None:
        """A status the Polecat reconciler wrote (its watch echo reaches no handler)."""
        self.on_polecat(WatchEvent("MODIFIED", object_key(stored), stored))

    def on_convoy(self, event: WatchEvent) -> None:
        """A Convoy changed: look at it now."""
        if event.type == "DELETED":
            self._forget(event.key)
        self._queue.add(event.key)

    def _forget(self, key: str) -> None:
        self._created.pop(key, None)
        self._last_write.pop(key, None)
        self._rejected.pop(key, None)
        self._parsed.pop(key, None)

    # -- the round ------------------------------------------------------------------

    def _parse(self, key: str, raw: dict[str, Any]) -> tuple[Convoy, dict[str, Any] | None]:
        version = str((raw.get("metadata") or {}).get("resourceVersion", ""))
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        convoy = Convoy.from_dict(raw)
        stored = convoy_status.normalize(raw.get("status"))
        self._parsed[key] = (version, convoy, stored)
        return convoy, stored

    async def reconcile(self, key: str) -> Outcome:
        """Reconcile the Convoy ``key``; raise to be retried with backoff."""
        try:
            return await self._reconcile(key)
        except ApiException as exc:
            if is_transient(exc):  # the apiserver unreachable or overloaded: a fault, not a bug
                raise TransientError("APIUnavailable", error_message(exc)) from exc
            raise

    async def _reconcile(self, key: str) -> Outcome:
        raw = self._convoys.get(key)
        if raw is None:
            self._forget(key)
            return Outcome()
        try:
            convoy, stored = self._parse(key, raw)
        except ValidationError as exc:
            logger.warning("cannot read Convoy %s: %s", key, exc.errors()[:1], extra={"key": key})
            return Outcome()  # the webhook keeps such specs out; wait for an edit
        members = self._members.get(key, {})
        created = self._pending_creates(key)
        plan = convoy_status.plan(
            convoy, members, created=list(created), rejected=self._rejected.get(key), now=utcnow()
        )
        requeue: list[float] = []
        if plan.requeue_after is not None:
            requeue.append(plan.requeue_after)

        if plan.create:
            await self._create(key, convoy, plan.create)
            if key in self._rejected:
                requeue.append(self._options.rejected_requeue)
            # What was just created shows in the status of the next round (the watch wakes it).
            requeue.append(WAKE_DELAY)
        if plan.delete:
            await self._delete(convoy, [members[n] for n in plan.delete if n in members])

        if plan.status != stored:
            since = time.monotonic() - self._last_write.get(key, 0.0)
            if since < STATUS_INTERVAL:
                requeue.append(STATUS_INTERVAL - since)
            else:
                written = await self._write_status(key, raw, plan)
                if not written:
                    requeue.append(self._options.conflict_requeue)
                elif convoy.spec.ttlSecondsAfterFinished is not None:
                    # TTLs count from what the stored status records: look again at it.
                    requeue.append(WAKE_DELAY)
        return Outcome(requeue_after=min(requeue) if requeue else None)

    def _pending_creates(self, key: str) -> dict[str, float]:
        created = self._created.get(key)
        if not created:
            return {}
        now = time.monotonic()
        for name in [n for n, deadline in created.items() if deadline < now]:
            del created[name]
        return created

    async def _create(self, key: str, convoy: Convoy, beads: list[convoy_status.Bead]) -> None:
        path = resource_path(GROUP, VERSION, PLURAL, namespace=convoy.metadata.namespace)
        expected = self._created.setdefault(key, {})
        limit = asyncio.Semaphore(CREATE_CONCURRENCY)
        rejected: list[str] = []

        async def one(bead: convoy_status.Bead) -> None:
            body = convoy_status.polecat_for(convoy, bead)
            name = body["metadata"]["name"]
            # Counted before the request: a concurrent round must not fill the same slot.
            expected[name] = time.monotonic() + self._options.expectation
            async with limit:
                try:
                    await self._client.create(path, body, request_timeout=self._options.request_timeout)
                except ApiException as exc:
                    if exc.status == 409:
                        return  # AlreadyExists: the bead has its Polecat
                    expected.pop(name, None)
                    if exc.status in (400, 403, 422):
                        rejected.append(f"Polecat {name}: {error_message(exc)}")
                        return
                    raise
                except BaseException:
                    expected.pop(name, None)
                    raise

        results = await asyncio.gather(*(one(b) for b in beads), return_exceptions=True)
        if rejected:
            if self._rejected.get(key) is None:
                self._recorder.record(
                    self._convoys.get(key) or convoy.to_dict(),
                    "Warning",
                    convoy_status.POLECAT_REJECTED,
                    rejected[0],
                    action="Create",
                )
            self._rejected[key] = rejected[0]
        elif len(rejected) == 0 and not any(isinstance(r, BaseException) for r in results):
            self._rejected.pop(key, None)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _delete(self, convoy: Convoy, members: list[Member]) -> None:
        """TTL: delete finished Polecats (normal deletion; their finalizers save the work)."""

        async def one(member: Member) -> None:
            path = resource_path(
                GROUP, VERSION, PLURAL, namespace=convoy.metadata.namespace, name=member.name
            )
            body: dict[str, Any] = {"propagationPolicy": "Background"}
            if member.uid:
                body["preconditions"] = {"uid": member.uid}
            try:
                await self._client.delete(path, body=body, request_timeout=self._options.request_timeout)
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise

        await asyncio.gather(*(one(m) for m in members))

    async def _write_status(self, key: str, raw: dict[str, Any], plan: convoy_status.Plan) -> bool:
        meta = raw.get("metadata") or {}
        old = raw.get("status") or {}
        body = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "status": merge_patch(old, plan.status),
        }
        path = resource_path(
            GROUP,
            VERSION,
            convoy_api.PLURAL,
            namespace=meta.get("namespace"),
            name=meta.get("name"),
            subresource="status",
        )
        try:
            stored = await self._client.merge_patch(path, body, request_timeout=self._options.request_timeout)
        except ApiException as exc:
            if exc.status == 409:
                return False
            if exc.status == 404:
                return True
            raise
        self._last_write[key] = time.monotonic()
        self._convoys.write_through(stored)
        self._note_completion(stored, old, plan)
        return True

    def _note_completion(self, stored: dict[str, Any], old: dict[str, Any], plan: convoy_status.Plan) -> None:
        """One Event when the Convoy becomes Complete."""
        if not plan.complete:
            return
        was = next((c for c in old.get("conditions") or [] if c.get("type") == COMPLETE), None)
        if was is not None and was.get("status") == "True":
            return
        conditions: list[dict[str, Any]] = plan.status.get("conditions") or []
        now: dict[str, Any] = next((c for c in conditions if c.get("type") == COMPLETE), {})
        failed = (plan.status.get("counts") or {}).get("failed", 0)
        kind: EventType = "Warning" if failed else "Normal"
        self._recorder.record(stored, kind, str(now.get("reason", COMPLETE)), str(now.get("message", "")))
