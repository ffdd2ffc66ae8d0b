"""The real operator in the test process: a ``Manager`` with its real executors, on the lab.

End-to-end tests use this to run the whole reconcile path — informers, work queue,
reconciler, status writes, Events, and the real ``KubernetesExecutor`` /
``LocalExecutor`` the manager builds from its settings — against the lab's
kube-apiserver. Only the process boundary is skipped: the manager runs in the test's
event loop (leader election off, webhook off, ops ports ephemeral), so a test can read
its cache and metrics, and a failure shows the operator's traceback.

The wait helpers poll the apiserver (not the manager's cache): what a user sees with
``kubectl get`` is what the tests assert on. They time out with what they last saw,
and never assert on how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.paths import resource_path
from gastown.controller.informer import InformerOptions
from gastown.controller.manager import Manager
from gastown.controller.reconciler import ReconcilerOptions
from gastown.kube import KubeClient
from gastown.settings import Settings
from tests.support.engine import FAST_INFORMERS, list_events, polecats_path
from tests.support.waiting import wait_for

# Quick reaction for tests: user errors and blocked deletions are looked at again
# within seconds rather than the production minute.
E2E_RECONCILER = ReconcilerOptions(user_error_requeue=1.0, release_requeue=0.5, dispatch_expectation=5.0)


@contextlib.asynccontextmanager
async def running_operator(
    api: client.ApiClient,
    settings: Settings,
    *,
    informer_options: InformerOptions = FAST_INFORMERS,
    reconciler_options: ReconcilerOptions = E2E_RECONCILER,
) -> AsyncIterator[Manager]:
    """Start a Manager with the executors it builds itself; stop it gracefully at the end.

    After it stopped (so it cannot add them back), finalizers left on the namespaces'
    Polecats are dropped, so the test's namespace can be deleted afterwards: with no
    operator running, nothing else would ever remove them.
    """
    manager = Manager(
        settings, api=api, informer_options=informer_options, reconciler_options=reconciler_options
    )
    await manager.start()
    try:
        await asyncio.wait_for(manager.wait_synced(), 30)
        yield manager
    finally:
        await manager.stop()
        for namespace in settings.namespaces:
            await drop_finalizers(KubeClient(api), namespace)
    # No long-lived task may have died along the way (see gastown.controller.supervisor).
    assert manager.failure is None, f"the operator lost a task: {manager.failure}"


def pod_path(namespace: str, name: str | None = None) -> str:
    """REST path of the namespace's Pods, or of one of them."""
    return resource_path("", "v1", "pods", namespace=namespace, name=name)


async def get_or_none(kube: KubeClient, path: str) -> dict[str, Any] | None:
    """GET ``path``; None when it does not exist."""
    try:
        obj: dict[str, Any] = await kube.get(path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


async def drop_finalizers(kube: KubeClient, namespace: str) -> None:
    """Remove every finalizer from the namespace's Polecats (test teardown only)."""
    listed = await kube.get(polecats_path(namespace))
    for item in listed.get("items") or []:
        if item["metadata"].get("finalizers"):
            with contextlib.suppress(ApiException):
                await kube.merge_patch(
                    polecats_path(namespace, item["metadata"]["name"]), {"metadata": {"finalizers": None}}
                )


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The status conditions of ``obj`` by type."""
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def wait_status(
    kube: KubeClient,
    namespace: str,
    name: str,
    what: str,
    predicate: Any,
    *,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Wait until ``predicate(polecat)`` holds for the stored Polecat; return the Polecat."""

    async def check() -> dict[str, Any] | None:
        obj = await get_or_none(kube, polecats_path(namespace, name))
        return obj if obj is not None and predicate(obj) else None

    found: dict[str, Any] = await wait_for(check, timeout=timeout, what=f"{namespace}/{name}: {what}")
    return found


async def wait_gone(kube: KubeClient, path: str, *, timeout: float = 30.0) -> None:
    """Wait until ``path`` answers 404."""

    async def check() -> bool:
        return await get_or_none(kube, path) is None

    await wait_for(check, timeout=timeout, what=f"{path} to be gone")


async def wait_events(
    kube: KubeClient, namespace: str, name: str, reasons: set[str], *, timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Wait until Events with every one of ``reasons`` are recorded about ``name``.

    Events are sent in the background (best effort), so they are awaited, not
    expected at the moment the status changes. Returns the latest Event per reason.
    """

    async def check() -> dict[str, dict[str, Any]] | None:
        events = {e["reason"]: e for e in await list_events(kube, namespace, name)}
        return events if reasons <= events.keys() else None

    found: dict[str, dict[str, Any]] = await wait_for(
        check, timeout=timeout, what=f"Events {sorted(reasons)} about {namespace}/{name}"
    )
    return found
