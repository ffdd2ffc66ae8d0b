"""The supervisor: a long-lived task that ends unasked is reported; a stop its owner asked for is not."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gastown.controller.supervisor import Supervisor, TaskDiedError


def _supervisor() -> tuple[Supervisor, list[TaskDiedError], list[str]]:
    deaths: list[TaskDiedError] = []
    counted: list[str] = []

    class Observer:
        def on_task_death(self, task: str) -> None:
            counted.append(task)

    return Supervisor(deaths.append, Observer()), deaths, counted


async def test_a_task_that_raises_is_reported_with_its_cause() -> None:
    supervisor, deaths, counted = _supervisor()

    async def broken() -> None:
        raise ValueError("a bug")

    async with anyio.create_task_group() as group:
        supervisor.start(group, "informer-pods", broken)
    assert [d.task for d in deaths] == ["informer-pods"] and counted == ["informer-pods"]
    assert isinstance(deaths[0].cause, ValueError)
    assert "failed unexpectedly" in str(deaths[0])


async def test_a_task_that_returns_is_reported_unless_it_may() -> None:
    supervisor, deaths, _ = _supervisor()
    stopping = False

    async def quits() -> None:
        return None

    async with anyio.create_task_group() as group:
        supervisor.start(group, "events", quits)
        supervisor.start(group, "workers", quits, may_return=lambda: stopping)
    assert [(d.task, d.how) for d in deaths] == [("events", "returned"), ("workers", "returned")]
    deaths.clear()
    stopping = True
    async with anyio.create_task_group() as group:
        supervisor.start(group, "workers", quits, may_return=lambda: stopping)
    assert deaths == []


async def test_a_stray_cancel_is_a_death_but_the_owners_cancel_is_not() -> None:
    supervisor, deaths, _ = _supervisor()
    running = asyncio.Event()

    async def forever() -> None:
        running.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as group:
        supervisor.start(group, "events", forever)
        await running.wait()
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "events"]
        task.cancel()  # what a stray cancel() elsewhere in the process would do
    assert [(d.task, d.how) for d in deaths] == [("events", "was cancelled")]

    deaths.clear()
    running.clear()
    async with anyio.create_task_group() as group:
        supervisor.start(group, "events", forever)
        await running.wait()
        group.cancel_scope.cancel()  # the owner stopping it
    assert deaths == []


async def test_the_death_is_raised_as_an_error_naming_the_task() -> None:
    death = TaskDiedError("leader-election", "failed", RuntimeError("boom"))
    with pytest.raises(TaskDiedError, match=r"leader-election.*RuntimeError: boom"):
        raise death
