"""Bursts of like Events fold into one series per reason; a few Events pass as they are.

Pure: the clock is passed in. The series Event's shape is checked against the real
apiserver in tests/integration/test_event_series_on_lab.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gastown.controller.events import build_event
from gastown.controller.eventseries import (
    ANNOTATION_POLECATS,
    LABEL_SERIES,
    EventSeries,
    names_in,
)


def _event(name: str, reason: str = "Working", namespace: str = "ns", type: str = "Normal") -> dict[str, Any]:
    regarding = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }
    return build_event(
        regarding,
        type=type,  # type: ignore[arg-type]
        reason=reason,
        note="The agent is working.",
        action="Reconcile",
        instance="op-1",
        now=datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
    )


def test_a_few_events_pass_unchanged_and_the_rest_fold_into_one_series() -> None:
    series = EventSeries(individual=3, quiet=5.0, flush_every=10.0)
    passed = [series.offer(_event(f"pc-{i}"), now=0.1 * i) for i in range(10)]
    assert [e is not None for e in passed] == [True] * 3 + [False] * 7
    assert passed[0] is not None and passed[0]["regarding"]["name"] == "pc-0"
    assert "series" not in passed[0]

    writes = series.due(now=1.0)  # the first write of a series comes at once
    assert len(writes) == 1
    write = writes[0]
    assert not write.patch
    event = write.event
    assert event["series"]["count"] == 7
    assert event["regarding"]["name"] == "pc-3"  # the first one folded
    assert event["metadata"]["labels"][LABEL_SERIES] == "burst"
    assert names_in(event) == [f"pc-{i}" for i in range(3, 10)]
    assert "series.count" in event["note"] and len(event["note"]) <= 1024
    assert series.due(now=2.0) == []  # nothing new
    assert series.due(now=8.0) == []  # quiet: closed

    # A new burst after the quiet gap starts over: its first Events pass again.
    assert series.offer(_event("pc-late"), now=20.0) is not None


def test_series_are_per_reason_type_and_namespace() -> None:
    series = EventSeries(individual=1)
    assert series.offer(_event("a", "Working"), now=0) is not None
    assert series.offer(_event("b", "Dispatching"), now=0) is not None
    assert series.offer(_event("c", "Working", namespace="other"), now=0) is not None
    assert series.offer(_event("d", "Failed", type="Warning"), now=0) is not None
    assert series.offer(_event("e", "Working"), now=0) is None
    assert series.offer(_event("f", "Dispatching"), now=0) is None
    writes = series.due(now=100, flush_all=True)
    assert sorted(w.event["reason"] for w in writes) == ["Dispatching", "Working"]
    assert all("series" not in w.event for w in writes)  # one folded: no series (count must be >= 2)
    assert sorted(names_in(w.event)[0] for w in writes) == ["e", "f"]


def test_a_long_burst_is_written_every_flush_every_then_patched_with_the_count() -> None:
    series = EventSeries(individual=0, quiet=5.0, flush_every=10.0)
    writes = []
    t = 0.0
    for i in range(30):  # one every 0.5 s for 15 s: never quiet
        assert series.offer(_event(f"pc-{i}"), now=t) is None
        writes += series.due(now=t)
        t += 0.5
    assert len(writes) == 2  # at 0 s (the first flush) and at 10 s
    first = writes[0]
    assert not first.patch and first.event["metadata"]["annotations"][ANNOTATION_POLECATS] == "pc-0"
    assert writes[1].patch and writes[1].event["series"]["count"] == 21  # offered at 0.0 .. 10.0
    later = series.due(now=t + 6)
    assert len(later) == 1 and later[0].patch
    assert later[0].name == first.name
    body = later[0].patch_body()
    assert body["series"]["count"] == 30
    assert set(body) == {"metadata", "series"}  # the note of a v1 Event is immutable: not patched
    assert len(names_in(later[0].event)) == 30


def test_names_are_bounded_but_the_count_is_exact() -> None:
    series = EventSeries(individual=0, max_names=5)
    for i in range(12):
        series.offer(_event(f"pc-{i}"), now=0)
    (write,) = series.due(now=0, flush_all=True)
    assert write.event["series"]["count"] == 12
    assert write.event["metadata"]["annotations"][ANNOTATION_POLECATS].endswith(",+7 more")
    assert names_in(write.event) == [f"pc-{i}" for i in range(5)]
    assert series.folded_total == 12
