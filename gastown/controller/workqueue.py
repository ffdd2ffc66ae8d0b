"""The work queue between informers and reconcilers: keys, not events.

Informers add ``namespace/name`` keys; workers take them and reconcile. The queue
holds what client-go's rate-limited work queue promises, in asyncio:

* **Dedup.** A key waiting in the queue is there once, however often it is added:
  a burst of watch events for one object costs one reconcile.
* **Never concurrent.** A key is handed to at most one worker at a time. A key added
  while it is being processed is marked dirty and queued again when the worker calls
  :meth:`WorkQueue.done`, so the change that arrived mid-reconcile is seen afterwards
  (exactly once more, however many adds came in).
* **Per-key backoff, overall rate limit.** :meth:`WorkQueue.add_rate_limited` re-adds a
  failing key after the larger of its own backoff (5 ms doubling up to 5 minutes) and the
  wait for a token of one bucket shared by every key (10 qps, burst 100): client-go's
  default controller rate limiter, so a mass failure retries at 10/s after the first 100
  rather than as fast as each key's backoff allows. :meth:`WorkQueue.forget` resets a
  key's backoff once it reconciles cleanly. Both come from :mod:`gastown.backoff`.
* **Urgent first.** :meth:`WorkQueue.add` with ``urgent=True`` puts the key in a lane that
  :meth:`WorkQueue.get` empties before the ordinary one (FIFO within each): the
  operator marks Polecats that have nothing running yet, so in a burst the rounds that
  create Pods are not queued behind the rounds that only write status. A key already
  waiting in the ordinary lane moves up when added urgently; urgency is never lost, and
  never granted to a key that was only re-queued after processing or by a timer.
* **Delayed adds.** :meth:`WorkQueue.add_after` (requeue-after) keeps one timer per key, the
  earliest asked for; an immediate add makes a pending timer moot but harmless.
* **Bounded memory.** Every structure holds at most one entry per key the informers
  know (queue, dirty set, processing set, one timer, one failure count); a key that
  reconciles cleanly leaves no trace but its timer, if it asked for one.
* **Shutdown.** :meth:`WorkQueue.shutdown` stops handing out work and drops what is
  waiting or delayed (a new leader relists everything anyway). :class:`WorkerPool`
  lets in-flight reconciles finish within a grace period and cancels stragglers.

The workers are one anyio task group (:meth:`WorkerPool.run`), owned by whoever runs it:
stopping is "shut the queue, wait up to the grace period for the group to finish, then
cancel its scope", with no list of tasks to cancel and gather by hand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from gastown.backoff import Backoff, TokenBucket

__all__ = [
    "ITEM_BACKOFF",
    "RETRY_BURST",
    "RETRY_QPS",
    "Backoff",
    "Outcome",
    "QueueShutDownError",
    "TokenBucket",
    "WorkQueue",
    "WorkerPool",
]

logger = logging.getLogger(__name__)


class QueueShutDownError(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down."""


class QueueObserver(Protocol):
    """Hooks for metrics; all optional in effect (see :class:`NullObserver`)."""

    def on_add(self) -> None: ...
    def on_depth(self, depth: int) -> None: ...
    def on_retry(self) -> None: ...
    def on_wait(self, seconds: float) -> None: ...


class NullObserver:
    """A queue observer that records nothing."""

    def on_add(self) -> None:
        """Nothing."""

    def on_depth(self, depth: int) -> None:
        """Nothing."""

    def on_retry(self) -> None:
        """Nothing."""

    def on_wait(self, seconds: float) -> None:
        """Nothing."""


ITEM_BACKOFF = Backoff(base=0.005, cap=300.0)
"""client-go's per-item default: 5 ms doubling per failure, capped at 5 minutes, no jitter."""
RETRY_QPS = 10.0
RETRY_BURST = 100
"""client-go's overall bucket for retries of all keys together."""


class WorkQueue:
    """A deduplicating, rate-limited, delayed queue of string keys (see the module doc)."""

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        limiter: TokenBucket | None = None,
        observer: QueueObserver | None = None,
    ) -> None:
        self._backoff = backoff or ITEM_BACKOFF
        self._limiter = limiter or TokenBucket(RETRY_QPS, RETRY_BURST)
        self._observer: QueueObserver = observer or NullObserver()
        self._queue: collections.deque[str] = collections.deque()
        self._urgent: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._added_at: dict[str, float] = {}
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[str, int] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------------

    def add(self, key: str, *, urgent: bool = False) -> None:
        """Queue ``key`` unless it is already waiting; if it is being processed, mark it dirty.

        ``urgent``: hand it out before every ordinary key (see the module doc).
        """
        if self._shutting_down:
            return
        if key in self._dirty:
            if urgent and key not in self._processing and key not in self._urgent:
                self._queue.remove(key)  # rare: an ordinary add came first; O(n) once
                self._urgent.append(key)
            return
        self._observer.on_add()
        self._dirty.add(key)
        if key in self._processing:
            return
        (self._urgent if urgent else self._queue).append(key)
        self._added_at[key] = time.monotonic()
        self._observer.on_depth(len(self))
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; one timer per key, the earliest wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= when:
                return
            existing[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire_timer, key))

    def add_rate_limited(self, key: str) -> float:
        """Add ``key`` after its backoff, or later if the shared bucket says so; returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        # Both are consulted every time (client-go's MaxOf): the bucket books a token even
        # when the key's own backoff is the longer wait.
        delay = max(self._backoff.delay(failures - 1), self._limiter.reserve())
        self._observer.on_retry()
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (it reconciled cleanly, or is gone)."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """How many times in a row ``key`` failed."""
        return self._failures.get(key, 0)

    def _fire_timer(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # -- taking ---------------------------------------------------------------------

    async def get(self) -> str:
        """Wait for a key and mark it processing. Raises :class:`QueueShutDownError` after shutdown."""
        while not self._queue and not self._urgent:
            if self._shutting_down:
                raise QueueShutDownError
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass a wake-up we may have consumed on to another getter.
                if waiter.done() and not waiter.cancelled() and len(self):
                    self._wake_one()
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        if self._shutting_down:
            raise QueueShutDownError
        key = self._urgent.popleft() if self._urgent else self._queue.popleft()
        self._observer.on_depth(len(self))
        added = self._added_at.pop(key, None)
        if added is not None:
            self._observer.on_wait(time.monotonic() - added)
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        """Mark ``key`` processed; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._added_at[key] = time.monotonic()
            self._observer.on_depth(len(self))
            self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- lifecycle ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop handing out work: drop waiting and delayed keys, wake every getter."""
        self._shutting_down = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._queue.clear()
        self._urgent.clear()
        self._dirty.clear()
        self._added_at.clear()
        self._observer.on_depth(0)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._shutting_down

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those processing or delayed)."""
        return len(self._queue) + len(self._urgent)

    @property
    def processing(self) -> frozenset[str]:
        """Keys being processed now."""
        return frozenset(self._processing)

    @property
    def delayed(self) -> int:
        """Keys waiting on a timer."""
        return len(self._timers)

    def is_idle(self) -> bool:
        """Nothing queued, processing or delayed."""
        return not self._queue and not self._urgent and not self._processing and not self._timers


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a handler wants after processing a key: nothing, or a look again later."""

    requeue_after: float | None = None


Handler = Callable[[str], Awaitable[Outcome]]


class WorkerPool:
    """N workers that take keys from a queue and run a handler on each.

    A handler that returns normally resets the key's backoff (and may ask for a
    requeue-after); one that raises gets the key re-added with backoff, logged with
    its traceback unless it is one of ``expected_errors`` (faults, not bugs).

    :meth:`run` runs the workers in one task group until the queue shuts down; the
    caller owns the task running it. :meth:`stop` shuts the queue (no new work), waits up
    to ``grace`` seconds for in-flight keys and then cancels the group's scope.
    """

    def __init__(
        self,
        queue: WorkQueue,
        handler: Handler,
        *,
        workers: int,
        name: str = "worker",
        expected_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._queue = queue
        self._handler = handler
        self.size = workers
        self._name = name
        self._expected = expected_errors
        self._scope: anyio.CancelScope | None = None
        self._finished = asyncio.Event()

    async def run(self) -> None:
        """Run the workers until the queue is shut down and in-flight keys are done (or cancelled)."""
        if self._scope is not None:
            raise RuntimeError("a WorkerPool runs once")
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                for index in range(self.size):
                    group.start_soon(self._work, name=f"{self._name}-{index}")
        finally:
            self._finished.set()

    async def _work(self) -> None:
        queue = self._queue
        while True:
            try:
                key = await queue.get()
            except QueueShutDownError:
                return
            try:
                outcome = await self._handler(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception as exc:
                delay = queue.add_rate_limited(key)
                extra = {"key": key, "retry_in": round(delay, 3), "failures": queue.failures(key)}
                if isinstance(exc, self._expected):
                    logger.warning("%s; retrying in %.3fs", exc, delay, extra=extra)
                else:
                    logger.exception("reconcile failed; retrying in %.3fs", delay, extra=extra)
            else:
                queue.forget(key)
                if outcome.requeue_after is not None:
                    queue.add_after(key, outcome.requeue_after)
            queue.done(key)

    async def stop(self, grace: float) -> None:
        """Stop taking work, let in-flight keys finish within ``grace`` seconds, cancel the rest."""
        self._queue.shutdown()
        scope = self._scope
        if scope is None:
            return  # never ran
        with anyio.move_on_after(grace):
            await self._finished.wait()
        if not self._finished.is_set():
            logger.warning(
                "cancelling %d reconciles still running after %.1fs grace", len(self._queue.processing), grace
            )
            scope.cancel()
            await self._finished.wait()
