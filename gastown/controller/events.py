"""Kubernetes Events (``events.k8s.io/v1``) about Polecats, sent without blocking reconciles.

Users read what happened with ``kubectl describe polecat`` or ``kubectl get events``
and grep for the reasons below. A reconcile only *records* an Event (a non-blocking
put on a bounded queue); a few sender tasks write them. When the apiserver is slow
or the queue is full, Events are dropped and counted rather than slowing the work:
Events are best-effort in Kubernetes too, while status is the record. In a burst,
like Events (same namespace, type, reason) beyond the first few are folded into one
series Event with a count (:mod:`gastown.controller.eventseries`, as client-go's
EventCorrelator does), so a burst of N Polecats does not cost N Event writes per reason.

Reasons (type):
  Dispatching, Working, Completed, Terminated (Normal) — phase transitions;
  Failed, Stuck (Warning) — phase transitions that need attention;
  InvalidSpec, ExecutionModeDisabled, and the executors' own UserError reasons
  (Warning) — something the user must fix;
  ReleaseBlocked-style reasons from an executor's cleanup (Warning), Released (Normal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.paths import resource_path
from gastown.controller.eventseries import EventSeries, SeriesWrite
from gastown.kube import KubeClient, error_message

logger = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

REPORTING_CONTROLLER = "gastown.gastown.io/operator"
_NOTE_LIMIT = 1024


class EventObserver(Protocol):
    """Metric hooks of the recorder."""

    def on_event_sent(self, type: str, reason: str) -> None: ...
    def on_event_dropped(self) -> None: ...


class _NullObserver:
    def on_event_sent(self, type: str, reason: str) -> None:
        """Nothing."""

    def on_event_dropped(self) -> None:
        """Nothing."""


def micro_time(moment: datetime) -> str:
    """A MicroTime as the apiserver wants it: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def object_reference(obj: dict[str, Any]) -> dict[str, str]:
    """An ObjectReference to a cached object."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": str(obj.get("apiVersion", "")),
        "kind": str(obj.get("kind", "")),
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
        "resourceVersion": str(meta.get("resourceVersion", "")),
    }
    return {k: v for k, v in ref.items() if v}


def build_event(
    regarding: dict[str, Any],
    *,
    type: EventType,
    reason: str,
    note: str,
    action: str,
    instance: str,
    now: datetime,
) -> dict[str, Any]:
    """The Event object (pure; names are unique by the nanosecond clock)."""
    ref = object_reference(regarding)
    name = f"{ref.get('name', 'object')}.{time.time_ns():x}"
    if len(note) > _NOTE_LIMIT:
        note = note[: _NOTE_LIMIT - 3] + "..."
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ref.get("namespace", "default")},
        "eventTime": micro_time(now),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance[:128],
        "action": action[:128],
        "reason": reason[:128],
        "note": note,
        "type": type,
        "regarding": ref,
    }


class EventRecorder:
    """Queue Events and send them from a few background tasks (see the module doc).

    Call :meth:`run` in a task owned by the caller; :meth:`close` sends what is queued
    within a grace period and stops.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        instance: str,
        max_pending: int = 2048,
        senders: int = 2,
        observer: EventObserver | None = None,
        series: EventSeries | None = None,
        flush_interval: float = 0.5,
    ) -> None:
        self._client = client
        self._instance = instance
        self._queue: asyncio.Queue[dict[str, Any] | SeriesWrite] = asyncio.Queue(maxsize=max_pending)
        self._senders = senders
        self._observer: EventObserver = observer or _NullObserver()
        self._closed = False
        self._series = series if series is not None else EventSeries()
        self._flush_interval = flush_interval

    def record(
        self,
        regarding: dict[str, Any],
        type: EventType,
        reason: str,
        note: str,
        *,
        action: str = "Reconcile",
    ) -> None:
        """Queue an Event about ``regarding``; never blocks, drops (and counts) when full."""
        if self._closed:
            return
        event = build_event(
            regarding,
            type=type,
            reason=reason,
            note=note,
            action=action,
            instance=self._instance,
            now=datetime.now(UTC),
        )
        if self._series.offer(event, now=time.monotonic()) is not None:
            self._enqueue(event)

    def _enqueue(self, item: dict[str, Any] | SeriesWrite) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._observer.on_event_dropped()

    def _flush_series(self, *, flush_all: bool = False) -> None:
        for write in self._series.due(now=time.monotonic(), flush_all=flush_all):
            self._enqueue(write)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            self._flush_series()

    async def run(self) -> None:
        """Send queued Events, and series writes when due, until cancelled (one task group)."""
        async with anyio.create_task_group() as group:
            for index in range(self._senders):
                group.start_soon(self._send_loop, name=f"events-{index}")
            group.start_soon(self._flush_loop, name="events-series")

    async def _send_loop(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._send(event)
            finally:
                self._queue.task_done()

    async def _send(self, item: dict[str, Any] | SeriesWrite) -> None:
        event = item.event if isinstance(item, SeriesWrite) else item
        namespace = event["metadata"]["namespace"]
        path = resource_path("events.k8s.io", "v1", "events", namespace=namespace)
        try:
            if isinstance(item, SeriesWrite) and item.patch:
                await self._patch_series(path, item)
            else:
                await self._client.create(path, event, request_timeout=10.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._observer.on_event_dropped()
            logger.debug(
                "event not recorded: %s",
                error_message(exc),
                extra={"reason": event["reason"], "namespace": namespace},
            )
        else:
            self._observer.on_event_sent(event["type"], event["reason"])

    async def _patch_series(self, path: str, write: SeriesWrite) -> None:
        """Bring a series Event up to date; create it if its first write was lost."""
        try:
            await self._client.merge_patch(f"{path}/{write.name}", write.patch_body(), request_timeout=10.0)
        except ApiException as exc:
            if exc.status != 404:
                raise
            await self._client.create(path, write.event, request_timeout=10.0)

    @property
    def pending(self) -> int:
        """Events queued and not yet sent."""
        return self._queue.qsize()

    async def close(self, grace: float) -> None:
        """Stop accepting Events and wait up to ``grace`` seconds for the queue to drain."""
        self._closed = True
        self._flush_series(flush_all=True)
        try:
            await asyncio.wait_for(self._queue.join(), grace)
        except TimeoutError:
            logger.info("dropping %d unsent events at shutdown", self._queue.qsize())
