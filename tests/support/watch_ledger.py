"""A witness of everything that happens to the Polecats and Pods of one namespace.

Fault tests must prove negatives ("no Pod was created twice", "no Polecat was
dispatched twice"), which a look at the end state cannot: a Pod created, deleted and
created again looks like one Pod. So the test keeps its own watch from before the
first Polecat exists until the end, independent of the operator, and records:

* every Pod uid ever seen under each Pod name, and every Pod deletion;
* every Polecat's sequence of phases and every ``status.startTime`` it carried.

The watch survives the faults the tests inject (an apiserver killed, an etcd
compaction): it resumes from its last resourceVersion and, when that expired (410),
relists and compares the list with what it knew, so a change it could not see as an
event still shows up (a Pod that vanished, or came back with a new uid).

It talks raw JSON over aiohttp with the lab's admin credentials; it shares nothing
with the operator under test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gastown.devcluster.lab import Lab

POLECATS = "/apis/gastown.gastown.io/v1alpha1/namespaces/{ns}/polecats"
PODS = "/api/v1/namespaces/{ns}/pods"
# Phases a Polecat passes through in order while its work is unfinished; going back
# to an earlier one would mean it was dispatched again.
PROGRESS = ("", "Pending", "Dispatching", "Working")


class _ExpiredError(Exception):
    """The watch's resourceVersion is gone (410): relist."""


@dataclass
class WatchLedger:
    """Start with :meth:`start` before creating anything; :meth:`stop` at the end."""

    lab: Lab
    namespace: str
    pod_uids: dict[str, list[str]] = field(default_factory=dict)
    pod_deletions: collections.Counter[str] = field(default_factory=collections.Counter)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    polecat_phases: dict[str, list[str]] = field(default_factory=dict)
    polecat_start_times: dict[str, list[str]] = field(default_factory=dict)
    polecats: dict[str, dict[str, Any]] = field(default_factory=dict)
    relists: collections.Counter[str] = field(default_factory=collections.Counter)
    polecat_uids: dict[str, list[str]] = field(default_factory=dict)
    polecat_history: list[tuple[str, str, str]] = field(default_factory=list)
    """Every Polecat event in watch order: (type, name, phase), for "at every moment" checks."""
    _session: aiohttp.ClientSession | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            base_url=self.lab.server,
            connector=aiohttp.TCPConnector(ssl=self.lab.ssl_context(), limit=8),
        )
        synced = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(self._run("pods", PODS.format(ns=self.namespace), self._on_pod, synced[0])),
            asyncio.create_task(
                self._run("polecats", POLECATS.format(ns=self.namespace), self._on_polecat, synced[1])
            ),
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), 30)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- what the tests ask ------------------------------------------------------------

    def pods_created_more_than_once(self, names: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Pod names (of ``names``, default all) that had more than one uid, or were ever deleted."""
        wanted = set(self.pod_uids) if names is None else set(names)
        return {
            name: uids
            for name, uids in self.pod_uids.items()
            if name in wanted and (len(uids) > 1 or self.pod_deletions[name] > 0)
        }

    def polecats_going_backwards(self) -> dict[str, list[str]]:
        """Polecats whose phase went back to an earlier one (a second dispatch)."""
        bad: dict[str, list[str]] = {}
        for name, phases in self.polecat_phases.items():
            ranks = [PROGRESS.index(p) for p in phases if p in PROGRESS]
            if ranks != sorted(ranks):
                bad[name] = phases
        return bad

    def polecats_restarted(self) -> dict[str, list[str]]:
        """Polecats whose ``status.startTime`` changed once set (a second dispatch)."""
        return {name: times for name, times in self.polecat_start_times.items() if len(times) > 1}

    def phase(self, name: str) -> str:
        return str((self.polecats.get(name, {}).get("status") or {}).get("phase", ""))

    # -- recording --------------------------------------------------------------------

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name, uid = str(meta.get("name")), str(meta.get("uid"))
        if kind == "DELETED":
            self.pod_deletions[name] += 1
            self.pods.pop(name, None)
            return
        uids = self.pod_uids.setdefault(name, [])
        if uid not in uids:
            uids.append(uid)
        self.pods[name] = obj

    def _on_polecat(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        status = obj.get("status") or {}
        self.polecat_history.append((kind, name, str(status.get("phase", ""))))
        if kind == "DELETED":
            self.polecats.pop(name, None)
            return
        uids = self.polecat_uids.setdefault(name, [])
        if str(meta.get("uid")) not in uids:
            uids.append(str(meta.get("uid")))
        self.polecats[name] = obj
        phases = self.polecat_phases.setdefault(name, [])
        phase = str(status.get("phase", ""))
        if not phases or phases[-1] != phase:
            phases.append(phase)
        start = status.get("startTime")
        if start:
            times = self.polecat_start_times.setdefault(name, [])
            if start not in times:
                times.append(str(start))

    # -- list + watch that outlives apiserver restarts -------------------------------

    async def _run(self, what: str, path: str, on_event: Any, synced: asyncio.Event) -> None:
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._relist(what, path, on_event)
                    synced.set()
                rv = await self._watch(path, rv, on_event)
            except asyncio.CancelledError:
                raise
            except _ExpiredError:
                rv = None
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                await asyncio.sleep(0.2)  # the apiserver is away; try again shortly

    async def _relist(self, what: str, path: str, on_event: Any) -> str:
        assert self._session is not None
        async with self._session.get(path, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"list {path}: HTTP {resp.status}")
            listed = await resp.json()
        known = self.pods if what == "pods" else self.polecats
        present = {item["metadata"]["name"] for item in listed.get("items") or []}
        for name in [n for n in known if n not in present]:
            on_event("DELETED", known[name])  # vanished while we were not watching
        for item in listed.get("items") or []:
            on_event("MODIFIED", item)
        self.relists[what] += 1
        return str(listed["metadata"]["resourceVersion"])

    async def _watch(self, path: str, rv: str, on_event: Any) -> str:
        assert self._session is not None
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=90)
        async with self._session.get(path, params=params, timeout=timeout) as resp:
            if resp.status == 410:
                raise _ExpiredError
            if resp.status != 200:
                raise aiohttp.ClientError(f"watch {path}: HTTP {resp.status}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return rv
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        raise _ExpiredError
                    raise aiohttp.ClientError(f"watch error: {obj.get('message')}")
                rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                if event["type"] != "BOOKMARK":
                    on_event(event["type"], obj)


@contextlib.asynccontextmanager
async def witnessed(lab: Lab, namespace: str) -> AsyncIterator[WatchLedger]:
    """``async with witnessed(lab, ns) as ledger:`` a started :class:`WatchLedger`."""
    ledger = WatchLedger(lab, namespace)
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.stop()
