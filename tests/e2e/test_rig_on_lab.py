"""Rigs through the real operator on the lab, kubernetes mode (kwok plays the kubelet).

Real: the operator's Manager with the executors it builds itself, the lab's apiserver
with the generated CRDs (Polecat, Rig), PodSecurity "restricted", the scheduler and the
garbage collector. Fake: kwok runs the Pods; a test ends one by annotating it with the
exit code and the runner's report (see tests/e2e/test_kubernetes_mode_on_lab.py).

What it shows: a Polecat that leaves its repository, branch, Secrets and deadline out
gets them from its Rig, at dispatch, recorded in ``status.effective``; a later Rig edit
changes nothing that runs; a Polecat that needs a Rig that does not exist waits
(RigNotFound) and starts once it does; and ``maxActivePolecats`` holds at every moment,
across an operator restart, as seen by an independent watch (not the end state).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import API_VERSION, GROUP, KIND, VERSION
from gastown.api.paths import resource_path
from gastown.devcluster import finalizer_policy
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.e2e.test_kubernetes_mode_on_lab import COMMIT, end_pod, restricted  # noqa: F401 - fixture
from tests.support.engine import engine_settings, polecats_path, reconciles
from tests.support.operator import conditions, get_or_none, pod_path, running_operator, wait_status
from tests.support.waiting import wait_for, wait_until
from tests.support.watch_ledger import WatchLedger

pytestmark = pytest.mark.lab

RIG_K8S = {
    "gitRepository": "git@github.com:acme/rig-app.git",
    "gitBranch": "develop",
    "gitSecretRef": {"name": "git-key"},
    "knownHostsConfigMapRef": {"name": "git-known-hosts"},
    "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
    "activeDeadlineSeconds": 900,
}
ACTIVE = frozenset({"Dispatching", "Working", "Stuck"})


def rigs_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path(GROUP, VERSION, "rigs", namespace=namespace, name=name, subresource=subresource)


async def create_rig(kube: KubeClient, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": API_VERSION, "kind": "Rig", "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = await kube.create(rigs_path(namespace), body)
    return created


async def create_bare_polecat(kube: KubeClient, namespace: str, name: str, rig: str, **spec: Any) -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"rig": rig, "beadID": f"gt-{name}", "task": "Work from the rig's defaults.", **spec},
    }
    await kube.create(polecats_path(namespace), body)


def env_of(pod: dict[str, Any], container: str) -> dict[str, str]:
    for section in ("initContainers", "containers"):
        for c in pod["spec"].get(section) or []:
            if c["name"] == container:
                return {e["name"]: e.get("value", "") for e in c.get("env") or []}
    raise AssertionError(f"no container {container}")


def phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def dispatched_reason(obj: dict[str, Any]) -> str:
    return str(conditions(obj).get("Dispatched", {}).get("reason", ""))


async def test_rig_defaults_are_applied_recorded_and_frozen_at_dispatch(
    kube: KubeClient,
    k8s_api: client.ApiClient,
    restricted: str,  # noqa: F811 - the fixture
) -> None:
    ns = restricted
    rig = await create_rig(kube, ns, "webshop", executionMode="kubernetes", agent="codex", kubernetes=RIG_K8S)
    async with running_operator(k8s_api, engine_settings(ns)) as manager:
        await create_bare_polecat(kube, ns, "from-rig", "webshop")
        working = await wait_status(kube, ns, "from-rig", "Working", lambda o: phase(o) == "Working")

        pod = await kube.get(pod_path(ns, "polecat-from-rig"))
        clone = env_of(pod, "git-clone")
        assert clone["GASTOWN_GIT_REPOSITORY"] == RIG_K8S["gitRepository"]
        assert clone["GASTOWN_GIT_BRANCH"] == "develop"
        assert env_of(pod, "agent")["GASTOWN_AGENT"] == "codex"
        assert pod["spec"]["activeDeadlineSeconds"] == 900
        assert working["metadata"]["finalizers"] == ["gastown.gastown.io/save-work"]

        effective = working["status"]["effective"]
        assert effective["rig"] == "webshop"
        assert effective["rigGeneration"] == rig["metadata"]["generation"]
        assert effective["executionMode"] == "kubernetes"
        assert effective["agent"] == "codex"
        assert effective["kubernetes"]["gitRepository"] == RIG_K8S["gitRepository"]
        assert effective["fromRig"] == [
            "executionMode",
            "agent",
            "kubernetes.gitRepository",
            "kubernetes.gitBranch",
            "kubernetes.gitSecretRef",
            "kubernetes.knownHostsConfigMapRef",
            "kubernetes.agentSecretRef",
            "kubernetes.activeDeadlineSeconds",
        ]
        assert "kubernetes" not in working["spec"]  # the user's spec is left as written

        # A Rig edit after dispatch changes nothing that runs, nor the record.
        await kube.merge_patch(
            rigs_path(ns, "webshop"),
            {
                "spec": {
                    "agent": "claude-code",
                    "kubernetes": {"gitBranch": "other", "activeDeadlineSeconds": 5},
                }
            },
        )
        assert manager.engine is not None
        engine = manager.engine
        await wait_until(
            lambda: (
                (engine.rigs.get_by_name(ns, "webshop") or {}).get("metadata", {}).get("generation", 0)
                > rig["metadata"]["generation"]
            ),
            what="the operator's cache to see the Rig edit",
        )
        before = reconciles(manager)
        engine.queue.add(f"{ns}/from-rig")
        await wait_until(lambda: reconciles(manager) > before, what="one more reconcile of from-rig")
        after_pod = await kube.get(pod_path(ns, "polecat-from-rig"))
        assert after_pod["metadata"]["uid"] == pod["metadata"]["uid"]
        assert after_pod["spec"]["activeDeadlineSeconds"] == 900
        after = await kube.get(polecats_path(ns, "from-rig"))
        assert after["status"]["effective"] == effective

        report = {"branch": "polecat/from-rig", "commit": COMMIT, "pushed": True, "agentExitCode": 0}
        await end_pod(kube, ns, "polecat-from-rig", 0, report)
        done = await wait_status(kube, ns, "from-rig", "Done", lambda o: phase(o) == "Done")
        assert done["status"]["effective"] == effective
        assert done["status"]["result"]["branch"] == "polecat/from-rig"


async def test_a_polecat_waits_for_its_missing_rig(
    kube: KubeClient,
    k8s_api: client.ApiClient,
    restricted: str,  # noqa: F811 - the fixture
) -> None:
    ns = restricted
    async with running_operator(k8s_api, engine_settings(ns)):
        await create_bare_polecat(kube, ns, "early", "late-rig", executionMode="kubernetes")
        waiting = await wait_status(
            kube, ns, "early", "RigNotFound", lambda o: dispatched_reason(o) == "RigNotFound"
        )
        assert phase(waiting) == "Pending"
        message = conditions(waiting)["Dispatched"]["message"]
        assert message.startswith(f"Rig 'late-rig' was not found in namespace '{ns}'")
        assert "spec.kubernetes.gitRepository" in message
        assert await get_or_none(kube, pod_path(ns, "polecat-early")) is None

        await create_rig(kube, ns, "late-rig", kubernetes=RIG_K8S)
        # Woken by the Rig's event (the user-error backstop is a minute in these settings).
        working = await wait_status(kube, ns, "early", "Working", lambda o: phase(o) == "Working", timeout=20)
        assert working["status"]["effective"]["rig"] == "late-rig"


class TimelineLedger(WatchLedger):
    """The ledger, plus how many Polecats were active after each event it saw."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active_counts: list[int] = []
        self.live_pod_counts: list[int] = []

    def _on_polecat(self, kind: str, obj: dict[str, Any]) -> None:
        super()._on_polecat(kind, obj)
        self.active_counts.append(sum(1 for o in self.polecats.values() if phase(o) in ACTIVE))

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        super()._on_pod(kind, obj)
        live = [
            p
            for p in self.pods.values()
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        self.live_pod_counts.append(len(live))


async def test_max_active_polecats_holds_across_an_operator_restart(
    lab: Lab,
    kube: KubeClient,
    k8s_api: client.ApiClient,
    restricted: str,  # noqa: F811 - the fixture
) -> None:
    """Six Polecats, a Rig allowing two: never more than two active or two live Pods at any
    moment the witness saw, started in creation order, through a restart of the operator."""
    ns, limit, names = restricted, 2, [f"cap-{i}" for i in range(1, 7)]
    await create_rig(
        kube, ns, "capped", maxActivePolecats=limit, executionMode="kubernetes", kubernetes=RIG_K8S
    )
    ledger = TimelineLedger(lab, ns)
    await ledger.start()
    try:
        async with running_operator(k8s_api, engine_settings(ns)):
            for name in names:
                await create_bare_polecat(kube, ns, name, "capped")
            await wait_for(
                lambda: _settled(kube, ns, names, working=names[:2]), what="two Working, four waiting"
            )
            rig = await wait_for(
                lambda: _rig_counts(kube, ns, "capped", active=2, waiting=4),
                what="Rig status 2 active, 4 waiting",
            )
            assert rig["status"]["observedGeneration"] == rig["metadata"]["generation"]
            waiter = await kube.get(polecats_path(ns, names[2]))
            assert conditions(waiter)["Dispatched"]["message"] == (
                "Rig 'capped' allows 2 active Polecats (spec.maxActivePolecats) and 2 are active; this "
                "Polecat waits in Pending and starts, in creation order, when a slot frees. To run more "
                "at once, raise the Rig's spec.maxActivePolecats."
            )
            # The first one ends while the operator is still up.
            await _finish(kube, ns, names[0])
            await wait_for(lambda: _settled(kube, ns, names, working=names[1:3]), what="cap-2, cap-3 Working")

        # The operator is down. Its successor must count what runs from the caches alone.
        async with running_operator(k8s_api, engine_settings(ns)) as successor:
            assert successor.engine is not None
            await _finish(kube, ns, names[1])
            await wait_for(lambda: _settled(kube, ns, names, working=names[2:4]), what="cap-3, cap-4 Working")
            for i in range(2, 6):
                await _finish(kube, ns, names[i])
            await wait_for(lambda: _all_done(kube, ns, names), what="all Done", timeout=60)
            await wait_for(
                lambda: _rig_counts(kube, ns, "capped", active=0, waiting=0), what="Rig status 0/0"
            )
    finally:
        await ledger.stop()

    assert ledger.active_counts and max(ledger.active_counts) <= limit, ledger.active_counts
    assert ledger.live_pod_counts and max(ledger.live_pod_counts) <= limit, ledger.live_pod_counts
    assert ledger.polecats_restarted() == {}
    assert ledger.pods_created_more_than_once() == {}
    # Creation order: each started only after every older one had started.
    starts = {n: ledger.polecat_start_times[n][0] for n in names}
    assert [starts[n] for n in names] == sorted(starts[n] for n in names)


async def _settled(kube: KubeClient, ns: str, names: list[str], *, working: list[str]) -> bool:
    for name in names:
        obj = await kube.get(polecats_path(ns, name))
        if name in working and phase(obj) != "Working":
            return False
        if name not in working and phase(obj) == "Pending" and dispatched_reason(obj) != "RigAtCapacity":
            return False
    return True


async def _rig_counts(
    kube: KubeClient, ns: str, name: str, *, active: int, waiting: int
) -> dict[str, Any] | None:
    rig: dict[str, Any] = await kube.get(rigs_path(ns, name))
    status = rig.get("status") or {}
    ok = status.get("activePolecats") == active and status.get("waitingPolecats") == waiting
    return rig if ok else None


async def _finish(kube: KubeClient, ns: str, name: str) -> None:
    await wait_status(kube, ns, name, "Working", lambda o: phase(o) == "Working")
    report = {"branch": f"polecat/{name}", "commit": COMMIT, "pushed": True, "agentExitCode": 0}
    await end_pod(kube, ns, f"polecat-{name}", 0, report)
    await wait_status(kube, ns, name, "Done", lambda o: phase(o) == "Done")


async def _all_done(kube: KubeClient, ns: str, names: list[str]) -> bool:
    for name in names:
        if phase(await kube.get(polecats_path(ns, name))) != "Done":
            return False
    return True


async def test_raising_the_limit_or_deleting_the_rig_starts_waiters(
    kube: KubeClient,
    k8s_api: client.ApiClient,
    restricted: str,  # noqa: F811 - the fixture
) -> None:
    """maxActivePolecats 0 holds every new Polecat; raising it, or deleting the Rig, starts
    them at once (woken by the Rig's event: the backstop requeue is minutes away)."""
    ns = restricted
    await create_rig(kube, ns, "held", maxActivePolecats=0, executionMode="kubernetes", kubernetes=RIG_K8S)
    await create_rig(kube, ns, "gone", maxActivePolecats=0)
    async with running_operator(k8s_api, engine_settings(ns)):
        await create_bare_polecat(kube, ns, "held-1", "held")
        # Complete on its own: without its Rig it runs as it is.
        await create_bare_polecat(kube, ns, "gone-1", "gone", executionMode="kubernetes", kubernetes=RIG_K8S)
        for name, rig in (("held-1", "held"), ("gone-1", "gone")):
            waiting = await wait_status(
                kube, ns, name, "RigAtCapacity", lambda o: dispatched_reason(o) == "RigAtCapacity"
            )
            assert phase(waiting) == "Pending"
            assert conditions(waiting)["Dispatched"]["message"].startswith(
                f"Rig '{rig}' allows 0 active Polecats (spec.maxActivePolecats) and 0 are active;"
            )
            assert conditions(waiting)["Ready"]["reason"] == "RigAtCapacity"

        await kube.merge_patch(rigs_path(ns, "held"), {"spec": {"maxActivePolecats": 1}})
        await wait_status(kube, ns, "held-1", "Working", lambda o: phase(o) == "Working", timeout=20)
        await kube.delete(rigs_path(ns, "gone"))
        gone = await wait_status(kube, ns, "gone-1", "Working", lambda o: phase(o) == "Working", timeout=20)
        assert "effective" not in gone["status"]  # no Rig at dispatch: the spec is the effective spec


async def test_the_finalizer_policy_s_finalizer_serves_a_mode_its_rig_decides(
    lab: Lab,
    kube: KubeClient,
    k8s_api: client.ApiClient,
    restricted: str,  # noqa: F811 - the fixture
) -> None:
    """The chart's finalizer policy gives a Polecat that states no mode local-cleanup; when its
    Rig makes it kubernetes mode, that finalizer is the operator's all the same: no second
    finalizer patch, and deleting it still saves the work and lets it go."""
    ns = restricted
    docs = await finalizer_policy.install(lab, namespaces=[ns], suffix=f"-{ns}")
    try:
        await create_rig(kube, ns, "shop", executionMode="kubernetes", kubernetes=RIG_K8S)
        async with running_operator(k8s_api, engine_settings(ns)):
            await create_bare_polecat(kube, ns, "mode-from-rig", "shop")
            working = await wait_status(kube, ns, "mode-from-rig", "Working", lambda o: phase(o) == "Working")
            assert working["status"]["effective"]["executionMode"] == "kubernetes"
            assert working["status"]["executionMode"] == "kubernetes"  # kubectl get's Mode column
            _, table, _ = await lab.kubectl("-n", ns, "get", "pcat", "mode-from-rig", "--no-headers")
            assert table.split()[2] == "kubernetes"
            assert working["metadata"]["finalizers"] == ["gastown.gastown.io/local-cleanup"]
            report = {"branch": "polecat/mode-from-rig", "commit": COMMIT, "pushed": True, "agentExitCode": 0}
            await end_pod(kube, ns, "polecat-mode-from-rig", 0, report)
            await wait_status(kube, ns, "mode-from-rig", "Done", lambda o: phase(o) == "Done")
            await kube.delete(polecats_path(ns, "mode-from-rig"))

            async def gone() -> bool:
                return await get_or_none(kube, polecats_path(ns, "mode-from-rig")) is None

            await wait_for(gone, timeout=30, what="the Polecat to be released and gone")
    finally:
        await finalizer_policy.uninstall(lab, docs, namespace=ns)
