"""The reconcile engine against the real apiserver, with a stand-in executor.

The executor is :class:`StandInExecutor` (tests/support/engine.py): it stands
in for a real execution mode so the engine is tested alone. Everything else is real:
kube-apiserver + etcd, the generated CRD with its status subresource, Events, and the
manager's informers, work queue, workers and ops server.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api import crd
from gastown.api.models import ANNOTATION_FORCE_DELETE, FINALIZER, ExecutionMode, Phase
from gastown.controller.manager import Manager
from gastown.devcluster.lab import Lab
from gastown.executors.base import TransientError, UserError
from gastown.kube import KubeClient
from tests.support.engine import (
    FAST_INFORMERS,
    FAST_RECONCILER,
    StandInExecutor,
    create_polecat,
    engine_settings,
    get_polecat,
    list_events,
    make_manager,
    polecats_path,
    reconciles,
    wait_phase,
)
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.lab


@pytest.fixture
def standin() -> StandInExecutor:
    return StandInExecutor()


@pytest.fixture
async def manager(
    kube: KubeClient, k8s_api: client.ApiClient, namespace: str, standin: StandInExecutor
) -> AsyncIterator[Manager]:
    mgr = make_manager(k8s_api, namespace, standin)
    await mgr.start()
    try:
        await asyncio.wait_for(mgr.wait_synced(), 30)
        yield mgr
    finally:
        await mgr.stop()


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def test_polecat_goes_through_phases_with_conditions_and_events(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    created = await create_polecat(kube, namespace, "alpha")
    key = f"{namespace}/alpha"

    dispatching = await wait_phase(kube, namespace, "alpha", Phase.DISPATCHING)
    status = dispatching["status"]
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert status["startTime"]
    conditions = _conditions(dispatching)
    assert conditions["Dispatched"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["observedGeneration"] == created["metadata"]["generation"]
    dispatched_at = conditions["Dispatched"]["lastTransitionTime"]

    standin.set_phase(key, Phase.WORKING)
    working = await wait_phase(kube, namespace, "alpha", Phase.WORKING)
    conditions = _conditions(working)
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "StandInWorking")
    assert conditions["Dispatched"]["lastTransitionTime"] == dispatched_at  # status unchanged: time kept

    standin.set_phase(key, Phase.DONE)
    done = await wait_phase(kube, namespace, "alpha", Phase.DONE)
    assert done["status"]["completionTime"]
    assert _conditions(done)["Ready"]["status"] == "True"
    assert standin.dispatches[key] == 1

    async def reasons() -> list[str] | None:
        got = [e["reason"] for e in await list_events(kube, namespace, "alpha")]
        return got if "StandInDone" in got or "Completed" in got else None

    got = await wait_for(reasons, what="the Completed event")
    assert got[:1] == ["Dispatching"]
    assert "Working" in got
    events = await list_events(kube, namespace, "alpha")
    assert all(e["reportingController"] == "gastown.gastown.io/operator" for e in events)
    assert all(e["regarding"]["uid"] == created["metadata"]["uid"] for e in events)


async def test_terminal_phase_is_never_redispatched_and_status_stays_quiet(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    key = f"{namespace}/beta"
    standin.auto_phase = Phase.DONE
    await create_polecat(kube, namespace, "beta")
    done = await wait_phase(kube, namespace, "beta", Phase.DONE)
    # One more look at the Done Polecat, so that nothing of its dispatch is still expected
    # (a recent dispatch would hold back a second one on its own, hiding a re-dispatch).
    assert manager.engine is not None
    looked = reconciles(manager)
    manager.engine.queue.add(key)
    await wait_until(lambda: reconciles(manager) > looked, what="one more reconcile of the Done Polecat")

    # The work record vanishes (a Pod garbage-collected, a session reaped): still Done.
    standin.work.pop(key)
    # (Only desiredState may change once dispatched; Working -> Terminated is allowed.)
    patched = await kube.merge_patch(
        polecats_path(namespace, "beta"), {"spec": {"desiredState": "Terminated"}}
    )
    assert patched["metadata"]["generation"] == done["metadata"]["generation"] + 1

    async def regenerated() -> dict[str, Any] | None:
        obj = await get_polecat(kube, namespace, "beta")
        return obj if obj["status"].get("observedGeneration") == patched["metadata"]["generation"] else None

    obj = await wait_for(regenerated, what="observedGeneration to follow the spec edit")
    assert obj["status"]["phase"] == "Done"
    assert obj["status"]["completionTime"] == done["status"]["completionTime"]
    assert standin.dispatches[key] == 1

    # Level-based, but quiet: more reconciles of an unchanged object write nothing.
    rv = obj["metadata"]["resourceVersion"]
    for _ in range(5):
        before = reconciles(manager)
        manager.engine.queue.add(key)
        await wait_until(lambda n=before: reconciles(manager) > n, what="the requested reconcile to finish")
    assert (await get_polecat(kube, namespace, "beta"))["metadata"]["resourceVersion"] == rv


async def test_desired_terminated_stops_work_and_keeps_the_record(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    key = f"{namespace}/gamma"
    standin.auto_phase = Phase.WORKING
    await create_polecat(kube, namespace, "gamma")
    await wait_phase(kube, namespace, "gamma", Phase.WORKING)

    await kube.merge_patch(polecats_path(namespace, "gamma"), {"spec": {"desiredState": "Terminated"}})
    terminated = await wait_phase(kube, namespace, "gamma", Phase.TERMINATED)
    assert standin.terminations[key] == 1
    ready = _conditions(terminated)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "StandInTerminated")
    assert terminated["status"]["completionTime"]

    # Asking for work again is refused at admission (CEL): a stopped Polecat does not resume.
    with pytest.raises(ApiException) as refused:
        await kube.merge_patch(polecats_path(namespace, "gamma"), {"spec": {"desiredState": "Working"}})
    assert refused.value.status == 422
    assert crd.MSG_NO_RESUME in str(refused.value.body)
    obj = await get_polecat(kube, namespace, "gamma")
    assert obj["spec"]["desiredState"] == "Terminated" and obj["status"]["phase"] == "Terminated"
    assert standin.dispatches[key] == 1


async def test_terminated_before_dispatch_never_starts(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    await create_polecat(kube, namespace, "delta", desiredState="Terminated")
    obj = await wait_phase(kube, namespace, "delta", Phase.TERMINATED)
    assert standin.dispatches[f"{namespace}/delta"] == 0
    assert standin.terminations[f"{namespace}/delta"] == 0
    assert _conditions(obj)["Dispatched"]["status"] == "False"


async def test_user_error_goes_to_status_without_a_retry_storm(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    key = f"{namespace}/eps"
    standin.fail_dispatch[key] = [
        UserError("SecretNotFound", "Secret 'git-key' not found in namespace; create it or fix gitSecretRef")
    ] * 1000

    await create_polecat(kube, namespace, "eps")

    async def failed() -> dict[str, Any] | None:
        obj = await get_polecat(kube, namespace, "eps")
        ready = _conditions(obj).get("Ready")
        return obj if ready and ready["reason"] == "SecretNotFound" else None

    obj = await wait_for(failed, what="the user error in status")
    ready = _conditions(obj)["Ready"]
    assert ready["status"] == "False"
    assert "git-key" in ready["message"]
    assert obj["status"]["phase"] == "Pending"

    # Looked at again slowly (user_error_requeue=2s in these tests), not in a backoff loop:
    # wait for three more attempts, then check how far apart they came. A slow machine
    # only spreads them further; a backoff loop would bunch them within milliseconds.
    # (One short gap is allowed: the status write itself wakes one more reconcile.)
    seen = len(standin.dispatch_times[key])
    await wait_until(
        lambda: len(standin.dispatch_times[key]) >= seen + 3, what="three more looks", timeout=30
    )
    times = standin.dispatch_times[key][seen - 1 :]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert sum(gap < 1.5 for gap in gaps) <= 1, gaps

    async def warned() -> bool:
        return any(e["reason"] == "SecretNotFound" for e in await list_events(kube, namespace, "eps"))

    await wait_for(warned, what="a SecretNotFound event")
    events = [e for e in await list_events(kube, namespace, "eps") if e["reason"] == "SecretNotFound"]
    assert events[0]["type"] == "Warning"

    # The user fixes it: the next look dispatches.
    standin.fail_dispatch[key] = []
    await wait_phase(kube, namespace, "eps", Phase.DISPATCHING, timeout=30)


async def test_transient_errors_are_retried_with_backoff(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    key = f"{namespace}/zeta"
    standin.fail_dispatch[key] = [TransientError("Timeout", "the host did not answer")] * 4
    await create_polecat(kube, namespace, "zeta")
    await wait_phase(kube, namespace, "zeta", Phase.DISPATCHING)
    assert standin.fail_dispatch[key] == []
    assert standin.dispatches[key] == 1
    assert (manager.registry.get_sample_value("gastown_workqueue_retries_total") or 0) >= 4


async def test_finalizer_holds_deletion_until_the_work_is_released(
    lab: Lab, kube: KubeClient, k8s_api: client.ApiClient, namespace: str
) -> None:
    local = StandInExecutor(needs_finalizer=True, auto_phase=Phase.WORKING)
    local.release_done = False
    mgr = make_manager(k8s_api, namespace, local)
    await mgr.start()
    try:
        await asyncio.wait_for(mgr.wait_synced(), 30)
        key = f"{namespace}/eta"
        await create_polecat(kube, namespace, "eta")
        obj = await wait_phase(kube, namespace, "eta", Phase.WORKING)
        assert FINALIZER in obj["metadata"]["finalizers"]

        await kube.delete(polecats_path(namespace, "eta"))

        async def blocked() -> dict[str, Any] | None:
            got = await get_polecat(kube, namespace, "eta")
            ready = _conditions(got).get("Ready")
            return got if ready and ready["reason"] == "UnpushedWork" else None

        held = await wait_for(blocked, what="the deletion to be held with a condition")
        assert held["metadata"]["deletionTimestamp"]
        assert "force-delete" in _conditions(held)["Ready"]["message"]

        await kube.merge_patch(
            polecats_path(namespace, "eta"), {"metadata": {"annotations": {ANNOTATION_FORCE_DELETE: "true"}}}
        )

        async def gone() -> bool:
            try:
                await get_polecat(kube, namespace, "eta")
            except Exception as exc:
                return getattr(exc, "status", None) == 404
            return False

        await wait_for(gone, what="the Polecat to be deleted after a forced release")
        assert local.releases[key] >= 2
        assert key not in local.work
    finally:
        await mgr.stop()
    assert local.closed


async def test_disabled_mode_is_reported(kube: KubeClient, k8s_api: client.ApiClient, namespace: str) -> None:
    only_k8s = StandInExecutor()
    mgr = Manager(
        engine_settings(namespace),
        api=k8s_api,
        executors={ExecutionMode.KUBERNETES: only_k8s},
        informer_options=FAST_INFORMERS,
        reconciler_options=FAST_RECONCILER,
    )
    await mgr.start()
    try:
        await asyncio.wait_for(mgr.wait_synced(), 30)
        await create_polecat(kube, namespace, "theta")  # local mode by default

        async def reported() -> dict[str, Any] | None:
            got = await get_polecat(kube, namespace, "theta")
            ready = _conditions(got).get("Ready")
            return got if ready and ready["reason"] == "ExecutionModeDisabled" else None

        obj = await wait_for(reported, what="ExecutionModeDisabled")
        message = _conditions(obj)["Ready"]["message"]
        assert "'local'" in message and "kubernetes" in message
        assert only_k8s.dispatches[f"{namespace}/theta"] == 0
    finally:
        await mgr.stop()


async def test_ops_endpoints_report_health_readiness_and_metrics(
    kube: KubeClient, namespace: str, manager: Manager, standin: StandInExecutor
) -> None:
    standin.auto_phase = Phase.DONE
    await create_polecat(kube, namespace, "iota")
    await wait_phase(kube, namespace, "iota", Phase.DONE)
    ports = manager.ops_ports
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{ports['health']}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{ports['health']}/readyz") as resp:
            assert resp.status == 200
            assert "caches synced" in await resp.text()
        async with http.get(f"http://127.0.0.1:{ports['metrics']}/metrics") as resp:
            text = await resp.text()
    assert 'gastown_reconcile_total{result="success"}' in text
    assert "gastown_workqueue_adds_total" in text
    assert 'gastown_polecats{mode="local",phase="Done"} 1.0' in text
    assert 'gastown_phase_transitions_total{phase="Done"}' in text
