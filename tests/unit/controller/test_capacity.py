"""Rig maxActivePolecats over the caches (gastown.controller.capacity): order, reservations, wakes."""

from __future__ import annotations

from typing import Any

from gastown.controller.capacity import RigCapacity, Waiting
from gastown.controller.informer import WatchEvent


def polecat(
    name: str, created: str, *, phase: str | None = None, reason: str = "", rig: str = "r"
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "creationTimestamp": created},
        "spec": {"rig": rig, "beadID": f"gt-{name}"},
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
        if phase != "Pending":
            obj["status"]["startTime"] = created
        if reason:
            obj["status"]["conditions"] = [{"type": "Dispatched", "status": "False", "reason": reason}]
    return obj


def rig(limit: int | None, generation: int = 1, name: str = "r") -> dict[str, Any]:
    spec = {} if limit is None else {"maxActivePolecats": limit}
    return {"metadata": {"name": name, "namespace": "ns", "generation": generation}, "spec": spec}


def event(obj: dict[str, Any], type: str = "ADDED") -> WatchEvent:
    return WatchEvent(type, f"{obj['metadata']['namespace']}/{obj['metadata']['name']}", obj)


class Woken(list[str]):
    def __call__(self, key: str) -> None:
        self.append(key)


def setup(limit: int | None, *objs: dict[str, Any], has_work: Any = None) -> tuple[RigCapacity, Woken]:
    woken = Woken()
    cap = RigCapacity(wake=woken, has_work=has_work)
    cap.on_rig_event(event(rig(limit)))
    for obj in objs:
        cap.on_polecat_event(event(obj))
    woken.clear()
    return cap, woken


def test_no_rig_or_no_limit_admits_everyone() -> None:
    cap = RigCapacity()
    assert cap.admit("ns/a", polecat("a", "t1")) is None
    cap.on_rig_event(event(rig(None)))
    assert cap.admit("ns/b", polecat("b", "t2")) is None


def test_slots_go_in_creation_order_and_reserve_synchronously() -> None:
    a, b, c = polecat("a", "t1"), polecat("b", "t2"), polecat("c", "t3")
    cap, _ = setup(2, a, b, c)
    # c is asked first (a worker got to it first), but a and b are older and in line.
    assert cap.admit("ns/c", c) == Waiting(limit=2, active=0)
    assert cap.admit("ns/b", b) is None  # one of the two free slots: a is ahead of it, not c
    assert cap.admit("ns/a", a) is None
    # Both slots are reserved before any status is written: no third, whoever asks.
    assert cap.admit("ns/c", c) == Waiting(limit=2, active=2)
    assert cap.counts(("ns", "r")) == (2, 0)


def test_a_finished_polecat_wakes_the_next_in_line() -> None:
    a, b, c = polecat("a", "t1", phase="Working"), polecat("b", "t2"), polecat("c", "t3")
    cap, woken = setup(1, a, b, c)
    assert cap.admit("ns/b", b) == Waiting(limit=1, active=1)
    cap.on_polecat_event(event(polecat("a", "t1", phase="Done"), "MODIFIED"))
    assert woken == ["ns/b"]  # only as many as there are free slots, oldest first
    assert cap.admit("ns/c", c) == Waiting(limit=1, active=0)  # b is ahead
    assert cap.admit("ns/b", b) is None


def test_a_failed_dispatch_gives_the_slot_back() -> None:
    a, b = polecat("a", "t1"), polecat("b", "t2")
    cap, woken = setup(1, a, b)
    assert cap.admit("ns/a", a) is None
    woken.clear()
    cap.release("ns/a")
    assert woken == ["ns/a"]  # still the oldest in line


def test_a_polecat_held_back_by_something_else_does_not_block_the_line() -> None:
    stuck = polecat("a", "t1", phase="Pending", reason="SecretNotFound")
    b = polecat("b", "t2")
    cap, _ = setup(1, stuck, b)
    assert cap.admit("ns/b", b) is None


def test_raising_the_limit_or_deleting_the_rig_wakes_waiters() -> None:
    a, b, c = polecat("a", "t1", phase="Working"), polecat("b", "t2"), polecat("c", "t3")
    cap, woken = setup(1, a, b, c)
    cap.on_rig_event(event(rig(2, generation=2), "MODIFIED"))
    assert set(woken) == {"ns/b", "ns/c"}
    woken.clear()
    cap.on_rig_event(event(rig(2, generation=2), "MODIFIED"))  # a status write: same generation
    assert woken == []
    cap.on_rig_event(event(rig(2, generation=2), "DELETED"))
    assert set(woken) == {"ns/b", "ns/c"}
    assert cap.admit("ns/c", c) is None  # no Rig: no limit


def test_counted_from_the_cache_after_a_restart() -> None:
    """A fresh index (a new operator) counts what the caches show, Pods included."""
    running = polecat("a", "t1", phase="Working")
    started_unrecorded = polecat("b", "t2")  # its Pod exists; its status was not written yet
    waiting = polecat("c", "t3", phase="Pending", reason="RigAtCapacity")
    cap, _ = setup(2, running, started_unrecorded, waiting, has_work=lambda key: key == "ns/b")
    assert cap.admit("ns/c", waiting) == Waiting(limit=2, active=2)
    assert cap.counts(("ns", "r")) == (2, 1)


def test_rigs_and_namespaces_are_separate() -> None:
    a = polecat("a", "t1", phase="Working")
    other = polecat("b", "t2", rig="other")
    cap, _ = setup(1, a, other)
    assert cap.admit("ns/b", other) is None
