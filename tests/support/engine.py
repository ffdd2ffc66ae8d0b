"""Shared parts of the reconcile-engine lab tests: a stand-in executor, Polecats, helpers.

:class:`StandInExecutor` stands in for a real execution mode (tmux over SSH, or a Pod)
so the engine — informers, queue, reconciler, status, Events, leader election — is
tested alone against the real apiserver. Its "work" is an in-memory record per Polecat
that the test moves through phases; it counts every call so tests can prove that
nothing was dispatched twice. Everything else in these tests is real: the lab's
kube-apiserver and etcd, the CRD from ``crds/``, the status subresource, Events.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any

from kubernetes_asyncio import client

from gastown.api.models import GROUP, PLURAL, TERMINAL_PHASES, VERSION, ExecutionMode, Phase, Polecat
from gastown.api.paths import resource_path
from gastown.controller.informer import InformerOptions
from gastown.controller.manager import Manager
from gastown.controller.reconciler import ReconcilerOptions
from gastown.executors.base import Executor, Observation, Release
from gastown.kube import KubeClient
from gastown.settings import Settings
from tests.support.waiting import wait_for


class StandInExecutor:
    """Stands in for a real execution mode so the engine can be tested alone (see module doc).

    ``poll``: the requeue-after it asks for while work is unfinished (how a polling
    executor such as local mode behaves). ``auto_phase``: the phase work reaches on
    dispatch. Tests change a Polecat's work with :meth:`set_phase`, make calls fail
    with :attr:`fail_dispatch`, and hold deletions with :attr:`release_done`;
    :attr:`dispatch_times` has the monotonic time of every dispatch call, failed or not.
    """

    def __init__(
        self,
        *,
        needs_finalizer: bool = False,
        poll: float | None = 0.1,
        auto_phase: Phase = Phase.DISPATCHING,
        owner: str = "",
    ) -> None:
        self._needs_finalizer = needs_finalizer
        self.poll = poll
        self.auto_phase = auto_phase
        self.owner = owner
        self.work: dict[str, Phase] = {}
        self.dispatches: collections.Counter[str] = collections.Counter()
        self.terminations: collections.Counter[str] = collections.Counter()
        self.releases: collections.Counter[str] = collections.Counter()
        self.observes: collections.Counter[str] = collections.Counter()
        self.fail_dispatch: dict[str, list[Exception]] = {}
        self.dispatch_times: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
        self.release_done = True
        self.closed = False

    @property
    def needs_finalizer(self) -> bool:
        """As configured."""
        return self._needs_finalizer

    @property
    def finalizer_with_dispatch(self) -> bool:
        """No: the finalizer comes first, as in local mode."""
        return False

    def set_phase(self, key: str, phase: Phase) -> None:
        """Move the stand-in work of ``key`` (namespace/name) to ``phase``."""
        self.work[key] = phase

    def _observation(self, key: str) -> Observation:
        phase = self.work.get(key)
        requeue = self.poll if phase is not None and phase not in TERMINAL_PHASES else None
        return Observation(
            phase=phase,
            reason=f"StandIn{phase.value}" if phase is not None else "",
            message=f"stand-in work is {phase.value}" if phase is not None else "",
            requeue_after=requeue,
        )

    async def observe(self, polecat: Polecat) -> Observation:
        """What the stand-in work is doing."""
        self.observes[polecat.key] += 1
        return self._observation(polecat.key)

    async def dispatch(self, polecat: Polecat) -> Observation:
        """Start stand-in work (or raise an injected error)."""
        self.dispatch_times[polecat.key].append(time.monotonic())
        errors = self.fail_dispatch.get(polecat.key)
        if errors:
            raise errors.pop(0)
        self.dispatches[polecat.key] += 1
        self.work.setdefault(polecat.key, self.auto_phase)
        return self._observation(polecat.key)

    async def terminate(self, polecat: Polecat) -> Observation:
        """Stop stand-in work."""
        self.terminations[polecat.key] += 1
        self.work[polecat.key] = Phase.TERMINATED
        return self._observation(polecat.key)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        """Clean up, or refuse as local mode does with unpushed work."""
        self.releases[polecat.key] += 1
        if self.release_done or force:
            self.work.pop(polecat.key, None)
            return Release(done=True)
        return Release(
            done=False,
            reason="UnpushedWork",
            message="stand-in work has unpushed commits; push them or set force-delete",
        )

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        """No output."""
        if False:  # pragma: no cover - an empty async generator
            yield ""

    def attach_command(self, polecat: Polecat) -> list[str]:
        """Nothing to attach to."""
        return ["true"]

    async def aclose(self) -> None:
        """Record that the manager closed it."""
        self.closed = True


def engine_settings(namespace: str, **overrides: Any) -> Settings:
    """Settings for an engine under test: one namespace, no webhook, ephemeral ports."""
    values: dict[str, Any] = {
        "namespaces": [namespace],
        "operator_namespace": namespace,
        "workers": 4,
        "webhook_enabled": False,
        "leader_election": False,
        "health_port": 0,
        "metrics_port": 0,
        "shutdown_grace": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


FAST_INFORMERS = InformerOptions(watchdog=70.0, backoff_base=0.1, backoff_cap=1.0)
FAST_RECONCILER = ReconcilerOptions(user_error_requeue=2.0, release_requeue=0.3, dispatch_expectation=5.0)


def make_manager(
    api: client.ApiClient,
    namespace: str,
    executor: StandInExecutor,
    *,
    informer_options: InformerOptions = FAST_INFORMERS,
    reconciler_options: ReconcilerOptions = FAST_RECONCILER,
    **settings: Any,
) -> Manager:
    """A manager whose every mode runs on ``executor``."""
    return Manager(
        engine_settings(namespace, **settings),
        api=api,
        executors={ExecutionMode.LOCAL: executor, ExecutionMode.KUBERNETES: executor},
        informer_options=informer_options,
        reconciler_options=reconciler_options,
    )


def polecat_body(name: str, **spec: Any) -> dict[str, Any]:
    """A local-mode Polecat."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": "rig", "beadID": f"gt-{uuid.uuid4().hex[:6]}", **spec},
    }


def polecats_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """REST path of the namespace's Polecats, or one of them."""
    return resource_path(GROUP, VERSION, PLURAL, namespace=namespace, name=name, subresource=subresource)


async def create_polecat(kube: KubeClient, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """Create a Polecat; returns it as stored."""
    created: dict[str, Any] = await kube.create(polecats_path(namespace), polecat_body(name, **spec))
    return created


async def get_polecat(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    """Read a Polecat from the apiserver."""
    got: dict[str, Any] = await kube.get(polecats_path(namespace, name))
    return got


async def wait_phase(
    kube: KubeClient, namespace: str, name: str, phase: Phase, **kwargs: Any
) -> dict[str, Any]:
    """Wait until the stored Polecat has ``status.phase == phase``; return it."""

    async def check() -> dict[str, Any] | None:
        obj = await get_polecat(kube, namespace, name)
        return obj if (obj.get("status") or {}).get("phase") == phase.value else None

    result: dict[str, Any] = await wait_for(check, what=f"{namespace}/{name} phase {phase.value}", **kwargs)
    return result


async def list_events(kube: KubeClient, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """events.k8s.io/v1 Events in ``namespace`` (about ``name`` if given), oldest first."""
    listed = await kube.get(resource_path("events.k8s.io", "v1", "events", namespace=namespace))
    items = [
        e for e in listed.get("items") or [] if name is None or (e.get("regarding") or {}).get("name") == name
    ]
    return sorted(items, key=lambda e: str(e.get("eventTime") or ""))


def reconciles(manager: Manager, result: str | None = None) -> float:
    """How many reconciles ``manager`` finished (with ``result``, if given), from its metrics.

    A positive sign to wait on before asserting that a reconcile changed nothing.
    """
    return sum(
        sample.value
        for family in manager.registry.collect()
        for sample in family.samples
        if sample.name == "gastown_reconcile_total"
        and (result is None or sample.labels.get("result") == result)
    )


async def observe_until(
    executor: Executor, polecat: Polecat, phases: Collection[Phase], *, timeout: float = 30.0
) -> Observation:
    """Ask ``executor`` what runs for ``polecat`` until its phase is one of ``phases``; return that.

    For executor tests that run no reconciler: the executor's own view, polled.
    """

    async def check() -> Observation | None:
        observation = await executor.observe(polecat)
        return observation if observation.phase in phases else None

    found: Observation = await wait_for(
        check, timeout=timeout, what=f"{polecat.key} to reach one of {sorted(p.value for p in phases)}"
    )
    return found
