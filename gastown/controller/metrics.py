"""The reconcile engine's Prometheus metrics, on a registry owned by one manager.

Names follow the ecosystem's style (controller-runtime's ``*_reconcile_total``,
client-go's ``workqueue_*``), prefixed ``gastown_``. Each :class:`Manager` builds its
own :class:`ControllerMetrics` on its own ``CollectorRegistry`` so two managers in one
process (the leader-election tests) do not share counters; the ops server exposes that
registry together with the process-global one (where other parts may register).

The metrics objects also implement the observer hooks of the work queue, the
informers and the event recorder, so those modules stay free of Prometheus.
"""

from __future__ import annotations

from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LIFETIME_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)


class _PolecatsByPhase(Collector):
    """``gastown_polecats{phase,mode}``, counted from the cache at scrape time."""

    def __init__(self, source: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gastown_polecats",
            "Polecats in the operator's cache by phase and mode.",
            labels=["phase", "mode"],
        )
        tally: TallyCounter[tuple[str, str]] = TallyCounter()
        for obj in self._source():
            spec = obj.get("spec") or {}
            status = obj.get("status") or {}
            tally[(str(status.get("phase") or "Pending"), str(spec.get("executionMode") or "local"))] += 1
        for (phase, mode), count in sorted(tally.items()):
            family.add_metric([phase, mode], count)
        yield family


class ControllerMetrics:
    """Every metric of the engine, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconcile_total = Counter(
            "gastown_reconcile_total",
            "Reconciles by result (success, requeue, user_error, conflict, error).",
            ["result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "gastown_reconcile_errors_total", "Reconciles that raised and were retried.", registry=registry
        )
        self.reconcile_duration = Histogram(
            "gastown_reconcile_duration_seconds",
            "Time of one reconcile by result.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "gastown_workqueue_depth", "Keys waiting in the work queue.", registry=registry
        )
        self.queue_adds = Counter(
            "gastown_workqueue_adds_total", "Keys added to the work queue.", registry=registry
        )
        self.queue_retries = Counter(
            "gastown_workqueue_retries_total", "Keys re-added with backoff after an error.", registry=registry
        )
        self.queue_latency = Histogram(
            "gastown_workqueue_queue_duration_seconds",
            "Time a key waits in the queue before a worker takes it.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.watch_restarts = Counter(
            "gastown_watch_restarts_total",
            "Watch restarts by informer and reason (closed, watchdog, expired, error).",
            ["informer", "reason"],
            registry=registry,
        )
        self.relists = Counter(
            "gastown_informer_relists_total", "Full LISTs by informer.", ["informer"], registry=registry
        )
        self.watch_events = Counter(
            "gastown_informer_events_total",
            "Cache changes by informer and type.",
            ["informer", "type"],
            registry=registry,
        )
        self.dispatch_latency = Histogram(
            "gastown_dispatch_latency_seconds",
            "From a Polecat's creation to its work being dispatched (Pod created, session started).",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_done = Histogram(
            "gastown_time_to_done_seconds",
            "From a Polecat's creation to phase Done.",
            ["mode"],
            buckets=_LIFETIME_BUCKETS,
            registry=registry,
        )
        self.phase_transitions = Counter(
            "gastown_phase_transitions_total",
            "Polecat phase transitions by new phase.",
            ["phase"],
            registry=registry,
        )
        self.events_sent = Counter(
            "gastown_events_total",
            "Kubernetes Events written, by type and reason.",
            ["type", "reason"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "gastown_events_dropped_total", "Events dropped (queue full or write failed).", registry=registry
        )
        self.task_deaths = Counter(
            "gastown_task_deaths_total",
            "Long-lived tasks (informers, Event senders, elector, webhook) that ended unasked; "
            "each one shuts the process down for a restart.",
            ["task"],
            registry=registry,
        )
        self.leader = Gauge(
            "gastown_leader", "1 while this replica holds the leader lease.", registry=registry
        )

    def watch_polecats(self, source: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Expose ``gastown_polecats{phase,mode}`` computed from ``source`` at scrape time."""
        self.registry.register(_PolecatsByPhase(source))

    # -- WorkQueue observer ---------------------------------------------------------

    def on_add(self) -> None:
        """A key was added."""
        self.queue_adds.inc()

    def on_depth(self, depth: int) -> None:
        """The queue's depth changed."""
        self.queue_depth.set(depth)

    def on_retry(self) -> None:
        """A key was re-added with backoff."""
        self.queue_retries.inc()

    def on_wait(self, seconds: float) -> None:
        """A key waited ``seconds`` before a worker took it."""
        self.queue_latency.observe(seconds)

    # -- Informer observer ----------------------------------------------------------

    def on_relist(self, resource: str) -> None:
        """An informer listed everything."""
        self.relists.labels(resource).inc()

    def on_watch_restart(self, resource: str, reason: str) -> None:
        """An informer's watch ended and was restarted."""
        self.watch_restarts.labels(resource, reason).inc()

    def on_event(self, resource: str, type: str) -> None:
        """An informer's cache changed."""
        self.watch_events.labels(resource, type).inc()

    # -- EventRecorder observer -----------------------------------------------------

    def on_event_sent(self, type: str, reason: str) -> None:
        """An Event was written."""
        self.events_sent.labels(type, reason).inc()

    def on_event_dropped(self) -> None:
        """An Event was dropped."""
        self.events_dropped.inc()

    # -- supervisor ---------------------------------------------------------------

    def on_task_death(self, task: str) -> None:
        """A supervised task died."""
        self.task_deaths.labels(task=task).inc()
