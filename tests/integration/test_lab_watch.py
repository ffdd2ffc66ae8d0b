"""The lab is a real apiserver: objects made through kubernetes_asyncio show up as
ADDED/MODIFIED/DELETED watch events, exactly as on a cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


async def test_configmap_watch_events(k8s_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    listed = await core.list_namespaced_config_map(namespace, field_selector="metadata.name=probe")
    start_rv = listed.metadata.resource_version
    seen: list[tuple[str, dict[str, Any]]] = []

    async def collect() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_namespaced_config_map,
                namespace,
                field_selector="metadata.name=probe",
                resource_version=start_rv,
                timeout_seconds=30,
                _request_timeout=40,
            ):
                seen.append((event["type"], event["object"].data or {}))
                if event["type"] == "DELETED":
                    return

    watcher = asyncio.create_task(collect())
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="probe"), data={"v": "1"})
    )
    await core.patch_namespaced_config_map("probe", namespace, {"data": {"v": "2"}})
    await core.delete_namespaced_config_map("probe", namespace)
    await asyncio.wait_for(watcher, 30)

    assert [kind for kind, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert [data.get("v") for _, data in seen] == ["1", "2", "2"]


async def test_namespace_is_real(k8s_api: client.ApiClient, namespace: str) -> None:
    ns = await client.CoreV1Api(k8s_api).read_namespace(namespace)
    assert ns.status.phase == "Active"
    # The lab's PodSecurity admission is on: labelling a namespace restricted is accepted.
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == namespace


async def test_kwok_runs_and_finishes_pods(k8s_api: client.ApiClient, namespace: str) -> None:
    """kwok stands in for the kubelet: a Pod goes Running, and ends as its annotation says."""
    core = client.CoreV1Api(k8s_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example.invalid/x")]),
    )
    await core.create_namespaced_pod(namespace, pod)
    phase = await _wait_phase(core, namespace, "p", {"Running"})
    assert phase == "Running"
    await core.patch_namespaced_pod(
        "p",
        namespace,
        {
            "metadata": {
                "annotations": {
                    "lab.gastown.io/exit-code": "3",
                    "lab.gastown.io/termination-message": "bye",
                }
            }
        },
    )
    assert await _wait_phase(core, namespace, "p", {"Succeeded", "Failed"}) == "Failed"
    got = await core.read_namespaced_pod("p", namespace)
    terminated = got.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.message) == (3, "bye")


async def _wait_phase(core: client.CoreV1Api, ns: str, name: str, phases: set[str]) -> str:
    async def reached() -> str | None:
        pod = await core.read_namespaced_pod(name, ns)
        return str(pod.status.phase) if pod.status.phase in phases else None

    phase: str = await wait_for(
        reached, timeout=30, interval=0.1, what=f"pod {name} to reach {sorted(phases)}"
    )
    return phase
