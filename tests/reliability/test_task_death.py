"""A long-lived task of a running operator dies: readiness fails, the operator stops, run() raises.

Real parts: the lab's kube-apiserver and etcd, the operator's Manager with its real
informers, work queue, Event recorder, ops server (``/readyz``, ``/metrics`` over HTTP)
and supervisor. The executor is the engine tests' stand-in, made to hold one reconcile
in flight so the test can see the order of the reaction: readiness fails while the
operator is still draining, and only then does it stop.

"Dies" is a ``Task.cancel()`` from outside the task tree: what a stray cancel elsewhere
in the process would do, and the one way to end a task that catches every fault by
design (an informer retries any apiserver error forever). A task that raises or
returns is covered by tests/unit/controller/test_supervisor.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from kubernetes_asyncio import client

from gastown.api.models import Polecat
from gastown.controller.supervisor import TaskDiedError
from gastown.devcluster.lab import Lab
from gastown.executors.base import Observation
from gastown.kube import KubeClient
from tests.support.engine import StandInExecutor, create_polecat, make_manager
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.lab]


class HeldExecutor(StandInExecutor):
    """Dispatch waits until the test releases it: one reconcile stays in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.in_dispatch = asyncio.Event()
        self.release_dispatch = asyncio.Event()

    async def dispatch(self, polecat: Polecat) -> Observation:
        self.in_dispatch.set()
        await self.release_dispatch.wait()
        return await super().dispatch(polecat)


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize("victim", ["informer-pods", "events"])
async def test_a_killed_task_fails_readiness_then_stops_the_operator(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, victim: str, kube: KubeClient
) -> None:
    executor = HeldExecutor()
    manager = make_manager(k8s_api, namespace, executor, shutdown_grace=30.0)
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        await asyncio.wait_for(manager.wait_synced(), 30)
        health, metrics = manager.ops_ports["health"], manager.ops_ports["metrics"]
        assert (await _get(health, "/readyz"))[0] == 200
        await create_polecat(kube, namespace, "held")
        await asyncio.wait_for(executor.in_dispatch.wait(), 30)

        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == victim]
        task.cancel()

        async def not_ready() -> tuple[int, str] | None:
            answer = await _get(health, "/readyz")
            return answer if answer[0] != 200 else None

        status, detail = await wait_for(not_ready, what="/readyz to fail")
        assert status == 503 and victim in detail
        # Still draining the reconcile in flight: readiness failed first, before the stop.
        assert not running.done()
        _, exposition = await _get(metrics, "/metrics")
        assert f'gastown_task_deaths_total{{task="{victim}"}} 1.0' in exposition

        executor.release_dispatch.set()
        with pytest.raises(TaskDiedError) as died:
            await asyncio.wait_for(running, 60)
        assert died.value.task == victim
        assert executor.dispatches[f"{namespace}/held"] == 1  # the in-flight reconcile finished
        assert executor.closed  # and the executors were closed on the way out
    finally:
        stop.set()
        executor.release_dispatch.set()
        with contextlib.suppress(TaskDiedError):
            await asyncio.wait_for(running, 60)
