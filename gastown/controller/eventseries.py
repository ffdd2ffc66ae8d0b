"""A burst of like Events becomes one series per reason, with its count kept.

Why: a burst of 1,000 Polecats wrote 2,000 Events (Dispatching, Working), each costing
the apiserver about what a status write costs, on a control plane that is the
bottleneck of the burst. client-go's ``EventCorrelator`` answers the same problem:
the first 10 similar Events of a window are sent one by one, the rest are folded
into one aggregate Event that carries a count. events.k8s.io's ``EventSeries``
(``series.count``, ``series.lastObservedTime``) is where v1 Events keep that count.

What this module does (pure: the caller passes the monotonic clock, nothing is sent
here). Events with the same namespace, type, reason, action and reporter are one
**series** while they keep arriving within ``quiet`` seconds of each other (a burst).

* The first ``individual`` Events of a series pass through unchanged, each about its
  own Polecat: a handful of Polecats at a time get their own Events, as before.
* The rest are **folded**: not sent, counted. One series Event stands for them: it is
  about the first Polecat folded in, its note says it stands for a burst, its
  ``series.count`` is the number folded, and its annotation
  :data:`ANNOTATION_POLECATS` names every one of them (up to ``max_names``; the count
  stays exact beyond), so ``gastown describe`` can show it for each Polecat.
* The series Event is written when the burst goes quiet and at most every
  ``flush_every`` seconds while it grows: created once, then patched (only
  ``series`` and the annotation change: a v1 Event's note is immutable).

Nothing is lost that the user could act on: the Polecat's status (phase, conditions
with transition times) is the record of each Polecat; this only decides how many
Event objects describe a burst.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ANNOTATION_POLECATS = "gastown.gastown.io/polecats"
"""Comma-separated names of the Polecats a series Event stands for."""
LABEL_SERIES = "gastown.gastown.io/event-series"
"""Set (to ``burst``) on series Events, so a client can list them with a label selector."""
SERIES_VALUE = "burst"

SeriesKey = tuple[str, str, str, str, str, str]


def series_key(event: dict[str, Any]) -> SeriesKey:
    """What makes Events alike: namespace, type, reason, action and reporter (not the object)."""
    return (
        str(event["metadata"].get("namespace", "")),
        str(event.get("type", "")),
        str(event.get("reason", "")),
        str(event.get("action", "")),
        str(event.get("reportingController", "")),
        str(event.get("reportingInstance", "")),
    )


@dataclass(frozen=True, slots=True)
class SeriesWrite:
    """One write of a series Event: create it (``patch`` False) or patch the one created."""

    event: dict[str, Any]
    patch: bool

    @property
    def name(self) -> str:
        return str(self.event["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.event["metadata"]["namespace"])

    def patch_body(self) -> dict[str, Any]:
        """The merge patch that brings a created series Event up to date."""
        body: dict[str, Any] = {"metadata": {"annotations": self.event["metadata"]["annotations"]}}
        if "series" in self.event:
            body["series"] = self.event["series"]
        return body


@dataclass
class _Series:
    last_seen: float
    passed: int = 0
    folded: int = 0
    template: dict[str, Any] | None = None  # the series Event, from the first one folded
    names: list[str] = field(default_factory=list)
    last_observed: str = ""
    written: bool = False  # created on the apiserver (then patched)
    dirty: bool = False
    last_flush: float = float("-inf")  # the first write comes at once, then every flush_every


class EventSeries:
    """Folds bursts of like Events into series (see the module doc)."""

    def __init__(
        self,
        *,
        individual: int = 10,
        quiet: float = 5.0,
        flush_every: float = 10.0,
        max_names: int = 2000,
    ) -> None:
        self.individual = individual
        self.quiet = quiet
        self.flush_every = flush_every
        self.max_names = max_names
        self._series: dict[SeriesKey, _Series] = {}
        self.folded_total = 0

    def offer(self, event: dict[str, Any], *, now: float) -> dict[str, Any] | None:
        """The Event to send now, or None when it was folded into its series."""
        key = series_key(event)
        series = self._series.get(key)
        if series is None or (now - series.last_seen > self.quiet and not series.dirty):
            series = self._series[key] = _Series(last_seen=now)
        series.last_seen = now
        if series.passed < self.individual and series.template is None:
            series.passed += 1
            return event
        self._fold(series, event)
        return None

    def _fold(self, series: _Series, event: dict[str, Any]) -> None:
        self.folded_total += 1
        series.folded += 1
        series.dirty = True
        series.last_observed = str(event.get("eventTime", ""))
        name = str((event.get("regarding") or {}).get("name", ""))
        if len(series.names) < self.max_names and name:
            series.names.append(name)
        if series.template is None:
            template = copy.deepcopy(event)
            reason = template.get("reason", "")
            namespace = template["metadata"].get("namespace", "")
            note = str(template.get("note", ""))
            suffix = (
                f" [A burst: this Event stands for every Polecat in namespace {namespace} that had a "
                f"{reason} Event while it lasted, beyond the first {self.individual} (their own Events); "
                f"series.count is how many, annotation {ANNOTATION_POLECATS} names them.]"
            )
            template["note"] = note[: 1024 - len(suffix)] + suffix
            labels = template["metadata"].setdefault("labels", {})
            labels[LABEL_SERIES] = SERIES_VALUE
            series.template = template

    def due(self, *, now: float, flush_all: bool = False) -> list[SeriesWrite]:
        """Series Events to write now: bursts gone quiet, and growing ones every ``flush_every``."""
        writes: list[SeriesWrite] = []
        for key, series in list(self._series.items()):
            quiet = now - series.last_seen > self.quiet
            if series.dirty and (flush_all or quiet or now - series.last_flush >= self.flush_every):
                writes.append(self._write(series))
                series.dirty = False
                series.last_flush = now
            if quiet and not series.dirty:
                del self._series[key]
        return writes

    def _write(self, series: _Series) -> SeriesWrite:
        assert series.template is not None
        event = copy.deepcopy(series.template)
        more = series.folded - len(series.names)
        names = ",".join(series.names) + (f",+{more} more" if more > 0 else "")
        event["metadata"].setdefault("annotations", {})[ANNOTATION_POLECATS] = names
        if series.folded >= 2:  # the apiserver wants a series to count at least 2
            event["series"] = {
                "count": series.folded,
                "lastObservedTime": series.last_observed or _micro_now(),
            }
        write = SeriesWrite(event=event, patch=series.written)
        series.written = True
        return write

    def pending(self) -> int:
        """Series with folded Events not yet written."""
        return sum(s.dirty for s in self._series.values())


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def names_in(event: dict[str, Any]) -> list[str]:
    """The Polecat names a series Event stands for (empty for an ordinary Event)."""
    raw = ((event.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_POLECATS, "")
    return [n for n in str(raw).split(",") if n and not n.startswith("+")]
