"""The informer's cache rules without a server: events, relist diffs, newest-wins, transforms.

The list/watch loop itself runs against the real apiserver in
tests/integration/test_informer_on_lab.py; here the stream's lines are fed directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

from gastown.controller.events import build_event, micro_time
from gastown.controller.informer import Informer, ResourceKind, WatchEvent, _ExpiredError
from gastown.controller.leaderelection import LeaseConfig
from gastown.controller.manager import owner_polecat_key, slim_polecat
from gastown.kube import KubeClient


def _obj(name: str, rv: int, ns: str = "ns", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv), **extra}}


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


def _informer(**kwargs: Any) -> tuple[Informer, list[WatchEvent]]:
    # No request is made in these tests; the client is never used.
    informer = Informer(cast(KubeClient, None), ResourceKind("g", "v1", "things"), **kwargs)
    events: list[WatchEvent] = []
    informer.add_handler(events.append)
    return informer, events


def test_watch_lines_update_cache_and_notify() -> None:
    informer, events = _informer()
    rv = informer._handle_line(_line("ADDED", _obj("a", 5)), "1")
    assert rv == "5"
    rv = informer._handle_line(_line("MODIFIED", _obj("a", 6)), rv)
    rv = informer._handle_line(_line("DELETED", _obj("a", 7)), rv)
    assert rv == "7"
    assert [(e.type, e.key) for e in events] == [("ADDED", "ns/a"), ("MODIFIED", "ns/a"), ("DELETED", "ns/a")]
    assert events[1].obj["metadata"]["resourceVersion"] == "6"
    assert events[2].obj["metadata"]["resourceVersion"] == "7"  # the final state
    assert informer.get("ns/a") is None


def test_bookmark_moves_the_resource_version_only() -> None:
    informer, events = _informer()
    rv = informer._handle_line(_line("BOOKMARK", {"metadata": {"resourceVersion": "42"}}), "1")
    assert rv == "42"
    assert events == [] and len(informer) == 0


def test_error_410_means_relist() -> None:
    informer, _ = _informer()
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    with pytest.raises(_ExpiredError):
        informer._handle_line(_line("ERROR", gone), "1")


def test_replayed_or_older_versions_do_not_wake_handlers() -> None:
    informer, events = _informer()
    informer._handle_line(_line("ADDED", _obj("a", 5)), "1")
    informer._handle_line(_line("MODIFIED", _obj("a", 5)), "5")
    informer._handle_line(_line("MODIFIED", _obj("a", 4)), "5")
    assert len(events) == 1


def test_write_through_is_newest_wins_and_its_echo_is_silent() -> None:
    informer, events = _informer()
    informer._handle_line(_line("ADDED", _obj("a", 5)), "1")
    informer.write_through(_obj("a", 9, labels={"w": "1"}))
    assert informer.get("ns/a") == _obj("a", 9, labels={"w": "1"})
    informer.write_through(_obj("a", 8))  # older: ignored
    assert informer.get("ns/a") == _obj("a", 9, labels={"w": "1"})
    informer._handle_line(_line("MODIFIED", _obj("a", 9, labels={"w": "1"})), "5")
    assert [e.type for e in events] == ["ADDED"]
    informer._handle_line(_line("MODIFIED", _obj("a", 10)), "9")
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]


def test_relist_replaces_only_its_scope_and_emits_the_difference() -> None:
    informer, events = _informer(namespaces=["ns", "other"])
    informer._handle_line(_line("ADDED", _obj("keep", 1)), "1")
    informer._handle_line(_line("ADDED", _obj("change", 1)), "1")
    informer._handle_line(_line("ADDED", _obj("vanish", 1)), "1")
    informer._handle_line(_line("ADDED", _obj("x", 1, ns="other")), "1")
    events.clear()
    informer._replace(
        "ns", {"ns/keep": _obj("keep", 1), "ns/change": _obj("change", 3), "ns/new": _obj("new", 4)}
    )
    assert sorted((e.type, e.key) for e in events) == [
        ("ADDED", "ns/new"),
        ("DELETED", "ns/vanish"),
        ("MODIFIED", "ns/change"),
    ]
    assert informer.get("other/x") is not None  # another namespace's part is untouched


def test_transform_slims_but_identity_survives() -> None:
    informer, events = _informer(transform=lambda obj: {"spec": obj.get("spec")})
    informer._handle_line(
        _line("ADDED", {**_obj("a", 3, uid="u1"), "spec": {"x": 1}, "big": "y" * 1000}), "1"
    )
    cached = informer.get("ns/a")
    assert cached == {
        "spec": {"x": 1},
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "3", "uid": "u1"},
    }
    assert events[0].obj == cached
    assert informer.cached_resource_version("ns/a") == "3"


def test_get_returns_a_copy_the_caller_may_mutate() -> None:
    informer, _ = _informer()
    informer._handle_line(_line("ADDED", _obj("a", 3)), "1")
    got = informer.get("ns/a")
    assert got is not None
    got["metadata"]["name"] = "mutated"
    assert informer.get_by_name("ns", "a") == _obj("a", 3)
    assert list(informer.values()) == [_obj("a", 3)]
    assert informer.keys() == ["ns/a"]


def test_slim_polecat_drops_managed_fields_and_last_applied() -> None:
    obj = {
        "metadata": {
            "name": "p",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {"rig": "r"},
    }
    assert slim_polecat(obj) == {"metadata": {"name": "p"}, "spec": {"rig": "r"}}


def test_owner_key_from_owner_reference_then_label() -> None:
    owned = {"metadata": {"namespace": "ns", "ownerReferences": [{"kind": "Polecat", "name": "p1"}]}}
    labelled = {"metadata": {"namespace": "ns", "labels": {"gastown.gastown.io/polecat": "p2"}}}
    stray = {"metadata": {"namespace": "ns", "ownerReferences": [{"kind": "Job", "name": "j"}]}}
    assert owner_polecat_key(owned) == "ns/p1"
    assert owner_polecat_key(labelled) == "ns/p2"
    assert owner_polecat_key(stray) is None


def test_event_object_shape() -> None:
    polecat = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
    }
    event = build_event(
        polecat,
        type="Warning",
        reason="Failed",
        note="x" * 5000,
        action="Reconcile",
        instance="me",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["metadata"]["namespace"] == "ns"
    assert event["metadata"]["name"].startswith("p.")
    assert event["regarding"] == {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "namespace": "ns",
        "name": "p",
        "uid": "u",
        "resourceVersion": "5",
    }
    assert len(event["note"]) <= 1024
    assert event["eventTime"] == micro_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"


def test_lease_config_needs_ordered_durations() -> None:
    LeaseConfig(namespace="n", name="l", identity="i", lease_duration=15, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="lease_duration > renew_deadline > retry_period"):
        LeaseConfig(
            namespace="n", name="l", identity="i", lease_duration=5, renew_deadline=10, retry_period=2
        )
