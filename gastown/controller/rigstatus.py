"""Rig status: how many of its Polecats are active and how many wait, written coalesced.

The counts come from :class:`gastown.controller.capacity.RigCapacity` (the caches, no
request). :meth:`RigStatusWriter.mark` says a rig's counts may have changed; the writer's
task wakes, waits ``interval`` seconds so a burst of changes becomes one write, and
patches ``status`` (``activePolecats``, ``waitingPolecats``, ``observedGeneration``) of
each marked Rig that exists, only when that differs from what the Rig's cached status
holds. Rig-less Polecats cost nothing here: a rig with no Rig object is never written.
A failed write is logged and the rig marked again (the next pass retries it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import GROUP, VERSION
from gastown.api.paths import resource_path
from gastown.api.rig import PLURAL as RIG_PLURAL
from gastown.controller.capacity import RigCapacity, RigKey
from gastown.controller.informer import Informer
from gastown.kube import KubeClient

logger = logging.getLogger(__name__)


def desired_status(rig: dict[str, Any], active: int, waiting: int) -> dict[str, Any]:
    """The counting part of a Rig's status."""
    generation = (rig.get("metadata") or {}).get("generation")
    return {"observedGeneration": generation, "activePolecats": active, "waitingPolecats": waiting}


def status_patch(rig: dict[str, Any], active: int, waiting: int) -> dict[str, Any] | None:
    """The merge patch that brings the Rig's status up to date; None when it already is."""
    current = rig.get("status") or {}
    wanted = desired_status(rig, active, waiting)
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    return {"status": changed} if changed else None


class RigStatusWriter:
    """Writes the counts of marked Rigs, at most once per ``interval`` (see the module doc)."""

    def __init__(
        self,
        client: KubeClient,
        rigs: Informer,
        capacity: RigCapacity,
        *,
        interval: float = 1.0,
        request_timeout: float = 15.0,
    ) -> None:
        self._client = client
        self._rigs = rigs
        self._capacity = capacity
        self._interval = interval
        self._request_timeout = request_timeout
        self._dirty: set[RigKey] = set()
        self._event = asyncio.Event()

    def mark(self, rig: RigKey) -> None:
        """The counts of ``rig`` may have changed."""
        self._dirty.add(rig)
        self._event.set()

    async def run(self) -> None:
        """Write marked Rigs until cancelled."""
        while True:
            await self._event.wait()
            await asyncio.sleep(self._interval)
            self._event.clear()
            dirty, self._dirty = self._dirty, set()
            for rig in sorted(dirty):
                await self._write(rig)

    async def _write(self, key: RigKey) -> None:
        namespace, name = key
        rig = self._rigs.get(f"{namespace}/{name}")
        if rig is None:
            return
        active, waiting = self._capacity.counts(key)
        patch = status_patch(rig, active, waiting)
        if patch is None:
            return
        path = resource_path(GROUP, VERSION, RIG_PLURAL, namespace=namespace, name=name, subresource="status")
        try:
            stored = await self._client.merge_patch(path, patch, request_timeout=self._request_timeout)
        except (ApiException, OSError, TimeoutError) as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return
            logger.info("could not write the status of Rig %s/%s: %s", namespace, name, exc)
            self.mark(key)
            return
        self._rigs.write_through(stored)
