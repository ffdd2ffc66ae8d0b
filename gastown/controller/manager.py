"""The manager: wires every part of the operator process and owns every task.

One asyncio process, four parts (see ARCHITECTURE.md):

* the **ops server** (``/healthz``, ``/readyz``, ``/metrics``) and the **admission
  webhook** run on every replica, leader or not;
* the **engine** — informers for Polecats and the Pods the operator owns, the work
  queue, the workers running the :class:`~gastown.controller.reconciler.Reconciler` —
  runs only on the leader (or always, with leader election off). Workers start only
  once both caches are synced, so no reconcile ever acts on a half-listed world;
* the **leader elector** starts the engine on winning the Lease and stops it on losing.

Every long-lived task lives in one tree of anyio task groups rooted in the manager, and
any of them ending unasked takes the process down for a restart (readiness fails first):
see :mod:`gastown.controller.supervisor` for the tree and the policy.

Shutdown (SIGTERM/SIGINT, or :meth:`Manager.stop`) goes in the order that keeps work
safe: stop taking work and let in-flight reconciles finish within
``settings.shutdown_grace``; close the watches; only then release the Lease (a
standby must not start reconciling while we still are); flush Events; cancel the root
task group; close executor sessions (``Executor.aclose``); stop serving; close the API
client if the manager made it.

Executors are chosen by ``spec.executionMode`` from a mapping. By default the manager
builds the real ones (kubernetes always; local when an SSH target is configured);
tests pass their own mapping to exercise the engine alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import anyio
import anyio.abc
from kubernetes_asyncio import client as k8s_client
from prometheus_client import REGISTRY, CollectorRegistry

from gastown.api import convoy as convoy_api
from gastown.api.models import GROUP, LABEL_POLECAT, PLURAL, VERSION, ExecutionMode
from gastown.api.rig import PLURAL as RIG_PLURAL
from gastown.controller.capacity import RigCapacity
from gastown.controller.claims import BeadClaims
from gastown.controller.convoys import ConvoyController
from gastown.controller.events import EventRecorder
from gastown.controller.informer import Informer, InformerOptions, ResourceKind, WatchEvent
from gastown.controller.leaderelection import LeaderElector, LeaseConfig
from gastown.controller.metrics import ControllerMetrics
from gastown.controller.ops import OpsServer
from gastown.controller.reconciler import Reconciler, ReconcilerOptions
from gastown.controller.rigstatus import RigStatusWriter
from gastown.controller.supervisor import Supervisor, TaskDiedError
from gastown.controller.workqueue import Outcome, WorkerPool, WorkQueue
from gastown.executors.base import Executor, TransientError
from gastown.executors.kubernetes.observer import slim_pod
from gastown.executors.kubernetes.pod import pod_name_for
from gastown.kube import KubeClient, load_api_client
from gastown.metrics import ServingMetrics, SSHObserver
from gastown.settings import Settings

logger = logging.getLogger(__name__)

MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=gastown-operator"
POLECATS = ResourceKind(GROUP, VERSION, PLURAL)
PODS = ResourceKind("", "v1", "pods")
RIGS = ResourceKind(GROUP, VERSION, RIG_PLURAL)
CONVOYS = ResourceKind(GROUP, VERSION, convoy_api.PLURAL)
CONVOY_WORKERS = 2
"""Workers for Convoy rounds (their own queue: see :mod:`gastown.controller.convoys`)."""
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

PodLookup = Callable[[str, str], "dict[str, Any] | None"]


class Service(Protocol):
    """Something the manager runs on every replica (the webhook server).

    ``start`` binds and returns; ``run`` is its long-lived task (supervised, cancelled
    at shutdown); ``stop`` unbinds.
    """

    async def start(self) -> None: ...
    async def run(self) -> None: ...
    async def stop(self) -> None: ...


def slim_polecat(obj: dict[str, Any]) -> dict[str, Any]:
    """Cache form of a Polecat: everything but managedFields and kubectl's last-applied copy."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and _LAST_APPLIED in annotations:
            annotations.pop(_LAST_APPLIED)
            if not annotations:
                meta.pop("annotations")
    return obj


def _pod_transform(pod: dict[str, Any]) -> dict[str, Any]:
    """The executor's Pod slimmer, keeping what maps a Pod to its Polecat."""
    raw_meta = pod.get("metadata") or {}
    owners = [o for o in raw_meta.get("ownerReferences") or [] if o.get("kind") == "Polecat"]
    label = (raw_meta.get("labels") or {}).get(LABEL_POLECAT)
    slim = slim_pod(pod)
    meta = slim.setdefault("metadata", {})
    if owners and "ownerReferences" not in meta:
        meta["ownerReferences"] = [
            {"kind": "Polecat", "name": o.get("name"), "uid": o.get("uid")} for o in owners
        ]
    if label is not None:
        labels = meta.setdefault("labels", {})
        labels.setdefault(LABEL_POLECAT, label)
    return slim


def _undispatched(obj: dict[str, Any]) -> bool:
    """A live Polecat with nothing started: no status, or Pending without a startTime."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = obj.get("status") or {}
    return not status.get("startTime") and status.get("phase", "Pending") == "Pending"


def owner_polecat_key(pod: dict[str, Any]) -> str | None:
    """The ``namespace/name`` of the Polecat a Pod belongs to (owner reference, else label)."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace")
    if not namespace:
        return None
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "Polecat" and owner.get("name"):
            return f"{namespace}/{owner['name']}"
    label = (meta.get("labels") or {}).get(LABEL_POLECAT)
    return f"{namespace}/{label}" if label else None


def default_executors(
    settings: Settings,
    client: KubeClient,
    pods: PodLookup,
    ssh_observer: SSHObserver | None = None,
) -> dict[ExecutionMode, Executor]:
    """The real executors: kubernetes always, local when an SSH target is configured."""
    from gastown.executors.kubernetes.executor import KubernetesExecutor  # noqa: PLC0415 - heavy, optional

    executors: dict[ExecutionMode, Executor] = {
        ExecutionMode.KUBERNETES: KubernetesExecutor(
            client, pods, settings.pod, check_references=settings.pod.check_references
        ),
    }
    if settings.local_mode_enabled:
        from gastown.executors.local.executor import LocalExecutor  # noqa: PLC0415 - needs asyncssh

        executors[ExecutionMode.LOCAL] = LocalExecutor(settings, ssh_observer=ssh_observer)
    return executors


def default_identity() -> str:
    """Leader identity: the Pod's hostname plus the pid (unique per process)."""
    return f"{socket.gethostname()}_{os.getpid()}"


class _Engine:
    """Informers + queue + workers for one leadership term, in one task group.

    :meth:`run` is the engine's task (the manager starts it under its supervisor): it
    opens the engine's group, starts both informers, and the workers once both caches
    are synced. :meth:`stop` lets in-flight reconciles finish within the grace period,
    then cancels the group's scope and waits for :meth:`run` to end.
    """

    def __init__(
        self,
        *,
        client: KubeClient,
        settings: Settings,
        executors: Mapping[ExecutionMode, Executor],
        recorder: EventRecorder,
        metrics: ControllerMetrics,
        supervisor: Supervisor,
        informer_options: InformerOptions,
        reconciler_options: ReconcilerOptions,
        on_synced: Callable[[], None],
    ) -> None:
        namespaces = list(settings.namespaces)
        self.polecats = Informer(
            client,
            POLECATS,
            namespaces=namespaces,
            transform=slim_polecat,
            options=informer_options,
            observer=metrics,
            name="polecats",
        )
        self.pods = Informer(
            client,
            PODS,
            namespaces=namespaces,
            label_selector=MANAGED_BY_SELECTOR,
            transform=_pod_transform,
            options=informer_options,
            observer=metrics,
            name="pods",
        )
        self.rigs = Informer(
            client,
            RIGS,
            namespaces=namespaces,
            transform=slim_polecat,
            options=informer_options,
            observer=metrics,
            name="rigs",
        )
        self.queue = WorkQueue(observer=metrics)
        self.claims = BeadClaims(wake=self.queue.add, rig_mode=self._rig_mode)
        self.capacity = RigCapacity(wake=self.queue.add, has_work=self._has_pod, on_change=self._rig_changed)
        self.rig_status = RigStatusWriter(client, self.rigs, self.capacity)
        self.workers = WorkerPool(
            self.queue,
            self._handle,
            workers=settings.workers,
            name="reconcile",
            expected_errors=(TransientError,),
        )
        self.polecats.add_handler(self._on_polecat)
        self.pods.add_handler(self._on_pod)
        self.rigs.add_handler(self._on_rig)
        # Convoys: their own informer, queue and workers; Polecat events wake their Convoy.
        self.convoys = Informer(
            client,
            CONVOYS,
            namespaces=namespaces,
            transform=slim_polecat,
            options=informer_options,
            observer=metrics,
            name="convoys",
        )
        self.convoy_queue = WorkQueue()
        self.convoy_controller = ConvoyController(
            client=client, convoys=self.convoys, queue=self.convoy_queue, recorder=recorder
        )
        self.convoy_workers = WorkerPool(
            self.convoy_queue,
            self.convoy_controller.reconcile,
            workers=CONVOY_WORKERS,
            name="convoy",
            expected_errors=(TransientError,),
        )
        self.reconciler = Reconciler(
            client=client,
            polecats=self.polecats,
            executors=executors,
            recorder=recorder,
            metrics=metrics,
            options=reconciler_options,
            claims=self.claims,
            rigs=self.rigs.get_by_name,
            capacity=self.capacity,
            on_write=self.convoy_controller.on_polecat_written,
        )
        self.polecats.add_handler(self.convoy_controller.on_polecat)
        self.convoys.add_handler(self.convoy_controller.on_convoy)
        self._supervisor = supervisor
        self._on_synced = on_synced
        self._scope: anyio.CancelScope | None = None
        self._stopping = False
        self._ended = asyncio.Event()
        self.started = asyncio.Event()

    async def _handle(self, key: str) -> Outcome:
        return await self.reconciler.reconcile(key)

    def _on_polecat(self, event: WatchEvent) -> None:
        # Nothing started yet: its round creates the work, so it goes before status-only rounds.
        self.queue.add(event.key, urgent=event.type != "DELETED" and _undispatched(event.obj))
        self.claims.on_event(event)  # one that left a bead claim wakes those waiting on it
        self.capacity.on_polecat_event(event)  # one that finished frees a Rig slot for the next

    def _on_rig(self, event: WatchEvent) -> None:
        # New limits and defaults: its undispatched Polecats look again, and their bead
        # claims are re-scoped (a mode left to the Rig may have changed with it).
        for key in self.capacity.on_rig_event(event):
            raw = self.polecats.get(key)
            if raw is not None:
                self.claims.on_write(raw)

    def _rig_changed(self, rig: tuple[str, str]) -> None:
        if self.rigs.cached_resource_version(f"{rig[0]}/{rig[1]}") is not None:
            self.rig_status.mark(rig)  # only Rigs that exist get a status

    def _rig_mode(self, namespace: str, name: str) -> str | None:
        """The cached Rig's spec.executionMode (bead claims are scoped by mode)."""
        if self.rigs.cached_resource_version(f"{namespace}/{name}") is None:
            return None  # no Rig: no decoding (the Rig-less case costs nothing)
        rig = self.rigs.get_by_name(namespace, name) or {}
        mode = (rig.get("spec") or {}).get("executionMode")
        return mode if isinstance(mode, str) else None

    def _has_pod(self, key: str) -> bool:
        """Whether the Polecat ``key``'s agent Pod is in the Pod cache (work started)."""
        namespace, _, name = key.partition("/")
        return self.pods.cached_resource_version(f"{namespace}/{pod_name_for(name)}") is not None

    def _on_pod(self, event: WatchEvent) -> None:
        key = owner_polecat_key(event.obj)
        if key is not None:
            self.queue.add(key)

    @property
    def synced(self) -> bool:
        informers = (self.polecats, self.pods, self.rigs, self.convoys)
        return all(informer.synced.is_set() for informer in informers)

    async def run(self) -> None:
        """The engine's task: informers, then workers once synced; ends when stopped."""
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                if self._stopping:
                    group.cancel_scope.cancel()
                supervise = self._supervisor.start
                supervise(group, "informer-polecats", self.polecats.run)
                supervise(group, "informer-pods", self.pods.run)
                supervise(group, "informer-rigs", self.rigs.run)
                supervise(group, "informer-convoys", self.convoys.run)
                await self.polecats.synced.wait()
                await self.pods.synced.wait()
                await self.rigs.synced.wait()
                await self.convoys.synced.wait()
                logger.info(
                    "caches synced (%d polecats, %d pods, %d rigs); starting %d workers",
                    len(self.polecats),
                    len(self.pods),
                    len(self.rigs),
                    self.workers.size,
                )
                supervise(group, "rig-status", self.rig_status.run)
                supervise(group, "workers", self.workers.run, may_return=lambda: self._stopping)
                supervise(group, "convoy-workers", self.convoy_workers.run, may_return=lambda: self._stopping)
                self.started.set()
                self._on_synced()
                await anyio.sleep_forever()
        finally:
            self._ended.set()

    def may_end(self) -> bool:
        """Whether the engine's task ending now is expected (it is being stopped)."""
        return self._stopping

    async def stop(self, grace: float) -> None:
        """Drain the workers within ``grace`` seconds, then cancel the engine's group."""
        self._stopping = True
        await asyncio.gather(self.workers.stop(grace), self.convoy_workers.stop(grace))
        if self._scope is not None:
            self._scope.cancel()
            await self._ended.wait()


class Manager:
    """Runs the operator process (see the module doc).

    ``api``: an ApiClient to use (tests share the lab's); when None the manager loads
    one from the settings and closes it at the end. ``executors``: the mode → executor
    mapping; when None the real executors are built. ``webhook``: a service to run on
    every replica; when None and ``settings.webhook_enabled``, the real webhook server.

    :meth:`start` opens the root task group in a task the manager owns (so that
    :meth:`start` and :meth:`stop` may be called from different tasks, as test fixtures
    do); :meth:`stop` cancels it. :attr:`failure` is the first supervised task that died
    (see :mod:`gastown.controller.supervisor`); :meth:`run` raises it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        api: k8s_client.ApiClient | None = None,
        executors: Mapping[ExecutionMode, Executor] | None = None,
        webhook: Service | None = None,
        informer_options: InformerOptions | None = None,
        reconciler_options: ReconcilerOptions | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.identity = settings.identity or default_identity()
        self._api = api
        self._owns_api = api is None
        self._executors_override = executors
        self._executors: dict[ExecutionMode, Executor] = {}
        self._webhook = webhook
        self._informer_options = informer_options or InformerOptions()
        # Timeouts that are operator settings (GASTOWN_HOST_UNREACHABLE_TIMEOUT, _NODE_LOST_TIMEOUT).
        self._reconciler_options = replace(
            reconciler_options or ReconcilerOptions(),
            host_unreachable_timeout=settings.host_unreachable_timeout,
            node_lost_timeout=settings.node_lost_timeout,
        )
        self.registry = registry or CollectorRegistry()
        self.metrics = ControllerMetrics(self.registry)
        self.serving_metrics = ServingMetrics(self.registry)
        self.supervisor = Supervisor(self._on_task_death, self.metrics)
        self.failure: TaskDiedError | None = None
        self._failed = asyncio.Event()
        self._client: KubeClient | None = None
        self._recorder: EventRecorder | None = None
        self._ops: OpsServer | None = None
        self._elector: LeaderElector | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._root: asyncio.Task[None] | None = None
        self.engine: _Engine | None = None
        self._synced = asyncio.Event()
        self._engine_lock = asyncio.Lock()
        self._started = False
        self._stopped = False

    # -- introspection ----------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs the engine now."""
        return self.engine is not None

    @property
    def ops_ports(self) -> dict[str, int]:
        """Bound ports of the ops server (``health``, ``metrics``)."""
        return dict(self._ops.ports) if self._ops is not None else {}

    def ready(self) -> tuple[bool, str]:
        """Readiness: caches synced when running the engine; standing by otherwise."""
        if self.failure is not None:
            return False, f"shutting down: {self.failure}"
        if not self._started or self._stopped:
            return False, "not running"
        engine = self.engine
        if engine is not None:
            return (True, "leader: caches synced") if engine.synced else (False, "leader: caches syncing")
        if self._elector is not None:
            return True, "standby: waiting for the leader lease"
        return False, "engine not running"

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached Pod ``namespace/name`` (for the kubernetes executor)."""
        engine = self.engine
        return engine.pods.get_by_name(namespace, name) if engine is not None else None

    # -- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, run until SIGTERM/SIGINT (or ``stop`` is set), then stop gracefully.

        Raises :class:`TaskDiedError` when a supervised task died (after the graceful
        shutdown), so the process exits non-zero and is restarted.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        try:
            await self.start()
            async with anyio.create_task_group() as waiting:
                for event in (stop, self._failed):
                    waiting.start_soon(_set_then_cancel, event, waiting.cancel_scope)
            logger.info("shutting down")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()
        if self.failure is not None:
            raise self.failure

    def _on_task_death(self, death: TaskDiedError) -> None:
        if self.failure is None:
            self.failure = death
        self._failed.set()

    async def start(self) -> None:
        """Start serving, and the engine or the campaign for the Lease."""
        if self._started:
            return
        self._started = True
        settings = self.settings
        if self._api is None:
            self._api = await load_api_client(settings.kubeconfig)
        self._client = KubeClient(self._api)
        self._recorder = EventRecorder(self._client, instance=self.identity, observer=self.metrics)
        if self._executors_override is not None:
            self._executors = dict(self._executors_override)
        else:
            self._executors = default_executors(settings, self._client, self.pod, self.serving_metrics.ssh)
        self.metrics.watch_polecats(self._cached_polecats)

        self._ops = OpsServer(
            host="0.0.0.0",
            health_port=settings.health_port,
            metrics_port=settings.metrics_port,
            ready=self.ready,
            registries=[self.registry, REGISTRY],
        )
        await self._ops.start()
        if self._webhook is None and settings.webhook_enabled:
            from gastown.webhook.server import WebhookServer  # noqa: PLC0415 - owned by the webhook package

            self._webhook = WebhookServer(settings, self._client, metrics=self.serving_metrics.webhook)
        if self._webhook is not None:
            await self._webhook.start()
        if settings.leader_election:
            self._elector = LeaderElector(
                self._client,
                LeaseConfig(
                    namespace=settings.operator_namespace,
                    name=settings.lease_name,
                    identity=self.identity,
                    lease_duration=settings.lease_duration,
                    renew_deadline=settings.renew_deadline,
                    retry_period=settings.retry_period,
                ),
                on_started_leading=self._start_engine,
                on_stopped_leading=self._stop_engine_after_loss,
            )
        opened = asyncio.Event()
        self._root = asyncio.create_task(self._serve(opened), name="operator")
        await opened.wait()
        if self._elector is None:
            await self._start_engine()

    async def _serve(self, opened: asyncio.Event) -> None:
        """The root task: one task group for every long-lived task of the process."""
        assert self._recorder is not None
        async with anyio.create_task_group() as group:
            self._group = group
            supervise = self.supervisor.start
            supervise(group, "events", self._recorder.run)
            if self._webhook is not None:
                supervise(group, "webhook", self._webhook.run)
            if self._elector is not None:
                # release() at shutdown ends the campaign: returning is expected then.
                supervise(group, "leader-election", self._elector.run, may_return=lambda: self._stopped)
            opened.set()
            await anyio.sleep_forever()

    async def wait_synced(self) -> None:
        """Wait until this replica runs the engine with its workers started."""
        await self._synced.wait()

    async def _start_engine(self) -> None:
        async with self._engine_lock:
            if self.engine is not None or self._stopped or self._group is None:
                return
            assert self._client is not None and self._recorder is not None
            engine = _Engine(
                client=self._client,
                settings=self.settings,
                executors=self._executors,
                recorder=self._recorder,
                metrics=self.metrics,
                supervisor=self.supervisor,
                informer_options=self._informer_options,
                reconciler_options=self._reconciler_options,
                on_synced=self._synced.set,
            )
            self.engine = engine
            self.supervisor.start(self._group, "engine", engine.run, may_return=engine.may_end)
            self.metrics.leader.set(1)
            logger.info("engine started", extra={"identity": self.identity})

    async def _stop_engine(self, grace: float) -> None:
        async with self._engine_lock:
            engine, self.engine = self.engine, None
            if engine is None:
                return
            self._synced.clear()
            self.metrics.leader.set(0)
            await engine.stop(grace)
            logger.info("engine stopped", extra={"identity": self.identity})

    async def _stop_engine_after_loss(self) -> None:
        # Another replica may lead once the lease runs out: finish quickly.
        margin = max(self.settings.lease_duration - self.settings.renew_deadline - 1.0, 0.0)
        await self._stop_engine(min(self.settings.shutdown_grace, margin))

    def _cached_polecats(self) -> list[dict[str, Any]]:
        engine = self.engine
        return list(engine.polecats.values()) if engine is not None else []

    async def stop(self) -> None:
        """Graceful shutdown (see the module doc); idempotent.

        The graceful part (drain the workers, release the Lease, flush Events) runs in
        one cancel scope bounded by ``settings.shutdown_grace`` plus a few seconds for
        the Lease and the Events; then the root group is cancelled.
        """
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        grace = self.settings.shutdown_grace
        with anyio.move_on_after(grace + _RELEASE_AND_FLUSH) as scope:
            await self._stop_engine(grace)
            if self._elector is not None:
                await self._elector.release()
            if self._recorder is not None:
                await self._recorder.close(grace=2.0)
        if scope.cancelled_caught:
            logger.warning("graceful shutdown took longer than %.1fs; cancelling", grace + _RELEASE_AND_FLUSH)
        await self._shutdown_rest()

    async def abort(self) -> None:
        """Stop as a crash would, for tests: no lease release, no grace, no Event flush."""
        if self._stopped:
            return
        self._stopped = True
        await self._stop_engine(0.0)
        await self._shutdown_rest()

    async def _shutdown_rest(self) -> None:
        if self._group is not None:
            self._group.cancel_scope.cancel()
        if self._root is not None:
            await self._root
        for executor in {id(e): e for e in self._executors.values()}.values():
            try:
                await executor.aclose()
            except Exception:
                logger.exception("closing the %s executor failed", type(executor).__name__)
        if self._webhook is not None:
            with contextlib.suppress(Exception):
                await self._webhook.stop()
        if self._ops is not None:
            await self._ops.stop()
        if self._owns_api and self._api is not None:
            await self._api.close()


_RELEASE_AND_FLUSH = 5.0
"""Seconds on top of the grace period for releasing the Lease and flushing Events."""


async def _set_then_cancel(event: asyncio.Event, scope: anyio.CancelScope) -> None:
    """Wait for ``event``, then cancel ``scope`` (the first of several events wins)."""
    await event.wait()
    scope.cancel()
