"""Waiting for something positive: the one polling helper every test uses.

Tests never sleep a fixed time and then assert that something did NOT happen: on a
slow machine that passes having checked nothing. They wait for a positive sign first
(a counter, an Event, a later reconcile of a marker object, a resourceVersion past the
point of interest) with these helpers, which time out with what they last saw and
never assert on how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout`` s.

    An exception from ``check`` (the apiserver restarting, say) counts as "not yet".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def wait_until(
    check: Callable[[], object], what: str = "condition", *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """:func:`wait_for` for a synchronous ``check``."""

    async def run() -> object:
        return check()

    return await wait_for(run, timeout=timeout, interval=interval, what=what)


async def run_ready(turns: int = 20) -> None:
    """Let every task that can run without a timer or I/O run until it blocks.

    Each ``sleep(0)`` is one turn of the event loop, which runs every callback that is
    ready. For in-process unit tests with no timers or sockets involved, a task still
    not done after this is blocked for real, however slow the machine: it counts loop
    turns, not time.
    """
    for _ in range(turns):
        await asyncio.sleep(0)
