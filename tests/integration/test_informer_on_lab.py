"""Informers against the real apiserver: list+watch, label selectors, 410 → relist, watchdog.

All real: the lab's kube-apiserver and etcd, ConfigMaps and Pods in a fresh namespace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.paths import resource_path
from gastown.controller.events import build_event
from gastown.controller.informer import Informer, InformerOptions, WatchEvent
from gastown.controller.manager import MANAGED_BY_SELECTOR
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.support.etcd import compact_etcd
from tests.support.informers import CONFIGMAPS, EVENTS, PODS, Recorder, running
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab


def _cm(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"v": "1"},
    }


async def test_list_then_watch_mirrors_every_change(
    k8s_api: client.ApiClient, namespace: str, kube: KubeClient
) -> None:
    path = resource_path("", "v1", "configmaps", namespace=namespace)
    await kube.create(path, _cm("before"))

    informer = Informer(kube, CONFIGMAPS, namespaces=[namespace], options=InformerOptions(watchdog=30))
    events: list[WatchEvent] = []
    informer.add_handler(events.append)
    async with running(informer):
        assert informer.get(f"{namespace}/before") is not None  # listed
        await kube.create(path, _cm("after"))
        await kube.merge_patch(f"{path}/after", {"data": {"v": "2"}})
        await kube.delete(f"{path}/before")
        await wait_until(
            lambda: (
                informer.get(f"{namespace}/before") is None
                and (informer.get(f"{namespace}/after") or {}).get("data") == {"v": "2"}
            ),
            "the cache to mirror the changes",
        )
    kinds = [(e.type, e.key.split("/")[1]) for e in events if e.key.split("/")[1] in ("before", "after")]
    assert kinds == [("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]


async def test_pods_informer_sees_only_managed_pods_and_slims_them(
    k8s_api: client.ApiClient, namespace: str, kube: KubeClient
) -> None:
    path = resource_path("", "v1", "pods", namespace=namespace)

    def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "example.invalid/x"}]},
        }

    def slim(obj: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"phase": (obj.get("status") or {}).get("phase")}}

    informer = Informer(
        kube, PODS, namespaces=[namespace], label_selector=MANAGED_BY_SELECTOR, transform=slim
    )
    async with running(informer):
        await kube.create(path, pod("ours", {"app.kubernetes.io/managed-by": "gastown-operator"}))
        await kube.create(path, pod("theirs", {"app.kubernetes.io/managed-by": "someone-else"}))
        # A marker of ours, created after theirs: a watch delivers in resourceVersion
        # order, so once the marker is cached, theirs would have arrived before it.
        await kube.create(path, pod("marker", {"app.kubernetes.io/managed-by": "gastown-operator"}))
        await wait_until(
            lambda: informer.get(f"{namespace}/marker") is not None, what="the marker in the cache"
        )
        assert informer.get(f"{namespace}/ours") is not None
        assert informer.get(f"{namespace}/theirs") is None
        cached = informer.get(f"{namespace}/ours")
        assert cached is not None
        assert set(cached) == {"status", "metadata"}
        assert set(cached["metadata"]) == {"name", "namespace", "resourceVersion", "uid"}


async def test_watch_from_an_expired_resource_version_relists(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, kube: KubeClient
) -> None:
    """A forced 410: after an etcd compaction, resuming from resourceVersion "1" is what
    a watch faces after a long outage, and the apiserver answers 410 Gone. The informer
    relists and keeps working, and changes made meanwhile are not lost.

    The resource is Events: the apiserver keeps no watch cache for them, so the watch
    reaches etcd and meets the compaction. (A watch cache that has never dropped an
    event serves any old resourceVersion with synthetic ADDED events instead.)
    """
    path = resource_path("events.k8s.io", "v1", "events", namespace=namespace)
    recorder = Recorder()
    informer = Informer(
        kube,
        EVENTS,
        namespaces=[namespace],
        options=InformerOptions(watchdog=1.0, backoff_base=0.05, backoff_cap=0.5),
        observer=recorder,
    )
    async with running(informer) as task:
        assert recorder.relists == 1
        await kube.create(path, _event(namespace, "one"))
        await wait_until(lambda: informer.get(f"{namespace}/one") is not None, "one in the cache")

        await compact_etcd(lab)
        informer.resume_from("1")
        await kube.create(path, _event(namespace, "two"))  # may land before, during or after the 410
        await wait_until(lambda: recorder.restarts["expired"] >= 1, "a 410 Gone", timeout=30)
        await wait_until(lambda: recorder.relists >= 2, "a relist")
        await wait_until(lambda: informer.get(f"{namespace}/two") is not None, "two in the cache")

        await kube.delete(f"{path}/one")
        await kube.create(path, _event(namespace, "three"))
        await wait_until(
            lambda: (
                informer.get(f"{namespace}/one") is None and informer.get(f"{namespace}/three") is not None
            ),
            "changes after the relist",
        )
        assert not task.done()


def _event(namespace: str, name: str) -> dict[str, Any]:
    event = build_event(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": namespace, "name": "x"}},
        type="Normal",
        reason="Probe",
        note="informer test",
        action="Test",
        instance="test",
        now=datetime.now(UTC),
    )
    event["metadata"]["name"] = name
    return event


async def test_silent_watch_is_restarted_by_the_watchdog_without_relisting(
    k8s_api: client.ApiClient, namespace: str, kube: KubeClient
) -> None:
    path = resource_path("", "v1", "configmaps", namespace=namespace)
    recorder = Recorder()
    informer = Informer(
        kube, CONFIGMAPS, namespaces=[namespace], options=InformerOptions(watchdog=0.5), observer=recorder
    )
    events: list[WatchEvent] = []
    informer.add_handler(events.append)
    async with running(informer):
        await wait_until(lambda: recorder.restarts["watchdog"] >= 2, "the watchdog to restart a silent watch")
        await kube.create(path, _cm("late"))
        await wait_until(lambda: informer.get(f"{namespace}/late") is not None, "an event after the restarts")
        assert recorder.relists == 1  # resumed from its resourceVersion each time
    assert [e.type for e in events if e.key == f"{namespace}/late"] == ["ADDED"]


async def test_all_namespaces_watch(k8s_api: client.ApiClient, namespace: str, kube: KubeClient) -> None:
    informer = Informer(kube, CONFIGMAPS, label_selector="gastown-test=all-ns")
    async with running(informer):
        await kube.create(
            resource_path("", "v1", "configmaps", namespace=namespace), _cm("x", **{"gastown-test": "all-ns"})
        )
        await wait_until(lambda: informer.get(f"{namespace}/x") is not None, "a cluster-wide watch to see it")
