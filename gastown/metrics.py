"""Prometheus metrics of the operator's serving parts: the admission webhook and the SSH pool.

The reconcile engine's metrics live next to it in :mod:`gastown.controller.metrics`
(per-manager registry); this module adds the two parts that sit outside the engine, in
the same shape: a class per part that registers its metrics on a registry it is given
(never the process-global one implicitly, so two operators in one test process do not
collide) and offers small ``on_*`` hooks, so :mod:`gastown.webhook.server` and
:mod:`gastown.executors.local.ssh` can report without importing Prometheus.

Names follow the ecosystem (controller-runtime's ``controller_runtime_webhook_*``,
client-go's ``rest_client_*``), prefixed ``gastown_``, base units (seconds), counters
ending in ``_total``. Label values are bounded sets: admission operations, HTTP codes,
the field a denial names (list indices folded to ``*``), program names, the executors'
error reasons.

The whole catalogue, with where each metric lives:

===============================================  =====================================
``gastown_reconcile_total{result}``               controller.metrics (reconciler)
``gastown_reconcile_errors_total``                controller.metrics (reconciler)
``gastown_reconcile_duration_seconds{result}``    controller.metrics (reconciler)
``gastown_workqueue_depth``                       controller.metrics (work queue)
``gastown_workqueue_adds_total``                  controller.metrics (work queue)
``gastown_workqueue_queue_duration_seconds``      controller.metrics (work queue)
``gastown_workqueue_retries_total``               controller.metrics (work queue)
``gastown_watch_restarts_total{informer,reason}`` controller.metrics (informers)
``gastown_polecats{phase,mode}``                  controller.metrics (cache, at scrape)
``gastown_dispatch_latency_seconds{mode}``        controller.metrics (reconciler)
``gastown_time_to_done_seconds{mode}``            controller.metrics (reconciler)
``gastown_webhook_*``                             here, :class:`WebhookMetrics`
``gastown_ssh_*``                                 here, :class:`SSHMetrics`
===============================================  =====================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import PurePosixPath
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Admission reviews answer in milliseconds; the apiserver gives up at 10s (default timeout).
WEBHOOK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Remote commands: a tmux has-session is milliseconds, a gt sling may take many seconds.
SSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_INDEX = re.compile(r"\.\d+(?=\.|$)")


def denial_field(error: str) -> str:
    """The field a rule's message names (``spec.kubernetes.tolerations.*.key``), for a label.

    Rule messages start with the field path followed by ``: `` (see
    :mod:`gastown.webhook.rules`); list indices are folded so the label stays bounded.
    Messages that do not start with a path count as ``other``.
    """
    head, sep, _ = error.partition(": ")
    if not sep or " " in head or not head:
        return "other"
    return _INDEX.sub(".*", head)[:100]


def program_name(argv0: str) -> str:
    """``/usr/bin/tmux`` → ``tmux``: the remote program, as a bounded label value."""
    return PurePosixPath(argv0).name[:40] or "unknown"


# --------------------------------------------------------------------------------------
# Observer protocols (what the instrumented modules depend on; no Prometheus in them)
# --------------------------------------------------------------------------------------
class WebhookObserver(Protocol):
    """What the admission server reports."""

    def in_flight(self) -> AbstractContextManager[object]: ...

    def on_request(self, operation: str, code: int, seconds: float) -> None: ...

    def on_denied(self, operation: str, errors: Sequence[str]) -> None: ...


class SSHObserver(Protocol):
    """What the SSH pool reports."""

    def on_connect(self, ok: bool) -> None: ...

    def on_disconnect(self) -> None: ...

    def channel(self) -> AbstractContextManager[object]: ...

    def on_command(self, program: str, result: str, seconds: float) -> None: ...

    def on_failure(self, reason: str) -> None: ...


# --------------------------------------------------------------------------------------
# The metrics
# --------------------------------------------------------------------------------------
class WebhookMetrics:
    """``gastown_webhook_*``: admission reviews served by ``POST /validate-polecat``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Every review answered, by admission operation (CREATE, UPDATE, ...) and HTTP code.
        # Code 200 includes denials (AdmissionReview always answers 200); 400/413 are bad bodies.
        self.requests = Counter(
            "gastown_webhook_requests_total",
            "Admission reviews answered, by operation and HTTP status code.",
            ["operation", "code"],
            registry=registry,
        )
        # Time from request received to response written, as controller_runtime_webhook_latency_seconds.
        self.latency = Histogram(
            "gastown_webhook_request_duration_seconds",
            "Time to answer one admission review, by operation.",
            ["operation"],
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        )
        # Reviews being handled right now (a stuck lookup shows up here).
        self.in_flight_requests = Gauge(
            "gastown_webhook_requests_in_flight",
            "Admission reviews being handled now.",
            registry=registry,
        )
        # Denied reviews, by operation and the field of the first problem: which rule bites users.
        self.denials = Counter(
            "gastown_webhook_denials_total",
            "Admission reviews denied, by operation and the field the first problem names.",
            ["operation", "field"],
            registry=registry,
        )

    def in_flight(self) -> AbstractContextManager[object]:
        """Count a review as in flight for the duration of a ``with`` block."""
        return self.in_flight_requests.track_inprogress()

    def on_request(self, operation: str, code: int, seconds: float) -> None:
        """A review was answered with HTTP ``code`` after ``seconds``."""
        op = operation or "UNKNOWN"
        self.requests.labels(op, str(code)).inc()
        self.latency.labels(op).observe(seconds)

    def on_denied(self, operation: str, errors: Sequence[str]) -> None:
        """A review was denied with these rule messages."""
        field = denial_field(errors[0]) if errors else "other"
        self.denials.labels(operation or "UNKNOWN", field).inc()


class SSHMetrics:
    """``gastown_ssh_*``: the local-mode connection pool to the operator host."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Connection attempts (one handshake each), by outcome: "success" or "failure".
        self.connections = Counter(
            "gastown_ssh_connections_total",
            "SSH connection attempts by result (success, failure).",
            ["result"],
            registry=registry,
        )
        # Connections currently open (the pool keeps one per target host).
        self.open_connections = Gauge(
            "gastown_ssh_connections_open", "SSH connections currently open.", registry=registry
        )
        # Channels in use on the pool's connections; at max_sessions, commands queue.
        self.channels_in_use = Gauge(
            "gastown_ssh_channels_in_use",
            "SSH channels (remote commands) in use; capped by GASTOWN_SSH_MAX_SESSIONS.",
            registry=registry,
        )
        # Remote commands run, by program (tmux, gt, ...) and result: ok, nonzero (the
        # program said no), timeout, dropped (connection lost mid-way).
        self.commands = Counter(
            "gastown_ssh_commands_total",
            "Remote commands run over SSH, by program and result (ok, nonzero, timeout, dropped).",
            ["program", "result"],
            registry=registry,
        )
        # Wall time of one remote command, channel open to exit status.
        self.command_duration = Histogram(
            "gastown_ssh_command_duration_seconds",
            "Time of one remote command over SSH, by program.",
            ["program"],
            buckets=SSH_BUCKETS,
            registry=registry,
        )
        # Failures by the executors' reason (SSHAuthFailed, HostKeyMismatch, SSHUnreachable,
        # SSHCommandTimeout, SSHConnectionLost, ...): the same words as the Events users see.
        self.failures = Counter(
            "gastown_ssh_failures_total",
            "SSH failures by reason (the reason of the executor error raised).",
            ["reason"],
            registry=registry,
        )

    def on_connect(self, ok: bool) -> None:
        """A handshake finished (``ok``) or failed."""
        self.connections.labels("success" if ok else "failure").inc()
        if ok:
            self.open_connections.inc()

    def on_disconnect(self) -> None:
        """An open connection was closed or discarded."""
        self.open_connections.dec()

    def channel(self) -> AbstractContextManager[object]:
        """Count a channel as in use for the duration of a ``with`` block."""
        return self.channels_in_use.track_inprogress()

    def on_command(self, program: str, result: str, seconds: float) -> None:
        """A remote command ended with ``result`` after ``seconds``."""
        name = program_name(program)
        self.commands.labels(name, result).inc()
        self.command_duration.labels(name).observe(seconds)

    def on_failure(self, reason: str) -> None:
        """An SSH operation raised an executor error with this reason."""
        self.failures.labels(reason or "Unknown").inc()


class ServingMetrics:
    """Both sets on one registry: what the manager builds next to its ControllerMetrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.webhook = WebhookMetrics(registry)
        self.ssh = SSHMetrics(registry)
