"""A Rig's ``maxActivePolecats``: an in-memory index of each rig's Polecats over the caches.

Scope: a Rig limits the Polecats that name it in its own namespace, so the index is
keyed by (namespace, rig). A member is **active** when its status says it was
dispatched and it has not finished (Done, Failed, Terminated), when the engine knows of
its work otherwise (``has_work``: its Pod is in the Pod cache, so work started just
before an operator restart, whose status was not written yet, still counts), or while
it holds a **reservation**. A member is **in line** when it is not dispatched, not
being stopped or deleted, and not held back by something else (its ``Dispatched``
condition says nothing, or RigAtCapacity): a Polecat stuck on a missing Secret does not
block the ones behind it.

:meth:`RigCapacity.admit` is what the reconciler asks just before a dispatch. It is
synchronous (one event loop, no await between the check and the reservation), so
concurrent workers never overshoot: a Polecat may start when the active members plus
the in-line members created before it are fewer than the limit, i.e. slots go in
creation order (``creationTimestamp``, then name, then uid). Admission reserves the slot
until the member's own status shows the dispatch (then it counts as dispatched) or the
dispatch failed (:meth:`release`).

Everything is counted from the informer caches (and the operator's own writes, fed in by
:meth:`on_write`), so the limit holds across an operator restart and costs no request.
When a slot frees (a member finished or left, a reservation was released, the limit was
raised) the first waiters that may now start are woken (``wake``: the work queue's
``add``); a Rig created, deleted or whose spec changed wakes all its undispatched
Polecats, which resolve against it again. ``on_change`` is told which rigs' counts may
have changed (the Rig status writer coalesces them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gastown.api.models import TERMINAL_PHASES, DesiredState, Phase
from gastown.controller.informer import WatchEvent
from gastown.controller.status import DISPATCHED, RIG_AT_CAPACITY

RigKey = tuple[str, str]
"""(namespace, rig name)."""

_TERMINAL: Final = frozenset(p.value for p in TERMINAL_PHASES)
_IN_LINE_REASONS: Final = frozenset({"", "NotDispatched", RIG_AT_CAPACITY})


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _dispatched_reason(obj: Mapping[str, Any]) -> str:
    for cond in _get(obj, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == DISPATCHED:
            return str(cond.get("reason") or "")
    return ""


@dataclass(frozen=True, slots=True)
class Member:
    """What the index keeps of one live Polecat of a rig."""

    order: tuple[str, str, str]
    dispatched: bool
    in_line: bool
    at_capacity: bool


def member_of(obj: Mapping[str, Any]) -> tuple[RigKey, Member] | None:
    """The rig a Polecat counts against and how; None when it counts for none (finished)."""
    rig, namespace = _get(obj, "spec", "rig"), _get(obj, "metadata", "namespace")
    if not isinstance(rig, str) or not isinstance(namespace, str):
        return None
    phase = _get(obj, "status", "phase") or Phase.PENDING.value
    if phase in _TERMINAL:
        return None
    dispatched = bool(_get(obj, "status", "startTime")) or phase != Phase.PENDING.value
    reason = _dispatched_reason(obj)
    in_line = (
        not dispatched
        and _get(obj, "spec", "desiredState") != DesiredState.TERMINATED.value
        and not _get(obj, "metadata", "deletionTimestamp")
        and reason in _IN_LINE_REASONS
    )
    order = (
        str(_get(obj, "metadata", "creationTimestamp") or ""),
        str(_get(obj, "metadata", "name") or ""),
        str(_get(obj, "metadata", "uid") or ""),
    )
    return (namespace, rig), Member(order, dispatched, in_line, reason == RIG_AT_CAPACITY)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why :meth:`RigCapacity.admit` said no: the limit and how many are active."""

    limit: int
    active: int


class RigCapacity:
    """Rig capacity over the caches (see the module doc). Not thread-safe: one loop."""

    def __init__(
        self,
        *,
        wake: Callable[[str], None] | None = None,
        has_work: Callable[[str], bool] | None = None,
        on_change: Callable[[RigKey], None] | None = None,
    ) -> None:
        self._wake = wake
        self._has_work = has_work
        self._on_change = on_change
        self._members: dict[RigKey, dict[str, Member]] = {}
        self._rig_of: dict[str, RigKey] = {}
        self._reserved: set[str] = set()
        self._limits: dict[RigKey, int | None] = {}
        self._generations: dict[RigKey, int] = {}

    # -- feeding ---------------------------------------------------------------------

    def on_polecat_event(self, event: WatchEvent) -> list[str]:
        """Update the index from a Polecat watch event; wake (and return) who may start now."""
        rig = self._leave(event.key) if event.type == "DELETED" else self._update(event.key, event.obj)
        return self._after_change(rig)

    def on_write(self, obj: Mapping[str, Any]) -> list[str]:
        """Update the index from a Polecat the operator just wrote (its echo is no event)."""
        namespace, name = _get(obj, "metadata", "namespace"), _get(obj, "metadata", "name")
        return self.on_polecat_event(WatchEvent("MODIFIED", f"{namespace}/{name}", dict(obj)))

    def on_rig_event(self, event: WatchEvent) -> list[str]:
        """A Rig appeared, changed or went: new limits; its undispatched Polecats look again."""
        namespace, name = _get(event.obj, "metadata", "namespace"), _get(event.obj, "metadata", "name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return []
        rig: RigKey = (namespace, name)
        if self._on_change is not None:
            self._on_change(rig)
        if event.type == "DELETED":
            self._limits.pop(rig, None)
            self._generations.pop(rig, None)
            return self._wake_keys(self._undispatched(rig))
        limit = _get(event.obj, "spec", "maxActivePolecats")
        generation = int(_get(event.obj, "metadata", "generation") or 0)
        known = rig in self._generations
        self._limits[rig] = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        if known and self._generations[rig] == generation:
            return []  # a status write (ours): nothing a Polecat resolves changed
        self._generations[rig] = generation
        return self._wake_keys(self._undispatched(rig))

    def _update(self, key: str, obj: Mapping[str, Any]) -> RigKey | None:
        found = member_of(obj)
        previous = self._rig_of.get(key)
        if found is None:
            return self._leave(key)
        rig, member = found
        if previous is not None and previous != rig:
            self._leave(key)
        old = self._members.setdefault(rig, {}).get(key)
        self._members[rig][key] = member
        self._rig_of[key] = rig
        if member.dispatched:
            self._reserved.discard(key)
        if old is not None and old.in_line and not member.in_line and not member.dispatched:
            return rig  # it stepped out of line (stopped, held by something else): others may go
        if old != member and self._on_change is not None:
            self._on_change(rig)
        return None

    def _leave(self, key: str) -> RigKey | None:
        self._reserved.discard(key)
        rig = self._rig_of.pop(key, None)
        if rig is None:
            return None
        members = self._members.get(rig, {})
        members.pop(key, None)
        if not members:
            self._members.pop(rig, None)
        return rig

    def _after_change(self, rig: RigKey | None) -> list[str]:
        """A slot of ``rig`` may have freed: wake the first waiters that may start now."""
        if rig is None:
            return []
        if self._on_change is not None:
            self._on_change(rig)
        limit = self._limits.get(rig)
        if limit is None:
            return []
        free = limit - self.active(rig)
        if free <= 0:
            return []
        return self._wake_keys(self._line(rig)[:free])

    def _wake_keys(self, keys: list[str]) -> list[str]:
        if self._wake is not None:
            for key in keys:
                self._wake(key)
        return keys

    # -- reading ---------------------------------------------------------------------

    def _is_active(self, key: str, member: Member) -> bool:
        return (
            member.dispatched or key in self._reserved or (self._has_work is not None and self._has_work(key))
        )

    def active(self, rig: RigKey, *, excluding: str | None = None) -> int:
        """Members of ``rig`` dispatched (or reserved) and not finished."""
        members = self._members.get(rig, {})
        return sum(1 for k, m in members.items() if k != excluding and self._is_active(k, m))

    def _line(self, rig: RigKey) -> list[str]:
        """In-line waiters of ``rig``, oldest first."""
        members = self._members.get(rig, {})
        waiting = [k for k, m in members.items() if m.in_line and not self._is_active(k, m)]
        return sorted(waiting, key=lambda k: members[k].order)

    def _undispatched(self, rig: RigKey) -> list[str]:
        members = self._members.get(rig, {})
        return sorted(k for k, m in members.items() if not m.dispatched)

    def counts(self, rig: RigKey) -> tuple[int, int]:
        """(active, waiting for a slot) of ``rig``, for its status."""
        members = self._members.get(rig, {})
        active = self.active(rig)
        waiting = sum(1 for k, m in members.items() if m.at_capacity and not self._is_active(k, m))
        return active, waiting

    def limit(self, rig: RigKey) -> int | None:
        """The Rig's maxActivePolecats as last seen (None: no limit, or no Rig)."""
        return self._limits.get(rig)

    # -- deciding --------------------------------------------------------------------

    def admit(self, key: str, obj: Mapping[str, Any]) -> Waiting | None:
        """May the Polecat ``obj`` (cached, about to be dispatched) start now?

        None: yes, and the slot is reserved for it. A :class:`Waiting`: no, the Rig is at
        its limit (or older Polecats are in line for the free slots).
        """
        found = member_of(obj)
        if found is None:
            return None
        rig, member = found
        limit = self._limits.get(rig)
        if limit is None or key in self._reserved:
            return None
        self._update(key, obj)
        active = self.active(rig, excluding=key)
        members = self._members.get(rig, {})
        ahead = sum(
            1
            for k, m in members.items()
            if k != key and m.in_line and m.order < member.order and not self._is_active(k, m)
        )
        if active + ahead < limit:
            self._reserved.add(key)
            if self._on_change is not None:
                self._on_change(rig)
            return None
        return Waiting(limit, active)

    def release(self, key: str) -> list[str]:
        """The dispatch that was admitted did not happen: give the slot back."""
        if key not in self._reserved:
            return []
        self._reserved.discard(key)
        return self._after_change(self._rig_of.get(key))

    def rigs(self) -> list[RigKey]:
        """Every rig with a known limit or members."""
        return sorted(set(self._members) | set(self._limits))

    def __len__(self) -> int:
        return len(self._rig_of)
