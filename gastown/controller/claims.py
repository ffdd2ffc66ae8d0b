"""One bead, one live Polecat: an in-memory index of bead claims over the Polecat cache.

A claim is (scope, rig, beadID). It is held by the oldest *live* Polecat on it
(``creationTimestamp``, then name, then uid): one not in a terminal phase (Done, Failed,
Terminated). A Polecat being deleted still holds it until its finalizer is gone and it
leaves the cache, because its work is still being released.

Scope: local mode shares one Gas Town town on the operator host, so its claims are
cluster-wide per (rig, beadID); in kubernetes mode each namespace is its own world, so
claims are per (namespace, rig, beadID). A local and a kubernetes Polecat on the same
bead do not share a claim.

The index is fed by the Polecat informer's events (:meth:`BeadClaims.on_event`) and by
the reconciler's own status writes (:meth:`BeadClaims.on_write`: the informer stores
those write-through and its watch echo of them is no event), and costs no API request.
When a member leaves a claim (finished, deleted, its phase became terminal) the claim's
remaining members are woken (``wake``, the work queue's ``add``): the next oldest then
finds it holds the claim and is dispatched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from gastown.api.models import TERMINAL_PHASES, ExecutionMode
from gastown.controller.informer import WatchEvent

Claim = tuple[str, str, str]
"""(scope, rig, beadID); scope is "" for local mode (cluster-wide) or the namespace."""

_TERMINAL: Final = frozenset(p.value for p in TERMINAL_PHASES)
_Order = tuple[str, str, str]


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


RigMode = Callable[[str, str], "str | None"]
"""(namespace, rig) -> the Rig's spec.executionMode, None when unset or no Rig."""


def mode_of(obj: Mapping[str, Any], rig_mode: RigMode | None = None) -> str:
    """The Polecat's effective mode: recorded at dispatch, else its own, else its Rig's, else local."""
    mode = _get(obj, "status", "effective", "executionMode") or _get(obj, "spec", "executionMode")
    if not mode and rig_mode is not None:
        namespace, rig = _get(obj, "metadata", "namespace"), _get(obj, "spec", "rig")
        if isinstance(namespace, str) and isinstance(rig, str):
            mode = rig_mode(namespace, rig)
    return str(mode or ExecutionMode.LOCAL.value)


def claim_of(obj: Mapping[str, Any], rig_mode: RigMode | None = None) -> Claim | None:
    """The claim a Polecat takes part in while live; None when it holds none (terminal)."""
    rig, bead = _get(obj, "spec", "rig"), _get(obj, "spec", "beadID")
    if not isinstance(rig, str) or not isinstance(bead, str):
        return None
    if _get(obj, "status", "phase") in _TERMINAL:
        return None
    mode = mode_of(obj, rig_mode)
    scope = "" if mode == ExecutionMode.LOCAL.value else str(_get(obj, "metadata", "namespace") or "")
    return (scope, rig, bead)


def _order(obj: Mapping[str, Any]) -> _Order:
    return (
        str(_get(obj, "metadata", "creationTimestamp") or ""),
        str(_get(obj, "metadata", "name") or ""),
        str(_get(obj, "metadata", "uid") or ""),
    )


class BeadClaims:
    """Which live Polecat holds each bead claim (see the module doc). Not thread-safe: one loop."""

    def __init__(self, wake: Callable[[str], None] | None = None, rig_mode: RigMode | None = None) -> None:
        self._wake = wake
        self._rig_mode = rig_mode
        self._members: dict[Claim, dict[str, _Order]] = {}
        self._claim_of: dict[str, Claim] = {}

    def on_event(self, event: WatchEvent) -> list[str]:
        """Update the index from a watch event; wake (and return) the keys left waiting."""
        woken = self._leave(event.key) if event.type == "DELETED" else self._update(event.key, event.obj)
        if self._wake is not None:
            for key in woken:
                self._wake(key)
        return woken

    def on_write(self, obj: Mapping[str, Any]) -> list[str]:
        """Update the index from an object the operator just wrote (see the module doc)."""
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return []
        return self.on_event(WatchEvent("MODIFIED", f"{meta.get('namespace')}/{meta.get('name')}", dict(obj)))

    def _update(self, key: str, obj: Mapping[str, Any]) -> list[str]:
        claim = claim_of(obj, self._rig_mode)
        previous = self._claim_of.get(key)
        woken = self._leave(key) if previous is not None and previous != claim else []
        if claim is not None:
            self._members.setdefault(claim, {})[key] = _order(obj)
            self._claim_of[key] = claim
        return woken

    def _leave(self, key: str) -> list[str]:
        claim = self._claim_of.pop(key, None)
        if claim is None:
            return []
        members = self._members.get(claim, {})
        members.pop(key, None)
        if not members:
            self._members.pop(claim, None)
            return []
        return sorted(members, key=members.__getitem__)

    def holder(self, obj: Mapping[str, Any], key: str) -> str | None:
        """The key of the Polecat holding ``obj``'s claim if it is another one, else None.

        ``obj`` is the cached Polecat being reconciled; it counts as a member even if its
        own event has not been indexed yet (the reconciler may run first).
        """
        claim = claim_of(obj, self._rig_mode)
        if claim is None:
            return None
        members = dict(self._members.get(claim, {}))
        members[key] = _order(obj)
        oldest = min(members, key=members.__getitem__)
        return None if oldest == key else oldest

    def __len__(self) -> int:
        return len(self._claim_of)
