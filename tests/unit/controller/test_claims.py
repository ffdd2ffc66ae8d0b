"""The bead-claim index: who holds a bead, and who is woken when a holder leaves."""

from __future__ import annotations

from typing import Any

from gastown.api.models import ExecutionMode, Polecat
from gastown.controller import status
from gastown.controller.claims import BeadClaims, claim_of
from gastown.controller.informer import EventType, WatchEvent


def polecat(
    name: str,
    *,
    namespace: str = "ns",
    created: str = "2026-01-01T00:00:00Z",
    bead: str = "gt-abc12",
    rig: str = "gastown",
    mode: str = "local",
    phase: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rig": rig, "beadID": bead, "executionMode": mode}
    if mode == "kubernetes":
        spec["kubernetes"] = {"gitRepository": "https://example.com/x.git"}
    obj: dict[str, Any] = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "uid": f"u-{name}"},
        "spec": spec,
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def event(obj: dict[str, Any], type: EventType = "ADDED") -> WatchEvent:
    return WatchEvent(type, key(obj), obj)


def test_the_oldest_live_polecat_holds_the_bead() -> None:
    claims = BeadClaims()
    old, young = (
        polecat("b-old", created="2026-01-01T00:00:00Z"),
        polecat("a-young", created="2026-01-02T00:00:00Z"),
    )
    for obj in (young, old):
        claims.on_event(event(obj))
    assert claims.holder(old, key(old)) is None
    assert claims.holder(young, key(young)) == "ns/b-old"


def test_same_second_ties_go_by_name() -> None:
    claims = BeadClaims()
    a, b = polecat("a"), polecat("b")
    claims.on_event(event(b))
    assert claims.holder(a, key(a)) is None  # a is not indexed yet: it still counts
    claims.on_event(event(a))
    assert claims.holder(b, key(b)) == "ns/a"


def test_local_claims_span_namespaces_kubernetes_claims_do_not() -> None:
    assert claim_of(polecat("a", namespace="x")) == claim_of(polecat("a", namespace="y"))
    assert claim_of(polecat("a", namespace="x", mode="kubernetes")) != claim_of(
        polecat("a", namespace="y", mode="kubernetes")
    )
    assert claim_of(polecat("a", rig="other")) != claim_of(polecat("a"))
    assert claim_of(polecat("a", mode="kubernetes")) != claim_of(polecat("a"))


def test_a_holder_that_finishes_or_goes_wakes_the_waiters() -> None:
    claims = BeadClaims()
    holder, waiter = polecat("holder"), polecat("waiter", created="2026-01-03T00:00:00Z")
    assert claims.on_event(event(holder)) == []
    assert claims.on_event(event(waiter)) == []
    assert claims.on_event(event(polecat("holder", phase="Working"), "MODIFIED")) == []  # still live
    assert claims.on_event(event(polecat("holder", phase="Done"), "MODIFIED")) == ["ns/waiter"]
    assert claims.holder(waiter, key(waiter)) is None
    # A deleting holder keeps the claim until it leaves the cache.
    other = polecat("other", created="2026-01-04T00:00:00Z")
    claims.on_event(event(other))
    deleting = polecat("waiter", created="2026-01-03T00:00:00Z")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-05T00:00:00Z"
    assert claims.on_event(event(deleting, "MODIFIED")) == []
    assert claims.holder(other, key(other)) == "ns/waiter"
    assert claims.on_event(event(deleting, "DELETED")) == ["ns/other"]
    assert claims.holder(other, key(other)) is None
    assert len(claims) == 1


def test_terminal_polecats_hold_nothing() -> None:
    for phase in ("Done", "Failed", "Terminated"):
        assert claim_of(polecat("a", phase=phase)) is None
    assert claim_of(polecat("a", phase="Stuck")) is not None


def test_bead_claimed_wording() -> None:
    local = Polecat.from_dict(polecat("young"))
    err = status.bead_claimed(local, "other/old")
    assert err.reason == "BeadClaimed"
    assert err.message == (
        "Bead gt-abc12 of rig gastown is already claimed by Polecat other/old in this cluster (local mode "
        "shares one town); this Polecat waits and starts when that one finishes or is deleted. "
        "To work now, use another bead."
    )
    k8s = Polecat.from_dict(polecat("young", mode=ExecutionMode.KUBERNETES.value))
    assert "in this namespace;" in status.bead_claimed(k8s, "ns/old").message
    assessment = status.assess(status.Subject.of(local), err)
    assert (assessment.phase.value, assessment.ready, assessment.reason) == (
        "Pending",
        "False",
        "BeadClaimed",
    )


def test_the_operators_own_status_write_wakes_the_waiters() -> None:
    """The informer stores the reconciler's writes without an event: on_write covers them."""
    woken: list[str] = []
    claims = BeadClaims(wake=woken.append)
    holder, waiter = polecat("holder"), polecat("waiter", created="2026-01-03T00:00:00Z")
    claims.on_event(event(holder))
    claims.on_event(event(waiter))
    assert claims.on_write(polecat("holder", phase="Failed")) == ["ns/waiter"]
    assert woken == ["ns/waiter"]
    assert claims.holder(waiter, key(waiter)) is None


def test_a_mode_left_to_the_rig_is_scoped_by_the_rigs_mode() -> None:
    """Mode unset: the Rig's mode decides the scope; once dispatched, status.effective does."""
    a = polecat("a", namespace="one")
    b = polecat("b", namespace="two")
    for obj in (a, b):
        del obj["spec"]["executionMode"]
    rig_modes = {("one", "gastown"): "kubernetes", ("two", "gastown"): "kubernetes"}
    claims = BeadClaims(rig_mode=lambda ns, rig: rig_modes.get((ns, rig)))
    claims.on_event(event(a))
    assert claim_of(a, claims._rig_mode) == ("one", "gastown", "gt-abc12")
    assert claims.holder(b, key(b)) is None  # kubernetes mode: each namespace is its own world
    assert claim_of(a) == ("", "gastown", "gt-abc12")  # no Rig: local, cluster-wide
    a["status"] = {"phase": "Working", "effective": {"executionMode": "kubernetes"}}
    assert claim_of(a) == ("one", "gastown", "gt-abc12")  # recorded at dispatch
