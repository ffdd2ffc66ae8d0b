"""Supervision of long-lived tasks: none may end without its owner noticing.

The operator is a tree of anyio task groups: the manager's root group holds the Event
senders, the leader elector, the webhook's certificate tasks and, while this replica
leads, the engine; the engine's group holds the two informers and the worker pool; each
informer's group holds one list+watch per namespace, the pool's group its workers.
Every group belongs to the task that opened it, so cancelling a group's scope stops
everything under it and waits for it: there is no list of tasks to cancel and gather by
hand anywhere.

**anyio, not asyncio.TaskGroup.** The operator runs on asyncio and anyio adds three things
the standard library does not have on Python 3.11: cancel scopes that can be cancelled
from another task (the manager's ``stop()`` is called by a signal handler's waiter or by
a test, not by the task holding the group), ``move_on_after`` for "wait at most the grace
period, then cancel", and :func:`anyio.current_effective_deadline` to tell a cancellation
the owner asked for from one it did not.

**Policy for a task that dies: a clean restart of the process**, as controller-runtime's
manager stops every runnable on the first error. A long-lived task (an informer, the Event
senders, the elector, the webhook's certificate tasks, the worker pool) is expected to
run until its owner stops it; if it returns, raises, or is cancelled by anyone but its
owner, :class:`Supervisor` logs it at CRITICAL with the cause, counts it
(``gastown_task_deaths_total{task}``) and calls the owner's ``on_death``. The manager
then fails readiness at once (``/readyz`` says which task died), shuts down gracefully
(in-flight reconciles finish, the Lease is released so a standby takes over) and
``Manager.run`` raises :class:`TaskDiedError`, so ``gastown-operator run`` exits non-zero and the
Deployment restarts the Pod. Restarting the task in place was the alternative; it was not
chosen because a task that died once mid-way (an informer whose cache may now be stale,
an elector that may have lost track of the Lease) is only safely restarted with
everything that depends on it, which is what a process restart does, in ~0.5 s.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc

logger = logging.getLogger(__name__)

TaskFunction = Callable[[], Awaitable[None]]


class TaskDiedError(RuntimeError):
    """A long-lived task ended without its owner asking; the process should restart."""

    def __init__(self, task: str, how: str, cause: BaseException | None = None) -> None:
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"task {task!r} {how} unexpectedly{detail}")
        self.task = task
        self.how = how
        self.cause = cause


class DeathObserver(Protocol):
    """Metric hook: one call per task that died."""

    def on_task_death(self, task: str) -> None: ...


class Supervisor:
    """Starts named long-lived tasks in task groups and reports any that end unasked.

    ``on_death`` is called once per death, synchronously, from the dying task; it must
    not block (the manager sets an Event and flips readiness).
    """

    def __init__(
        self, on_death: Callable[[TaskDiedError], None], observer: DeathObserver | None = None
    ) -> None:
        self._on_death = on_death
        self._observer = observer
        self.deaths: list[TaskDiedError] = []

    def start(
        self,
        group: anyio.abc.TaskGroup,
        name: str,
        function: TaskFunction,
        *,
        may_return: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``function`` in ``group`` as task ``name``, watched.

        ``may_return`` says whether returning is expected now (the worker pool returns
        once its queue is shut down); cancellation by an enclosing scope is always
        expected.
        """
        group.start_soon(self._watch, name, function, may_return, name=name)

    async def _watch(self, name: str, function: TaskFunction, may_return: Callable[[], bool]) -> None:
        try:
            await function()
        except anyio.get_cancelled_exc_class():
            if math.isinf(anyio.current_effective_deadline()) and anyio.current_effective_deadline() < 0:
                raise  # an enclosing scope was cancelled: the owner is stopping us
            # Cancelled by someone else (a stray task.cancel()): the task is gone all the same.
            self._died(TaskDiedError(name, "was cancelled"))
        except Exception as exc:
            self._died(TaskDiedError(name, "failed", exc))
        else:
            if not may_return():
                self._died(TaskDiedError(name, "returned"))

    def _died(self, death: TaskDiedError) -> None:
        logger.critical("%s; the operator shuts down so it can be restarted", death, exc_info=death.cause)
        self.deaths.append(death)
        if self._observer is not None:
            self._observer.on_task_death(death.task)
        self._on_death(death)
