"""The EventRecorder folds a burst into a series Event that the real apiserver accepts.

All real: the lab's kube-apiserver (events.k8s.io/v1 validation: a series counts at
least 2, a v1 Event's note is immutable so only series and annotations are patched),
the recorder's sender tasks and a fresh namespace. What the Events are about are
Polecat references that need not exist (an Event's ``regarding`` is not checked).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.paths import resource_path
from gastown.cli.kubeclient import Cluster
from gastown.controller.events import EventRecorder
from gastown.controller.eventseries import LABEL_SERIES, EventSeries, names_in
from gastown.kube import KubeClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def _polecat(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"},
    }


async def test_a_burst_becomes_a_few_events_and_one_series_with_its_count(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    kube = KubeClient(k8s_api)
    recorder = EventRecorder(
        kube,
        instance="series-test",
        series=EventSeries(individual=3, quiet=30.0, flush_every=60.0),
        flush_interval=0.05,
    )
    task = asyncio.create_task(recorder.run())
    path = resource_path("events.k8s.io", "v1", "events", namespace=namespace)

    async def listed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await kube.get(path))["items"]
        return [e for e in items if e["reason"] == "Working"]

    try:
        for i in range(12):
            recorder.record(_polecat(namespace, f"pc-{i:02d}"), "Normal", "Working", "The agent is working.")

        async def written() -> list[dict[str, Any]] | None:
            events = await listed()
            series = [e for e in events if (e["metadata"].get("labels") or {}).get(LABEL_SERIES)]
            return events if series and (series[0].get("series") or {}).get("count") == 9 else None

        events = await wait_for(written, timeout=30, what="3 Events and a series of 9")
        own = sorted(e["regarding"]["name"] for e in events if "series" not in e)
        assert own == ["pc-00", "pc-01", "pc-02"]  # the first few keep their own Events
        (series,) = [e for e in events if "series" in e]
        assert series["regarding"]["name"] == "pc-03"
        assert names_in(series) == [f"pc-{i:02d}" for i in range(3, 12)]
        assert series["series"]["lastObservedTime"]

        # gastown describe shows the series for every Polecat it stands for.
        cluster = Cluster(k8s_api, kube, namespace=namespace, server="lab")
        shown = await cluster.events_about(namespace, kind="Polecat", name="pc-07", uid=None)
        assert [e["reason"] for e in shown] == ["Working"]
        assert shown[0]["note"].startswith("(one of a burst, with polecat/pc-03) The agent is working.")
        assert await cluster.events_about(namespace, kind="Polecat", name="pc-99", uid=None) == []

        # More of the burst, before it goes quiet: the same series Event is patched.
        for i in range(12, 15):
            recorder.record(_polecat(namespace, f"pc-{i:02d}"), "Normal", "Working", "The agent is working.")
        await recorder.close(grace=10.0)  # flushes what is folded and sends it

        after = await listed()
        (patched,) = [e for e in after if "series" in e]
        assert patched["metadata"]["name"] == series["metadata"]["name"]
        assert patched["series"]["count"] == 12
        assert names_in(patched)[-1] == "pc-14"
        assert len(after) == 4  # 15 Working Events became 4 Event objects

        # The core/v1 view (kubectl get events) shows the count too.
        core = await kube.get(
            resource_path("", "v1", "events", namespace=namespace, name=patched["metadata"]["name"])
        )
        assert core["series"]["count"] == 12
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
