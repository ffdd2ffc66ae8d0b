"""Kubernetes mode through the real operator, on the lab (issue 4's "must show").

Real: the operator's Manager with the executors it builds itself (informers, work
queue, reconciler, status writes, Events, the ``KubernetesExecutor``), the lab's
kube-apiserver with PodSecurity admission (each test namespace enforces
``restricted``, so every agent Pod the operator creates passes the real check),
etcd, the scheduler, and kube-controller-manager's garbage collector.

Fake: no container runtime can run here, so kwok plays the kubelet. It starts a
scheduled Pod (Running); a test then ends it by setting the Pod annotations
``lab.gastown.io/exit-code`` and ``lab.gastown.io/termination-message`` — those
annotations stand in for the agent container exiting with that code and writing the
runner's JSON report to its termination log.

The operator runs in the test process (leader election and webhook off) and serves
only the test's namespace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import API_VERSION, KIND, Phase
from gastown.controller.events import REPORTING_CONTROLLER
from gastown.controller.manager import Manager
from gastown.kube import KubeClient
from tests.support.engine import engine_settings, list_events, polecats_path, reconciles
from tests.support.operator import (
    conditions,
    get_or_none,
    pod_path,
    running_operator,
    wait_events,
    wait_gone,
    wait_status,
)
from tests.support.pod_security import restricted_violations
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.lab

EXIT_CODE = "lab.gastown.io/exit-code"
TERMINATION_MESSAGE = "lab.gastown.io/termination-message"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def phase_is(phase: Phase) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase.value


@pytest.fixture
async def restricted(kube: KubeClient, namespace: str) -> str:
    """The test namespace, enforcing Pod Security "restricted", with the referenced objects."""
    await kube.merge_patch(
        f"/api/v1/namespaces/{namespace}",
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )
    core = f"/api/v1/namespaces/{namespace}"
    await kube.create(
        f"{core}/secrets",
        {
            "metadata": {"name": "git-key"},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {"ssh-privatekey": "not a real key"},
        },
    )
    await kube.create(
        f"{core}/configmaps",
        {"metadata": {"name": "git-known-hosts"}, "data": {"known_hosts": "github.com ssh-ed25519 AAAA"}},
    )
    await kube.create(
        f"{core}/secrets", {"metadata": {"name": "agent-api-key"}, "stringData": {"api-key": "x"}}
    )
    return namespace


@pytest.fixture
async def operator(k8s_api: client.ApiClient, restricted: str) -> AsyncIterator[Manager]:
    """The operator with its default settings (reference checks on)."""
    async with running_operator(k8s_api, engine_settings(restricted)) as manager:
        yield manager


async def create_polecat(kube: KubeClient, namespace: str, name: str, **kubernetes: Any) -> dict[str, Any]:
    spec = {
        "gitRepository": "git@github.com:acme/app.git",
        "gitSecretRef": {"name": "git-key"},
        "knownHostsConfigMapRef": {"name": "git-known-hosts"},
        "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
        **kubernetes,
    }
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "rig": "webshop",
            "beadID": f"gt-{name}",
            "task": "Fix the login redirect loop.",
            "executionMode": "kubernetes",
            "kubernetes": spec,
        },
    }
    created: dict[str, Any] = await kube.create(polecats_path(namespace), body)
    return created


async def wait_pod(kube: KubeClient, namespace: str, name: str, what: str, predicate: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        pod = await get_or_none(kube, pod_path(namespace, name))
        return pod if pod is not None and predicate(pod) else None

    found: dict[str, Any] = await wait_for(check, what=f"Pod {namespace}/{name} {what}", timeout=30.0)
    return found


def running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


async def end_pod(kube: KubeClient, namespace: str, pod: str, exit_code: int, report: dict[str, Any]) -> None:
    """Stand in for the agent container: exit with ``exit_code`` leaving ``report`` (kwok plays it)."""
    annotations = {EXIT_CODE: str(exit_code), TERMINATION_MESSAGE: json.dumps(report)}
    await kube.merge_patch(pod_path(namespace, pod), {"metadata": {"annotations": annotations}})


def manager_sees(manager: Manager, namespace: str, name: str, pod: dict[str, Any]) -> bool:
    """Whether the operator's Pod cache holds ``pod`` (this very Pod, by uid)."""
    cached = manager.pod(namespace, name)
    return cached is not None and cached["metadata"]["uid"] == pod["metadata"]["uid"]


async def assert_not_recreated(kube: KubeClient, manager: Manager, namespace: str, name: str) -> None:
    """Prove that the operator, having seen Pod ``polecat-<name>`` gone, did not create another.

    Level-based and without sleeping: once the operator's cache has dropped the Pod, one
    more reconcile of the Polecat is asked for; when the reconcile counter has moved past
    it, a whole reconcile ran that saw no Pod (reconciles of one key never overlap), so any
    Pod it was going to create would exist by now. (The spec cannot be edited to force a
    look: everything but desiredState is frozen once dispatched.)
    """
    pod = f"polecat-{name}"

    async def dropped() -> bool:
        return manager.pod(namespace, pod) is None

    await wait_for(dropped, what=f"the operator's cache to drop Pod {pod}")
    assert manager.engine is not None
    before = reconciles(manager)
    manager.engine.queue.add(f"{namespace}/{name}")
    await wait_until(lambda: reconciles(manager) > before, what=f"one more reconcile of {name}")
    assert await get_or_none(kube, pod_path(namespace, pod)) is None, f"Pod {pod} was recreated"


async def test_polecat_runs_in_a_restricted_pod_to_done(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """Create → Pod (owned, restricted) → Working → the agent exits 0 with a pushed report →
    Done with status.result from the report; the Pod deleted afterwards is not recreated."""
    ns, name, pod_name = restricted, "fix-login", "polecat-fix-login"
    created = await create_polecat(kube, ns, name)

    pod = await wait_pod(kube, ns, pod_name, "created", lambda p: True)
    [owner] = pod["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": created["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    # Admitted by the namespace's real PodSecurity "restricted" check; and, field by field:
    assert restricted_violations(pod["spec"]) == []
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gastown-operator"

    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    status = working["status"]
    assert status["kubernetes"]["podName"] == pod_name
    assert status["kubernetes"]["podPhase"] == "Running"
    assert status["kubernetes"]["nodeName"]
    assert status["startTime"] and "completionTime" not in status
    conds = conditions(working)
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "PodRunning"
    assert conds["Dispatched"]["status"] == "True"
    # The finalizer that keeps the result on deletion, added in the round that created the Pod.
    assert working["metadata"]["finalizers"] == ["gastown.gastown.io/save-work"]

    report = {
        "branch": "polecat/fix-login",
        "commit": COMMIT,
        "pushed": True,
        "agentExitCode": 0,
        "message": "committed and pushed 0123456789ab to polecat/fix-login",
    }
    await end_pod(kube, ns, pod_name, 0, report)
    done = await wait_status(kube, ns, name, "Done", phase_is(Phase.DONE))
    status = done["status"]
    assert status["result"] == {
        "branch": "polecat/fix-login",
        "commit": COMMIT,
        "pushed": True,
        "message": report["message"],
    }
    assert status["kubernetes"]["podPhase"] == "Succeeded"
    assert status["completionTime"]
    assert status["observedGeneration"] == done["metadata"]["generation"]
    conds = conditions(done)
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "Succeeded"
    assert COMMIT[:12] in conds["Ready"]["message"]
    assert conds["Dispatched"]["status"] == "True"

    events = await wait_events(kube, ns, name, {"Dispatching", "Working", "Completed"})
    for reason in ("Dispatching", "Working", "Completed"):
        event = events[reason]
        assert event["type"] == "Normal"
        assert event["reportingController"] == REPORTING_CONTROLLER
        assert event["regarding"]["kind"] == KIND
        assert event["regarding"]["uid"] == created["metadata"]["uid"]

    # The Pod is deleted after the work ended: Done stays, no new Pod.
    await kube.delete(pod_path(ns, pod_name))
    await wait_gone(kube, pod_path(ns, pod_name))
    await assert_not_recreated(kube, operator, ns, name)
    after = await get_or_none(kube, polecats_path(ns, name))
    assert after is not None
    assert after["status"]["phase"] == "Done"
    assert after["status"]["result"] == status["result"]


async def test_failed_agent_makes_the_polecat_failed(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """The agent exits 1 (report agentExitCode 1, nothing pushed) → Failed, with a reason,
    a message that says what happened, Ready False and a Warning Event."""
    ns, name, pod_name = restricted, "broken", "polecat-broken"
    await create_polecat(kube, ns, name)
    await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))

    report = {
        "branch": "polecat/broken",
        "pushed": False,
        "agentExitCode": 1,
        "message": "the agent exited with code 1; nothing to push",
    }
    await end_pod(kube, ns, pod_name, 1, report)
    failed = await wait_status(kube, ns, name, "Failed", phase_is(Phase.FAILED))
    status = failed["status"]
    conds = conditions(failed)
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "AgentFailed"
    assert "exited with code 1" in conds["Ready"]["message"]
    assert "NOT pushed" in conds["Ready"]["message"]
    assert status["result"]["pushed"] is False
    assert status["kubernetes"]["podPhase"] == "Failed"
    assert status["completionTime"]

    events = await wait_events(kube, ns, name, {"AgentFailed"})
    assert events["AgentFailed"]["type"] == "Warning"
    assert "exited with code 1" in events["AgentFailed"]["note"]

    # Failed is final: the Pod gone, no new one.
    await kube.delete(pod_path(ns, pod_name))
    await wait_gone(kube, pod_path(ns, pod_name))
    await assert_not_recreated(kube, operator, ns, name)


async def test_pod_deleted_while_working_is_recreated(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """Someone deletes the agent Pod while the work is unfinished: the operator makes a new one."""
    ns, name, pod_name = restricted, "again", "polecat-again"
    await create_polecat(kube, ns, name)
    await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    first = await wait_pod(kube, ns, pod_name, "Running", running)
    first_uid = first["metadata"]["uid"]

    await kube.delete(pod_path(ns, pod_name))
    second = await wait_pod(
        kube,
        ns,
        pod_name,
        "recreated and Running",
        lambda p: p["metadata"]["uid"] != first_uid and running(p),
    )
    created = await get_or_none(kube, polecats_path(ns, name))
    assert created is not None
    assert second["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    await wait_status(
        kube,
        ns,
        name,
        "Working on the new Pod",
        lambda o: phase_is(Phase.WORKING)(o) and manager_sees(operator, ns, pod_name, second),
    )
    pods = await kube.get(pod_path(ns))
    assert [p["metadata"]["name"] for p in pods["items"]] == [pod_name]


def report_for(name: str, *, pushed: bool = True, why: str = "") -> dict[str, Any]:
    """The runner's JSON report as it would leave it on SIGTERM."""
    return {
        "branch": f"polecat/{name}",
        "commit": COMMIT if pushed else None,
        "pushed": pushed,
        "agentExitCode": 143,
        "message": why or f"stopped; committed its changes and pushed {COMMIT[:12]} to polecat/{name}",
    }


async def leave_report(kube: KubeClient, namespace: str, pod: str, report: dict[str, Any]) -> None:
    """Stand in for the runner: the report it writes when it is stopped (kwok plays the stop)."""
    patch = {"metadata": {"annotations": {TERMINATION_MESSAGE: json.dumps(report)}}}
    await kube.merge_patch(pod_path(namespace, pod), patch)


async def test_desired_state_terminated_stops_the_pod_in_place_and_records_the_result(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """Terminate stops the Pod like a deadline (shortened activeDeadlineSeconds, the stop
    mark): the Pod stays, and its report becomes status.result and WorkSaved."""
    ns, name, pod_name = restricted, "stop-me", "polecat-stop-me"
    await create_polecat(kube, ns, name)
    await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    await leave_report(kube, ns, pod_name, report_for(name))

    await kube.merge_patch(polecats_path(ns, name), {"spec": {"desiredState": "Terminated"}})
    terminated = await wait_status(kube, ns, name, "Terminated", phase_is(Phase.TERMINATED))
    conds = conditions(terminated)
    assert conds["Ready"]["status"] == "True", "stopped on request is where the user wants it"
    assert conds["Ready"]["reason"] == "Stopped"
    assert f"commit {COMMIT[:12]} is on branch polecat/{name}" in conds["Ready"]["message"]
    assert (conds["WorkSaved"]["status"], conds["WorkSaved"]["reason"]) == ("True", "Pushed")
    assert terminated["status"]["result"]["pushed"] is True
    assert terminated["status"]["result"]["commit"] == COMMIT
    assert terminated["status"]["completionTime"]
    assert terminated["status"]["kubernetes"]["podName"] == pod_name
    await wait_events(kube, ns, name, {"Terminated"})

    # The Pod stays, stopped: its deadline shortened, not deleted.
    pod = await get_or_none(kube, pod_path(ns, pod_name))
    assert pod is not None and pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert pod["metadata"]["annotations"]["gastown.gastown.io/stop"] == "Terminate"
    assert pod["spec"]["activeDeadlineSeconds"] < 3600
    kept = await get_or_none(kube, polecats_path(ns, name))
    assert kept is not None and kept["status"]["phase"] == "Terminated"


async def test_missing_secret_is_reported_until_it_exists(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """With reference checks on (the default), a Polecat naming a Secret that does not exist
    gets no Pod, Ready False naming the field, and a Warning Event; once the Secret is
    created the operator looks again by itself and the work starts."""
    ns, name, pod_name = restricted, "typo", "polecat-typo"
    await create_polecat(kube, ns, name, agentSecretRef={"name": "agent-key-typo", "key": "api-key"})

    blocked = await wait_status(
        kube, ns, name, "Ready False", lambda o: conditions(o).get("Ready", {}).get("status") == "False"
    )
    ready = conditions(blocked)["Ready"]
    assert blocked["status"]["phase"] == "Pending"
    assert ready["reason"] == "SecretNotFound"
    assert "agent-key-typo" in ready["message"]
    assert "spec.kubernetes.agentSecretRef.name" in ready["message"]
    assert conditions(blocked)["Dispatched"]["status"] == "False"
    events = await wait_events(kube, ns, name, {"SecretNotFound"})
    assert events["SecretNotFound"]["type"] == "Warning"
    assert await get_or_none(kube, pod_path(ns, pod_name)) is None

    await kube.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "agent-key-typo"}, "stringData": {"api-key": "x"}},
    )
    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    assert conditions(working)["Ready"]["status"] == "True"
    assert await get_or_none(kube, pod_path(ns, pod_name)) is not None


async def test_without_reference_checks_the_pod_is_created_regardless(
    k8s_api: client.ApiClient, kube: KubeClient, restricted: str
) -> None:
    """``pod.check_references`` off (the Helm chart's default, where the operator may not read
    Secrets): the operator does not look the Secret up and creates the Pod; a missing
    Secret is then the kubelet's to report (CreateContainerConfigError → Stuck, which kwok
    cannot play; the observer's unit tests cover that mapping)."""
    settings = engine_settings(restricted)
    settings = settings.model_copy(
        update={"pod": settings.pod.model_copy(update={"check_references": False})}
    )
    ns, name, pod_name = restricted, "unchecked", "polecat-unchecked"
    async with running_operator(k8s_api, settings):
        await create_polecat(kube, ns, name, agentSecretRef={"name": "no-such-secret", "key": "api-key"})
        await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
        pod = await get_or_none(kube, pod_path(ns, pod_name))
        assert pod is not None
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "no-such-secret"
        assert not [e for e in await list_events(kube, ns, name) if e["reason"] == "SecretNotFound"]


async def test_deleting_a_working_polecat_records_its_result_then_lets_go(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """The finalizer (added with the Pod create) holds the deletion while the Pod is stopped
    in place; the runner's report is written to status (result, WorkSaved) before the
    finalizer goes; then the garbage collector (kube-controller-manager) follows the owner
    reference and deletes the Pod.

    The collector learns about a new CRD from discovery, which it re-reads every 30 s;
    right after the session installs the CRD its first collection can take that long
    (the wait allows for it). This test is last in the file so that is usually over."""
    ns, name, pod_name = restricted, "gc", "polecat-gc"
    await create_polecat(kube, ns, name)
    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    assert "gastown.gastown.io/save-work" in working["metadata"]["finalizers"]
    await leave_report(kube, ns, pod_name, report_for(name))

    seen: list[dict[str, Any]] = [{"type": "ADDED", "object": await kube.get(polecats_path(ns, name))}]
    watch = asyncio.create_task(record_until_deleted(kube, ns, name, seen))
    await kube.delete(polecats_path(ns, name))
    await asyncio.wait_for(watch, 60.0)
    last = seen[-1]
    assert last["type"] == "DELETED"
    saved = [e["object"] for e in seen if "WorkSaved" in conditions(e["object"])]
    assert saved, f"no status with WorkSaved before the Polecat went: {[e['type'] for e in seen]}"
    assert conditions(saved[-1])["WorkSaved"]["status"] == "True"
    assert saved[-1]["status"]["result"]["commit"] == COMMIT
    events = await wait_events(kube, ns, name, {"Released"})
    assert "the runner pushed the work" in events["Released"]["note"]
    await wait_gone(kube, pod_path(ns, pod_name), timeout=90.0)


async def test_deleting_while_the_push_fails_holds_the_polecat_until_force_delete(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    """The runner reports the push refused: the Polecat stays (finalizer), saying why, where
    the logs are and how to let go; the force-delete annotation finishes the deletion."""
    ns, name, pod_name = restricted, "refused", "polecat-refused"
    await create_polecat(kube, ns, name)
    await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    why = "origin refused the push to polecat/refused: pre-receive hook declined"
    await leave_report(kube, ns, pod_name, report_for(name, pushed=False, why=why))

    await kube.delete(polecats_path(ns, name))
    held = await wait_status(
        kube, ns, name, "held", lambda o: conditions(o).get("Ready", {}).get("reason") == "WorkNotSaved"
    )
    ready = conditions(held)["Ready"]
    assert ready["status"] == "False"
    assert why in ready["message"]
    assert f"gastown logs -n {ns} {name}" in ready["message"]
    assert "gastown.gastown.io/force-delete=true" in ready["message"]
    assert (conditions(held)["WorkSaved"]["status"], conditions(held)["WorkSaved"]["reason"]) == (
        "False",
        "PushFailed",
    )
    assert held["status"]["result"]["pushed"] is False
    assert "gastown.gastown.io/save-work" in held["metadata"]["finalizers"]
    events = await wait_events(kube, ns, name, {"WorkNotSaved"})
    assert events["WorkNotSaved"]["type"] == "Warning"
    assert await get_or_none(kube, pod_path(ns, pod_name)) is not None, "the Pod (and its logs) stays"
    # Still held once the status is terminal: the operator is made to look again (the spec is
    # frozen, so through its queue), and the whole reconcile that followed let nothing go.
    assert operator.engine is not None
    before = reconciles(operator)
    operator.engine.queue.add(f"{ns}/{name}")
    await wait_until(lambda: reconciles(operator) > before, what=f"one more reconcile of {name}")
    again = await kube.get(polecats_path(ns, name))
    assert conditions(again)["Ready"]["reason"] == "WorkNotSaved"
    assert "gastown.gastown.io/save-work" in again["metadata"]["finalizers"]

    await kube.merge_patch(
        polecats_path(ns, name), {"metadata": {"annotations": {"gastown.gastown.io/force-delete": "true"}}}
    )
    await wait_gone(kube, polecats_path(ns, name))


async def record_until_deleted(kube: KubeClient, ns: str, name: str, seen: list[dict[str, Any]]) -> None:
    """Every watch event of Polecat ``name`` after ``seen[0]`` until its DELETED one (what a user sees)."""
    version = seen[0]["object"]["metadata"]["resourceVersion"]
    query = {"watch": "true", "fieldSelector": f"metadata.name={name}", "resourceVersion": version}
    async with kube.stream(polecats_path(ns), query=query, inactivity_timeout=60.0) as lines:
        async for line in lines:
            event = json.loads(line)
            seen.append(event)
            if event["type"] == "DELETED":
                return
