"""Convoys and TTL through the real operator, on the lab (issue 21's "must show").

Real: the operator's Manager with the executors it builds itself (Polecat and Convoy
informers, work queues, the Polecat reconciler, the Convoy controller, the
``KubernetesExecutor``), the lab's kube-apiserver (restricted PodSecurity in each test
namespace), etcd, the scheduler, and kube-controller-manager's garbage collector (owner
references from Polecat to Convoy, foreground deletion).

Fake: no container runtime runs here, so kwok plays the kubelet; the test stands in for
each agent ending (the Pod annotations of tests/e2e/test_kubernetes_mode_on_lab.py).

Every claim about what happened over time comes from the test's own watch
(:mod:`tests.support.watch_ledger`), started before the Convoy exists: parallelism is
checked after every Polecat event in watch order, not on the end state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api import convoy as convoy_api
from gastown.api.models import API_VERSION, GROUP, VERSION
from gastown.api.paths import resource_path
from gastown.controller.manager import Manager
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.e2e import test_kubernetes_mode_on_lab as kubernetes_mode
from tests.e2e.test_kubernetes_mode_on_lab import COMMIT, end_pod
from tests.support.engine import FAST_INFORMERS, engine_settings, list_events, polecats_path
from tests.support.operator import E2E_RECONCILER, conditions, get_or_none, running_operator
from tests.support.waiting import wait_for, wait_until
from tests.support.watch_ledger import WatchLedger, witnessed

pytestmark = pytest.mark.lab

restricted = kubernetes_mode.restricted
TERMINAL = ("Done", "Failed", "Terminated")


def convoys_path(namespace: str, name: str | None = None) -> str:
    return resource_path(GROUP, VERSION, convoy_api.PLURAL, namespace=namespace, name=name)


def convoy_body(name: str, **spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"team": "checkout"}},
        "spec": {
            "rig": "webshop",
            "task": "Fix the flaky test.",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "git@github.com:acme/app.git",
                "gitSecretRef": {"name": "git-key"},
                "knownHostsConfigMapRef": {"name": "git-known-hosts"},
                "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
            },
        },
    }
    return {
        "apiVersion": API_VERSION,
        "kind": convoy_api.KIND,
        "metadata": {"name": name},
        "spec": {"template": template, **spec},
    }


def report(polecat: str, ok: bool = True) -> dict[str, Any]:
    if ok:
        return {"branch": f"polecat/{polecat}", "commit": COMMIT, "pushed": True, "agentExitCode": 0}
    return {"branch": f"polecat/{polecat}", "pushed": False, "agentExitCode": 1, "message": "tests fail"}


@contextlib.asynccontextmanager
async def agents(
    kube: KubeClient, ledger: WatchLedger, ns: str, *, ends: Callable[[str], bool | None]
) -> AsyncIterator[set[str]]:
    """Stand in for every agent: end each Running Pod as ``ends(polecat)`` says.

    ``ends`` returns True (exit 0, pushed), False (exit 1) or None (not yet). Yields the
    set of Polecats whose Pods were ended.
    """
    ended: set[str] = set()

    async def loop() -> None:
        while True:
            for pod_name, pod in list(ledger.pods.items()):
                polecat = pod_name.removeprefix("polecat-")
                if polecat in ended or (pod.get("status") or {}).get("phase") != "Running":
                    continue
                verdict = ends(polecat)
                if verdict is None:
                    continue
                ended.add(polecat)
                with contextlib.suppress(Exception):  # the Pod may be going away
                    await end_pod(kube, ns, pod_name, 0 if verdict else 1, report(polecat, verdict))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield ended
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def peak_unfinished(ledger: WatchLedger, prefix: str) -> int:
    """The most Polecats named ``prefix*`` that existed unfinished at one moment, in watch order."""
    state: dict[str, str] = {}
    peak = 0
    for kind, name, phase in ledger.polecat_history:
        if not name.startswith(prefix):
            continue
        if kind == "DELETED":
            state.pop(name, None)
        else:
            state[name] = phase
        peak = max(peak, sum(1 for p in state.values() if p not in TERMINAL))
    return peak


async def wait_convoy(
    kube: KubeClient, path: str, what: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float
) -> dict[str, Any]:
    name = path.rsplit("/", 1)[1]

    async def check() -> dict[str, Any] | None:
        obj = await get_or_none(kube, path)
        return obj if obj is not None and predicate(obj) else None

    found: dict[str, Any] = await wait_for(check, what=f"Convoy {name} {what}", timeout=timeout, interval=0.2)
    return found


def complete(obj: dict[str, Any]) -> bool:
    return conditions(obj).get("Complete", {}).get("status") == "True"


def no_bead_run_twice(ledger: WatchLedger, names: list[str], *, pods_deleted: bool = False) -> None:
    """One Polecat and one Pod per bead over the whole watch history.

    ``pods_deleted``: the Polecats were deleted, so the garbage collector deletes their Pods
    whenever it gets to them (before or after the ledger stops): then only a second uid counts.
    """
    assert {n: u for n, u in ledger.polecat_uids.items() if len(u) > 1} == {}
    pods = [f"polecat-{n}" for n in names]
    if pods_deleted:
        assert {n: u for n, u in ledger.pod_uids.items() if n in pods and len(u) > 1} == {}
    else:
        assert ledger.pods_created_more_than_once(pods) == {}
    assert ledger.polecats_restarted() == {}
    assert ledger.polecats_going_backwards() == {}


def operator_manager(k8s_api: client.ApiClient, ns: str) -> Manager:
    return Manager(
        engine_settings(ns), api=k8s_api, informer_options=FAST_INFORMERS, reconciler_options=E2E_RECONCILER
    )


async def test_a_convoy_of_200_beads_runs_to_done_within_parallelism_across_an_operator_restart(
    lab: Lab, k8s_api: client.ApiClient, kube: KubeClient, restricted: str
) -> None:
    """200 beads, parallelism 20: never more than 20 unfinished Polecats at any moment of the
    watch history, exactly one Polecat and one Pod per bead (the operator is restarted
    half-way), every bead Done with its branch and commit in the Convoy's status."""
    ns, name, total, parallelism = restricted, "big", 200, 20
    names = [f"{name}-{i}" for i in range(1, total + 1)]
    async with witnessed(lab, ns) as ledger, agents(kube, ledger, ns, ends=lambda _: True):
        first = operator_manager(k8s_api, ns)
        await first.start()
        try:
            await asyncio.wait_for(first.wait_synced(), 30)
            await kube.create(convoys_path(ns), convoy_body(name, count=total, parallelism=parallelism))
            await wait_until(
                lambda: sum(ledger.phase(n) == "Done" for n in names) >= total // 3,
                what="a third of the beads Done",
                timeout=300,
                interval=0.2,
            )
        finally:
            await first.stop()
        assert first.failure is None
        async with running_operator(k8s_api, engine_settings(ns)):
            done = await wait_convoy(kube, convoys_path(ns, name), "Complete", complete, timeout=400)

    assert peak_unfinished(ledger, f"{name}-") == parallelism
    assert sorted(ledger.polecat_uids) == sorted(names)
    no_bead_run_twice(ledger, names)
    status = done["status"]
    assert status["total"] == total
    assert status["counts"] == {
        "pending": 0, "dispatching": 0, "working": 0, "stuck": 0, "done": total, "failed": 0, "terminated": 0
    }  # fmt: skip
    assert status["startTime"] and status["completionTime"]
    beads = {b["beadID"]: b for b in status["beads"]}
    assert sorted(beads) == sorted(names)
    assert beads["big-7"] == {
        "beadID": "big-7",
        "polecat": "big-7",
        "phase": "Done",
        "branch": "polecat/big-7",
        "commit": COMMIT,
        "completionTime": beads["big-7"]["completionTime"],
    }
    conds = conditions(done)
    assert (conds["Complete"]["reason"], conds["Complete"]["message"]) == (
        "AllDone",
        "All 200 beads are Done.",
    )
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "Finished")
    polecat = await kube.get(polecats_path(ns, "big-7"))
    assert polecat["spec"]["beadID"] == "big-7"
    assert polecat["metadata"]["labels"] == {"team": "checkout", convoy_api.LABEL_CONVOY: name}
    [owner] = polecat["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Convoy", name, done["metadata"]["uid"])
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True


async def test_failure_policy_stop_starts_nothing_after_max_failures(
    lab: Lab, k8s_api: client.ApiClient, kube: KubeClient, restricted: str
) -> None:
    """Stop after 1 failure, parallelism 2: the first bead fails, the running one finishes,
    no third Polecat is ever created, and the Convoy is Complete/Stopped."""
    ns, name = restricted, "stops"
    failed_seen = asyncio.Event()

    def ends(polecat: str) -> bool | None:
        if polecat == "stops-1":
            return False
        return True if failed_seen.is_set() else None

    async with (
        witnessed(lab, ns) as ledger,
        running_operator(k8s_api, engine_settings(ns)),
        agents(kube, ledger, ns, ends=ends),
    ):
        body = convoy_body(name, count=6, parallelism=2, failurePolicy="Stop", maxFailures=1)
        await kube.create(convoys_path(ns), body)
        ready_false = await wait_convoy(
            kube,
            convoys_path(ns, name),
            "Ready False/FailureLimitReached",
            lambda o: conditions(o).get("Ready", {}).get("reason") == "FailureLimitReached",
            timeout=60,
        )
        failed_seen.set()
        done = await wait_convoy(kube, convoys_path(ns, name), "Complete", complete, timeout=60)

    assert conditions(ready_false)["Ready"]["status"] == "False"
    assert conditions(ready_false)["Ready"]["message"] == (
        "1 Polecats failed (maxFailures 1, failurePolicy Stop): no new Polecats are started; "
        "1 still running, 4 beads not started."
    )
    assert sorted(ledger.polecat_uids) == ["stops-1", "stops-2"]
    conds = conditions(done)
    assert conds["Complete"]["reason"] == "Stopped"
    assert conds["Complete"]["message"] == (
        "Stopped after 1 failed Polecats (maxFailures 1): 2 of 6 beads finished "
        "(1 done, 1 failed, 0 terminated), 4 not started."
    )
    beads = {b["beadID"]: b for b in done["status"]["beads"]}
    assert beads["stops-1"]["phase"] == "Failed" and beads["stops-1"]["reason"]
    assert beads["stops-2"]["phase"] == "Done"
    assert done["status"]["counts"]["pending"] == 4


async def test_convoy_ttl_deletes_polecats_after_their_result_is_recorded(
    lab: Lab, k8s_api: client.ApiClient, kube: KubeClient, restricted: str
) -> None:
    """ttlSecondsAfterFinished on the Convoy: each finished Polecat is deleted (after the
    Convoy's status recorded it Done), never recreated; the results stay on the Convoy."""
    ns, name = restricted, "brief"
    names = [f"{name}-{i}" for i in range(1, 5)]
    async with (
        witnessed(lab, ns) as ledger,
        running_operator(k8s_api, engine_settings(ns)),
        agents(kube, ledger, ns, ends=lambda _: True),
    ):
        await kube.create(
            convoys_path(ns), convoy_body(name, count=4, parallelism=2, ttlSecondsAfterFinished=1)
        )
        await wait_convoy(kube, convoys_path(ns, name), "Complete", complete, timeout=90)
        await wait_until(
            lambda: not any(n in ledger.polecats for n in names),
            what="the Convoy's Polecats deleted",
            timeout=60,
        )
        convoy = await kube.get(convoys_path(ns, name))

    deleted = [n for kind, n, _ in ledger.polecat_history if kind == "DELETED"]
    assert sorted(deleted) == names  # each deleted once, none recreated
    no_bead_run_twice(ledger, names, pods_deleted=True)
    beads = {b["beadID"]: b for b in convoy["status"]["beads"]}
    assert [beads[n]["phase"] for n in names] == ["Done"] * 4
    assert [beads[n]["branch"] for n in names] == [f"polecat/{n}" for n in names]
    assert convoy["status"]["counts"]["done"] == 4


async def test_polecat_ttl_deletes_it_after_it_finished(
    lab: Lab, k8s_api: client.ApiClient, kube: KubeClient, restricted: str
) -> None:
    """Polecat.spec.ttlSecondsAfterFinished: Done, then deleted with a TTLExpired Event; a
    Polecat without one is kept."""
    ns = restricted
    async with (
        witnessed(lab, ns) as ledger,
        running_operator(k8s_api, engine_settings(ns)),
        agents(kube, ledger, ns, ends=lambda _: True),
    ):
        await kubernetes_mode.create_polecat(kube, ns, "keep")
        body = (await kube.get(polecats_path(ns, "keep")))["spec"]
        body["beadID"] = "gt-short"
        body["ttlSecondsAfterFinished"] = 2
        await kube.create(
            polecats_path(ns),
            {"apiVersion": API_VERSION, "kind": "Polecat", "metadata": {"name": "short"}, "spec": body},
        )
        await wait_until(
            lambda: "short" not in ledger.polecats and "short" in ledger.polecat_phases, timeout=60
        )
        events = await list_events(kube, ns, "short")
        await wait_until(lambda: ledger.phase("keep") == "Done", what="keep Done", timeout=30)

    assert ledger.polecat_phases["short"][-1] == "Done"  # deleted only after it finished
    expired = [e for e in events if e.get("reason") == "TTLExpired"]
    assert expired and "ttlSecondsAfterFinished (2s) has passed" in expired[0]["note"]
    assert "keep" in ledger.polecats


@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
async def test_deleting_a_convoy_saves_its_polecats_work_and_starts_nothing(
    lab: Lab, k8s_api: client.ApiClient, kube: KubeClient, restricted: str, propagation: str
) -> None:
    """Deleting a Convoy while its Polecats work: nothing more is created; each Polecat goes
    through its own finalizer (work saved: a Released Event). Foreground: the Convoy stays,
    Ready False/Deleting, until its Polecats are gone. Background: it goes at once, and the
    garbage collector deletes the Polecats."""
    ns, name = restricted, "gone"
    polecats = [f"{name}-1", f"{name}-2"]
    async with (
        witnessed(lab, ns) as ledger,
        running_operator(k8s_api, engine_settings(ns)),
        agents(kube, ledger, ns, ends=lambda _: None),  # the agents keep working
    ):
        await kube.create(convoys_path(ns), convoy_body(name, count=5, parallelism=2))
        await wait_until(
            lambda: [ledger.phase(p) for p in polecats] == ["Working"] * 2,
            what="two Polecats Working",
            timeout=60,
        )
        await kube.delete(convoys_path(ns, name), body={"propagationPolicy": propagation})
        if propagation == "Foreground":
            # The Convoy stays while its Polecats save their work; its Deleting status is
            # coalesced (<= 1/s) and the Polecats may all be gone before it is written, so
            # the condition is checked when the Convoy is seen with it, not required.
            seen: dict[str, Any] = {}

            async def deleting_or_gone() -> bool:
                obj = await get_or_none(kube, convoys_path(ns, name))
                if obj is None:
                    return True
                if conditions(obj).get("Ready", {}).get("reason") == "Deleting":
                    seen.update(obj)
                    return True
                return False

            await wait_for(deleting_or_gone, what="the Convoy Deleting or gone", timeout=60)
            if seen:
                assert seen["metadata"]["deletionTimestamp"]
                assert conditions(seen)["Ready"]["message"].startswith(
                    "The Convoy is being deleted: no new Polecats are started"
                )

        async def gone() -> bool:
            return await get_or_none(kube, convoys_path(ns, name)) is None

        await wait_for(gone, what="the Convoy gone", timeout=90)
        await wait_until(lambda: not ledger.polecats, what="its Polecats gone", timeout=90)

        async def released() -> bool:
            events = await list_events(kube, ns)
            return {e["regarding"]["name"] for e in events if e.get("reason") == "Released"} == set(polecats)

        await wait_for(released, what="a Released Event for each Polecat", timeout=30)

    assert sorted(ledger.polecat_uids) == polecats  # nothing new once deleted
    # One Pod each, never recreated (it is stopped in place to save the work, then collected).
    assert {p: len(ledger.pod_uids[f"polecat-{p}"]) for p in polecats} == dict.fromkeys(polecats, 1)


async def test_count_and_failure_policy_are_frozen_by_the_crd_itself(
    kube: KubeClient, namespace: str
) -> None:
    """With no webhook (as here), CEL keeps spec.count and spec.failurePolicy as created;
    parallelism may change."""
    ns, name = namespace, "frozen"
    await kube.create(convoys_path(ns), convoy_body(name, count=3, parallelism=1))
    await kube.merge_patch(convoys_path(ns, name), {"spec": {"parallelism": 3, "maxFailures": 2}})
    for change, field in (({"count": 4}, "spec.count"), ({"failurePolicy": "Stop"}, "spec.failurePolicy")):
        with pytest.raises(ApiException) as refused:
            await kube.merge_patch(convoys_path(ns, name), {"spec": change})
        assert refused.value.status == 422
        assert f"{field}: cannot be changed after the Convoy is created" in str(refused.value.body)
