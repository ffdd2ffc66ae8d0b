"""One bead, one live Polecat: an in-memory index of bead claims over the Polecat cache.

A claim is (scope, rig, beadID). It is held by the oldest *live* Polecat on it
(``creationTimestamp``, then name, then uid): one not in a terminal phase (Done, Failed,
Terminated). A Polecat being deleted still holds it until its finalizer is gone and it
leaves the cache, because its work is still being released.

Scope: local mode shares one Gas Town town on the operator host, so its claims are
cluster-wide per (rig, beadID); in kubernetes mode each namespace is its own world, so
claims are per (namespace, rig, beadID). A local and a kubernetes Polecat on the same
bead do not share a claim.

The index is fed by the Polecat informer's events (:meth:`BeadClaims.on_event`) and
costs no API request. When a member leaves a claim (finished, deleted, its phase became
terminal) the keys of the claim's remaining members are returned so the caller can wake
them: the next oldest then finds it holds the claim and is dispatched.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def claim_of(obj: Mapping[str, Any]) -> Claim | None:
    """The claim a Polecat takes part in while live; None when it holds none (terminal)."""
    rig, bead = _get(obj, "spec", "rig"), _get(obj, "spec", "beadID")
    if not isinstance(rig, str) or not isinstance(bead, str):
        return None
    if _get(obj, "status", "phase") in _TERMINAL:
        return None
    mode = _get(obj, "spec", "executionMode") or ExecutionMode.LOCAL.value
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

    def __init__(self) -> None:
        self._members: dict[Claim, dict[str, _Order]] = {}
        self._claim_of: dict[str, Claim] = {}

    def on_event(self, event: WatchEvent) -> list[str]:
        """Update the index; return the keys to wake because a member left their claim."""
        if event.type == "DELETED":
            return self._leave(event.key)
        claim = claim_of(event.obj)
        previous = self._claim_of.get(event.key)
        woken = self._leave(event.key) if previous is not None and previous != claim else []
        if claim is not None:
            self._members.setdefault(claim, {})[event.key] = _order(event.obj)
            self._claim_of[event.key] = claim
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
        claim = claim_of(obj)
        if claim is None:
            return None
        members = dict(self._members.get(claim, {}))
        members[key] = _order(obj)
        oldest = min(members, key=members.__getitem__)
        return None if oldest == key else oldest

    def __len__(self) -> int:
        return len(self._claim_of)
