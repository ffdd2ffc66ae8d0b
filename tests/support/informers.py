"""Running a real Informer in a test: the kinds, an observer that counts, and a runner.

Shared by the informer lab tests so that no test module imports another.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gastown.controller.informer import Informer, ResourceKind

CONFIGMAPS = ResourceKind("", "v1", "configmaps")
PODS = ResourceKind("", "v1", "pods")
EVENTS = ResourceKind("events.k8s.io", "v1", "events")


class Recorder:
    """Counts relists and watch restarts (the informer's observer hooks)."""

    def __init__(self) -> None:
        self.relists = 0
        self.restarts: collections.Counter[str] = collections.Counter()

    def on_relist(self, resource: str) -> None:
        self.relists += 1

    def on_watch_restart(self, resource: str, reason: str) -> None:
        self.restarts[reason] += 1

    def on_event(self, resource: str, type: str) -> None:
        pass


@asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    """The informer running, synced, for the block; cancelled and awaited after it."""
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
