"""Kubernetes mode end to end on the lab's real node: real containers, real git, real kernel.

Real, in every test: the Helm chart installed with ``helm``; the operator image
(``Dockerfile``) running as a Pod on the real node, reaching the apiserver on the
bridge gateway and serving its webhook through the chart's Service (endpoint
routing); the agent image (``Dockerfile.agent``) with the real runner
(``gastown-agent clone`` / ``run``); the kubelet v1.37, containerd, runc, the CNI
bridge; kube-apiserver with Pod Security ``restricted`` enforced in every namespace
involved; an OpenSSH sshd on the gateway serving bare git repositories, checked
against a pinned host key (strict known_hosts).

Stand-in: the agent command only (see ``tests/fixtures/real_node_operator.py``): a
shell script run by the real runner, which edits a file (or hogs memory, or sleeps,
as the task says).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import API_VERSION, KIND, Phase
from gastown.devcluster.lab import Lab
from gastown.devcluster.node import RealNode
from gastown.kube import KubeClient
from tests.fixtures.real_node_operator import NODE_LOST_TIMEOUT, GitHost, InstalledOperator
from tests.support.engine import polecats_path
from tests.support.operator import conditions, pod_path, wait_gone, wait_status
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.real_node]

GASTOWN_CLI = Path(sys.executable).with_name("gastown")


def phase_is(phase: Phase) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase.value


def ready_reason(obj: dict[str, Any]) -> str:
    return str(conditions(obj).get("Ready", {}).get("reason", ""))


@pytest.fixture
async def kube(node_api: client.ApiClient) -> KubeClient:
    return KubeClient(node_api)


@pytest.fixture
async def workspace(
    kube: KubeClient, node_namespace: str, git_host: GitHost, node_operator: InstalledOperator
) -> str:
    """The test's restricted namespace with the Secrets and ConfigMap a Polecat names."""
    core = f"/api/v1/namespaces/{node_namespace}"
    await kube.create(
        f"{core}/secrets",
        {
            "metadata": {"name": "git-key"},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {"ssh-privatekey": git_host.private_key},
        },
    )
    await kube.create(
        f"{core}/configmaps",
        {"metadata": {"name": "git-known-hosts"}, "data": {"known_hosts": git_host.known_hosts}},
    )
    await kube.create(
        f"{core}/secrets", {"metadata": {"name": "agent-api-key"}, "stringData": {"api-key": "not-used"}}
    )
    return node_namespace


async def create_polecat(
    kube: KubeClient, ns: str, name: str, repo_url: str, *, task: str, **kubernetes: Any
) -> dict[str, Any]:
    spec = {
        "gitRepository": repo_url,
        "gitBranch": "main",
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
            "rig": "app",
            "beadID": f"gt-{name}",
            "task": task,
            "executionMode": "kubernetes",
            "kubernetes": spec,
        },
    }

    # The webhook (failurePolicy Fail) answers once the operator has patched its caBundle.
    async def created() -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await kube.create(polecats_path(ns), body)
        except client.exceptions.ApiException as exc:
            if exc.status == 500 and "webhook" in str(exc.body):
                return None
            raise
        return obj

    return await wait_for(created, what=f"Polecat {ns}/{name} admitted", timeout=60.0)  # type: ignore[no-any-return]


async def wait_phase(
    kube: KubeClient, ns: str, name: str, phase: Phase, *, timeout: float = 120.0
) -> dict[str, Any]:
    return await wait_status(kube, ns, name, phase.value, phase_is(phase), timeout=timeout)


async def gastown(lab: Lab, *args: str, input: str | None = None) -> tuple[int, str, str]:
    """The user CLI as a user runs it (a process: ``attach`` execs kubectl)."""
    env = {"PATH": f"{lab.bin_dir}:/usr/bin:/bin", "HOME": "/tmp"}
    proc = await asyncio.create_subprocess_exec(
        str(GASTOWN_CLI),
        "--kubeconfig",
        str(lab.kubeconfig),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(input.encode() if input else None), 60)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def termination_message(kube: KubeClient, ns: str, pod: str, container: str = "agent") -> str:
    obj = await kube.get(pod_path(ns, pod))
    for status in obj["status"].get("containerStatuses") or []:
        if status["name"] == container:
            return str(status["state"]["terminated"].get("message", ""))
    raise AssertionError(f"no status for container {container} in Pod {pod}")


# --------------------------------------------------------------------------------------
# The happy path
# --------------------------------------------------------------------------------------
async def test_polecat_clones_runs_the_agent_commits_and_pushes(
    kube: KubeClient, workspace: str, git_host: GitHost, real_node: RealNode
) -> None:
    """Clone over SSH with strict known_hosts (init container), the stand-in agent edits a
    file through the real runner, which commits and pushes; Done with status.result from
    the real termination message; the commit is in the bare repository."""
    ns, name = workspace, "fix-login"
    bare = git_host.bare_repo(f"{ns}-app")
    task = "Fix the login redirect loop."
    await create_polecat(kube, ns, name, git_host.url(bare), task=task)

    done = await wait_phase(kube, ns, name, Phase.DONE)
    result = done["status"]["result"]
    branch = f"polecat/{name}"
    assert result["branch"] == branch and result["pushed"] is True
    assert result["commit"] == git_host.branch_commit(bare, branch), (
        "status.result.commit is not on the branch"
    )
    assert task in git_host.show(bare, result["commit"], "NOTES.md")
    assert git_host.show(bare, result["commit"], "README.md") == "# app"  # built on the cloned main
    assert ready_reason(done) == "Succeeded"
    assert done["status"]["kubernetes"]["nodeName"] == real_node.name

    # The result came from the runner's real termination message.
    report = json.loads(await termination_message(kube, ns, f"polecat-{name}"))
    assert report["commit"] == result["commit"] and report["pushed"] is True and report["agentExitCode"] == 0


# --------------------------------------------------------------------------------------
# What goes wrong, said so a user can act
# --------------------------------------------------------------------------------------
async def test_wrong_host_key_fails_the_clone_naming_the_configmap(
    kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    ns, name = workspace, "wrong-key"
    bare = git_host.bare_repo(f"{ns}-app")
    other = git_host.root / f"{ns}-other-key"
    await asyncio.to_thread(
        subprocess.run,
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
        check=True,
    )
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    host_field = git_host.known_hosts.split()[0]
    await kube.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "metadata": {"name": "stale-known-hosts"},
            "data": {"known_hosts": f"{host_field} {key_type} {key}\n"},
        },
    )
    await create_polecat(
        kube,
        ns,
        name,
        git_host.url(bare),
        task="anything",
        knownHostsConfigMapRef={"name": "stale-known-hosts"},
    )
    failed = await wait_phase(kube, ns, name, Phase.FAILED)
    message = conditions(failed)["Ready"]["message"]
    assert ready_reason(failed) == "CloneFailed"
    assert "does not match known_hosts ConfigMap stale-known-hosts" in message, message
    assert git_host.branch_commit(bare, f"polecat/{name}") is None


async def test_missing_agent_secret_is_stuck_with_the_kubelets_message(
    kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """The chart's default (no reference checks): the kubelet itself reports the missing
    Secret (CreateContainerConfigError), which kwok could never play."""
    ns, name = workspace, "no-secret"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(
        kube,
        ns,
        name,
        git_host.url(bare),
        task="anything",
        agentSecretRef={"name": "typo-key", "key": "api-key"},
    )
    stuck = await wait_phase(kube, ns, name, Phase.STUCK)
    message = conditions(stuck)["Ready"]["message"]
    assert ready_reason(stuck) == "CreateContainerConfigError"
    assert 'secret "typo-key" not found' in message, message


async def test_push_rejected_by_the_remote_is_push_failed(
    kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    ns, name = workspace, "rejected"
    hook = "#!/bin/sh\necho 'policy: polecat branches need a review ticket' >&2\nexit 1\n"
    bare = git_host.bare_repo(f"{ns}-guarded", pre_receive=hook)
    await create_polecat(kube, ns, name, git_host.url(bare), task="Add a changelog entry.")
    failed = await wait_phase(kube, ns, name, Phase.FAILED)
    message = conditions(failed)["Ready"]["message"]
    assert ready_reason(failed) == "PushFailed", message
    assert failed["status"]["result"]["pushed"] is False
    assert git_host.branch_commit(bare, f"polecat/{name}") is None
    # What the remote said reaches the user: the hook's own words.
    assert "origin refused the push to polecat/rejected: pre-receive hook declined" in message, message
    assert "policy: polecat branches need a review ticket" in message, message
    report = json.loads(await termination_message(kube, ns, f"polecat-{name}"))
    assert report["pushed"] is False and report["agentExitCode"] == 0


# --------------------------------------------------------------------------------------
# The kernel and the kubelet enforce limits for real
# --------------------------------------------------------------------------------------
async def test_memory_hog_is_oom_killed(kube: KubeClient, workspace: str, git_host: GitHost) -> None:
    ns, name = workspace, "hog"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(
        kube,
        ns,
        name,
        git_host.url(bare),
        task="[hog-memory] load everything into memory",
        resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "96Mi"}},
    )
    failed = await wait_phase(kube, ns, name, Phase.FAILED)
    assert ready_reason(failed) == "OOMKilled", conditions(failed)["Ready"]
    assert "raise spec.kubernetes.resources.limits.memory" in conditions(failed)["Ready"]["message"]


async def test_active_deadline_ends_the_run_and_the_work_is_saved(
    kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """The kubelet stops the Pod at activeDeadlineSeconds (SIGTERM): the runner stops the
    agent and still commits and pushes what it did."""
    ns, name = workspace, "slow"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(
        kube, ns, name, git_host.url(bare), task="[sleep] think for a long time", activeDeadlineSeconds=15
    )
    failed = await wait_phase(kube, ns, name, Phase.FAILED, timeout=180.0)
    message = conditions(failed)["Ready"]["message"]
    assert ready_reason(failed) == "DeadlineExceeded", message
    assert "activeDeadlineSeconds (15s)" in message
    # SIGTERM reached the runner, which stopped the agent and saved what it had done.
    assert "its work was pushed to polecat/slow" in message, message
    commit = git_host.branch_commit(bare, f"polecat/{name}")
    assert commit is not None and failed["status"]["result"]["commit"] == commit
    assert "think for a long time" in git_host.show(bare, commit, "NOTES.md")


async def agent_running(lab: Lab, ns: str, name: str) -> str:
    """Wait until the stand-in agent said it is at work (in ``gastown logs``); its output."""

    async def noted() -> str | None:
        rc, out, _ = await gastown(lab, "-n", ns, "logs", name)
        return out if rc == 0 and "noted the task, now sleeping" in out else None

    found: str = await wait_for(noted, what="the stand-in agent's output in `gastown logs`", timeout=60.0)
    return found


async def record_until_deleted(kube: KubeClient, ns: str, name: str, seen: list[dict[str, Any]]) -> None:
    """Every watch event of Polecat ``name`` after ``seen[0]`` until its DELETED one (what a user sees)."""
    version = seen[0]["object"]["metadata"]["resourceVersion"]
    query = {"watch": "true", "fieldSelector": f"metadata.name={name}", "resourceVersion": version}
    async with kube.stream(polecats_path(ns), query=query, inactivity_timeout=150.0) as lines:
        async for line in lines:
            event = json.loads(line)
            seen.append(event)
            if event["type"] == "DELETED":
                return


async def test_terminate_stops_the_agent_in_place_and_records_the_pushed_work(
    lab_cli: Lab, kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """``desiredState: Terminated`` shortens the Pod's activeDeadlineSeconds: the real kubelet
    stops it as at a deadline (SIGTERM: the runner stops the agent, commits, pushes, reports);
    the Pod stays, so the Polecat is Terminated with status.result from the real report."""
    ns, name = workspace, "stopped"
    bare = git_host.bare_repo(f"{ns}-app")
    task = "[sleep] rework the billing export"
    await create_polecat(kube, ns, name, git_host.url(bare), task=task)
    await wait_phase(kube, ns, name, Phase.WORKING)
    await agent_running(lab_cli, ns, name)

    asked = asyncio.get_running_loop().time()
    await kube.merge_patch(polecats_path(ns, name), {"spec": {"desiredState": "Terminated"}})
    terminated = await wait_phase(kube, ns, name, Phase.TERMINATED)
    print(f"Terminate -> Terminated on the real node: {asyncio.get_running_loop().time() - asked:.1f}s")
    conds = conditions(terminated)
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "Stopped"), conds["Ready"]
    assert (conds["WorkSaved"]["status"], conds["WorkSaved"]["reason"]) == ("True", "Pushed")
    result = terminated["status"]["result"]
    commit = git_host.branch_commit(bare, f"polecat/{name}")
    assert result["pushed"] is True and commit is not None and result["commit"] == commit
    assert task in git_host.show(bare, commit, "NOTES.md")
    # The Pod stays, ended by the kubelet at the shortened deadline; its report is the record.
    pod = await kube.get(pod_path(ns, f"polecat-{name}"))
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert json.loads(await termination_message(kube, ns, f"polecat-{name}"))["commit"] == commit


async def test_polecat_deleted_mid_run_records_its_pushed_work_before_it_goes(
    lab_cli: Lab, kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """The finalizer holds the deletion while the Pod is stopped in place (SIGTERM: the runner
    stops the agent, commits and pushes); the watch history shows status.result and WorkSaved
    before the DELETED event; then the Pod is garbage-collected. ``gastown logs`` shows the
    agent's output from the real Pod first."""
    ns, name = workspace, "interrupted"
    bare = git_host.bare_repo(f"{ns}-app")
    task = "[sleep] refactor the session store"
    await create_polecat(kube, ns, name, git_host.url(bare), task=task)
    await wait_phase(kube, ns, name, Phase.WORKING)
    await agent_running(lab_cli, ns, name)

    seen: list[dict[str, Any]] = [{"type": "ADDED", "object": await kube.get(polecats_path(ns, name))}]
    watch = asyncio.create_task(record_until_deleted(kube, ns, name, seen))
    await kube.delete(polecats_path(ns, name))
    await asyncio.wait_for(watch, 150.0)
    assert seen[-1]["type"] == "DELETED"
    saved = [e["object"] for e in seen if "WorkSaved" in conditions(e["object"])]
    assert saved, f"no status with WorkSaved before the Polecat went: {[e['type'] for e in seen]}"
    assert conditions(saved[-1])["WorkSaved"]["status"] == "True"
    commit = git_host.branch_commit(bare, f"polecat/{name}")
    assert commit is not None, "the runner did not push the interrupted work"
    assert saved[-1]["status"]["result"]["commit"] == commit
    assert task in git_host.show(bare, commit, "NOTES.md")
    await wait_gone(kube, pod_path(ns, f"polecat-{name}"), timeout=120.0)


async def test_polecat_deleted_while_the_push_is_refused_is_held_until_force_delete(
    lab_cli: Lab, kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """The remote refuses the push the runner makes when stopped: the Polecat is kept (its
    finalizer) with Ready False/WorkNotSaved naming the hook's words, the logs and the way
    out; ``gastown logs`` still works; the force-delete annotation lets it go."""
    ns, name = workspace, "refused-on-delete"
    hook = "#!/bin/sh\necho 'policy: polecat branches need a review ticket' >&2\nexit 1\n"
    bare = git_host.bare_repo(f"{ns}-guarded-delete", pre_receive=hook)
    await create_polecat(kube, ns, name, git_host.url(bare), task="[sleep] tidy the changelog")
    await wait_phase(kube, ns, name, Phase.WORKING)
    await agent_running(lab_cli, ns, name)

    await kube.delete(polecats_path(ns, name))
    held = await wait_status(
        kube,
        ns,
        name,
        "deletion held (WorkNotSaved)",
        lambda o: ready_reason(o) == "WorkNotSaved",
        timeout=150.0,
    )
    message = conditions(held)["Ready"]["message"]
    assert "policy: polecat branches need a review ticket" in message, message
    assert f"gastown logs -n {ns} {name}" in message and "gastown.gastown.io/force-delete=true" in message
    assert (conditions(held)["WorkSaved"]["status"], conditions(held)["WorkSaved"]["reason"]) == (
        "False",
        "PushFailed",
    )
    assert held["status"]["result"]["pushed"] is False
    assert git_host.branch_commit(bare, f"polecat/{name}") is None
    rc, out, err = await gastown(lab_cli, "-n", ns, "logs", name)
    assert rc == 0 and "noted the task" in out, err

    await kube.merge_patch(
        polecats_path(ns, name), {"metadata": {"annotations": {"gastown.gastown.io/force-delete": "true"}}}
    )
    await wait_gone(kube, polecats_path(ns, name), timeout=60.0)
    await wait_gone(kube, pod_path(ns, f"polecat-{name}"), timeout=120.0)


async def test_the_agent_cannot_read_the_deploy_key_and_the_push_still_works(
    lab_cli: Lab, kube: KubeClient, workspace: str, git_host: GitHost
) -> None:
    """The stand-in agent (for the LLM) hunts for the key: every file under $HOME, /etc/gastown,
    /tmp, /workspace, every process's environ and memory (the runner's too), and a detached
    process that keeps printing any key file it can read into the log. It finds nothing; the
    runner still pushes with the key."""
    ns, name = workspace, "probe-key"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(kube, ns, name, git_host.url(bare), task="[probe-key] find the deploy key")
    done = await wait_phase(kube, ns, name, Phase.DONE)
    assert done["status"]["result"]["pushed"] is True
    probe = git_host.show(bare, done["status"]["result"]["commit"], "PROBE.md")
    assert "key found in: nothing" in probe, probe
    assert "process memories readable: 0" not in probe, probe  # it could read its own: the probe works
    rc, logs, err = await gastown(lab_cli, "-n", ns, "logs", name)
    assert rc == 0, err
    assert "stray-alive" in logs, logs  # the detached watcher ran...
    assert "PRIVATE KEY" not in logs, logs  # ...and never saw a key


# --------------------------------------------------------------------------------------
# Pod Security restricted, checked in the running containers; gastown attach
# --------------------------------------------------------------------------------------
CHECK_SCRIPT = (
    "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Uid)' /proc/1/status; "
    "if touch /rootfs-write-test 2>/dev/null; then echo ROOT-WRITABLE; else echo ROOT-READONLY; fi\n"
)


def assert_locked_down(output: str, uid: int) -> None:
    fields: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.split()
    assert fields["CapEff"] == ["0000000000000000"], output
    assert fields["CapPrm"] == ["0000000000000000"], output
    assert fields["NoNewPrivs"] == ["1"], output
    assert fields["Uid"][0] == str(uid), output
    assert "ROOT-READONLY" in output and "ROOT-WRITABLE" not in output, output


async def test_operator_and_agent_pods_run_restricted_and_attach_works(
    lab_cli: Lab, kube: KubeClient, workspace: str, git_host: GitHost, node_operator: InstalledOperator
) -> None:
    """Both namespaces enforce Pod Security ``restricted`` (so both Pods were admitted by it);
    inside the running containers: no capabilities, no_new_privs, the image's non-root user,
    a read-only root. The agent container is reached with ``gastown attach --shell``."""
    for namespace in (workspace, node_operator.namespace):
        _, out, _ = await lab_cli.kubectl("get", "namespace", namespace, "-o", "json")
        labels = json.loads(out)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    operator_pod = await node_operator.pod_name()
    _, out, _ = await lab_cli.kubectl(
        "exec", "-n", node_operator.namespace, operator_pod, "--", "sh", "-c", CHECK_SCRIPT
    )
    assert_locked_down(out, 65532)

    ns, name = workspace, "inspect"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(kube, ns, name, git_host.url(bare), task="[sleep] stay around to be inspected")
    await wait_phase(kube, ns, name, Phase.WORKING)
    rc, printed, err = await gastown(lab_cli, "-n", ns, "attach", name, "--print")
    assert rc == 0 and "attach -it" in printed and f"pod/polecat-{name}" in printed, err
    rc, out, err = await gastown(
        lab_cli, "-n", ns, "attach", name, "--shell", "sh", input=CHECK_SCRIPT + "exit\n"
    )
    assert rc == 0, err
    assert_locked_down(out, 10001)
    await kube.delete(polecats_path(ns, name))


# --------------------------------------------------------------------------------------
# A lost node (last: it stops the kubelet the other tests need)
# --------------------------------------------------------------------------------------
async def test_kubelet_stopped_shows_on_the_polecat(
    kube: KubeClient, workspace: str, git_host: GitHost, real_node: RealNode
) -> None:
    """The kubelet stops (its containers go on): after the node's grace period (the lab's
    node-monitor-grace-period, 20 s) the node lifecycle controller marks the node and its
    Pods not ready, and the Polecat says Stuck/NodeNotReady instead of Working forever.
    The kubelet back, the Polecat is Working again."""
    ns, name = workspace, "stranded"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(kube, ns, name, git_host.url(bare), task="[sleep] a long job")
    await wait_phase(kube, ns, name, Phase.WORKING)

    await real_node.stop_kubelet()
    try:
        stuck = await wait_phase(kube, ns, name, Phase.STUCK, timeout=120.0)
        assert ready_reason(stuck) == "NodeNotReady"
        assert real_node.name in conditions(stuck)["Ready"]["message"]
    finally:
        await real_node.start_kubelet()
    await wait_phase(kube, ns, name, Phase.WORKING, timeout=120.0)
    await kube.delete(polecats_path(ns, name))


async def test_node_lost_past_the_timeout_is_failed_node_lost(
    kube: KubeClient, workspace: str, git_host: GitHost, real_node: RealNode
) -> None:
    """The kubelet stays away longer than the node-lost timeout (the lab's chart sets
    operator.nodeLostTimeout to 60 s): Stuck/NodeNotReady first, then a terminal
    Failed/NodeLost that says since when, what is lost and what to do; deleting it then
    lets it go at once (its record is in the status)."""
    ns, name = workspace, "abandoned"
    bare = git_host.bare_repo(f"{ns}-app")
    await create_polecat(kube, ns, name, git_host.url(bare), task="[sleep] a job on a doomed node")
    await wait_phase(kube, ns, name, Phase.WORKING)

    await real_node.stop_kubelet()
    try:
        await wait_phase(kube, ns, name, Phase.STUCK, timeout=120.0)
        failed = await wait_phase(kube, ns, name, Phase.FAILED, timeout=NODE_LOST_TIMEOUT + 120.0)
    finally:
        await real_node.start_kubelet()
    ready = conditions(failed)["Ready"]
    assert ready["reason"] == "NodeLost", ready
    assert f"node {real_node.name} has not reported since" in ready["message"], ready["message"]
    assert "is lost" in ready["message"] and "Delete the Polecat" in ready["message"]
    assert failed["status"]["completionTime"]
    await kube.delete(polecats_path(ns, name))
    await wait_gone(kube, polecats_path(ns, name), timeout=60.0)


@pytest.fixture
def lab_cli(node_lab: Lab) -> Lab:
    """The lab the CLI and kubectl talk to (the real node's)."""
    return node_lab
