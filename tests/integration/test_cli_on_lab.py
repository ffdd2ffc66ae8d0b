"""The `gastown` CLI against the real test lab (kube-apiserver + etcd + kwok), sshd and tmux.

Every command talks to the lab's real apiserver through the lab's kubeconfig. No
operator runs in these tests: where a command needs one (``sling --wait`` waits for
status; ``describe`` shows status and Events), the TEST stands in for the operator by
writing status through the status subresource and Events through events.k8s.io/v1,
exactly the API calls the operator makes. Local-mode ``logs``/``attach`` reach a real
tmux session through a real sshd. Kubernetes-mode ``logs`` cannot show real logs here:
the lab has no kubelet (kwok fakes nodes), so that test checks the one-line error the
user gets when the apiserver cannot reach a kubelet.

Commands run in-process with click's CliRunner in a worker thread (the CLI calls
``asyncio.run`` itself and this test's loop is already running), except ``logs -f``,
which runs as a real subprocess so the test can read its output while it follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes_asyncio import client

from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.cli.errors import ExitCode
from gastown.cli.user import main
from gastown.controller.events import build_event
from gastown.devcluster.lab import FAKE_NODE, Lab
from gastown.executors.local.tmux import session_name
from tests.support.ci import unavailable

pytestmark = pytest.mark.lab


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
async def gastown(lab: Lab, *args: str, input: str | None = None) -> Result:
    """Run the CLI in-process (in a thread: it runs its own event loop) against the lab."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, ["--kubeconfig", str(lab.kubeconfig), *args], input)


def polecat_body(name: str, *, mode: str = "local", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"rig": "gastown", "beadID": "gt-abc12", "executionMode": mode, **spec}
    if mode == "kubernetes":
        body.setdefault(
            "kubernetes",
            {
                "gitRepository": "git@github.com:me/app.git",
                "gitSecretRef": {"name": "git-ssh"},
                "agentSecretRef": {"name": "anthropic"},
            },
        )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": body,
    }


async def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    result: dict[str, Any] = await custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, _request_timeout=30
    )
    return result


async def set_status(api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Stand in for the operator: write status through the status subresource."""
    custom = client.CustomObjectsApi(api)
    await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
        _request_timeout=30,
    )


def ready(status: str, reason: str, message: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), f"expected one line, got {text!r}"
    assert "Traceback" not in text
    return text.rstrip("\n")


# --------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------
async def test_list_table_and_formats(lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None) -> None:
    empty = await gastown(lab, "list", "-n", namespace)
    assert empty.exit_code == 0
    assert empty.stdout == ""
    assert empty.stderr.strip() == f"No Polecats found in namespace {namespace}."

    await create(k8s_api, namespace, polecat_body("alpha"))
    await create(k8s_api, namespace, polecat_body("beta", mode="kubernetes"))
    await set_status(
        k8s_api,
        namespace,
        "beta",
        {"phase": "Working", "kubernetes": {"podName": "polecat-beta", "nodeName": FAKE_NODE}},
    )

    table = await gastown(lab, "list", "-n", namespace)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["alpha"][1:5] == ["gastown", "local", "Pending", "gt-abc12"]
    assert rows["beta"][1:5] == ["gastown", "kubernetes", "Working", "gt-abc12"]

    wide = await gastown(lab, "list", "-n", namespace, "-o", "wide")
    assert "pod/polecat-beta" in wide.stdout and FAKE_NODE in wide.stdout

    as_json = json.loads((await gastown(lab, "list", "-n", namespace, "-o", "json")).stdout)
    assert as_json["kind"] == "List"
    assert [i["metadata"]["name"] for i in as_json["items"]] == ["alpha", "beta"]
    assert all(i["kind"] == "Polecat" for i in as_json["items"])

    as_yaml = yaml.safe_load((await gastown(lab, "list", "-n", namespace, "-o", "yaml")).stdout)
    assert as_yaml["items"][1]["status"]["phase"] == "Working"

    everywhere = await gastown(lab, "list", "-A")
    assert everywhere.stdout.splitlines()[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [namespace, "alpha"] for line in everywhere.stdout.splitlines())

    # Namespace after the command name, as `kubectl gastown list -n X` passes it.
    names = await gastown(lab, "-n", "default", "list", "-n", namespace, "-o", "name")
    assert names.stdout.split() == ["polecat.gastown.gastown.io/alpha", "polecat.gastown.gastown.io/beta"]


# --------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------
async def test_describe_failed_polecat_says_what_to_fix(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    """A Failed kubernetes-mode Polecat: the Ready message (what to fix), its Events and its Pod's."""
    created = await create(k8s_api, namespace, polecat_body("broken", mode="kubernetes"))
    fix = (
        "git-clone failed (exit code 128): Host key verification failed. Add the git host's key to the "
        "ConfigMap named in spec.kubernetes.knownHostsConfigMapRef (key known_hosts)"
    )
    await set_status(
        k8s_api,
        namespace,
        "broken",
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "kubernetes": {"podName": "polecat-broken", "podPhase": "Failed", "nodeName": FAKE_NODE},
            "conditions": [ready("False", "CloneFailed", fix)],
        },
    )
    # Events as the operator's recorder writes them (same builder), plus a scheduler-style one.
    events = client.EventsV1Api(k8s_api)
    now = datetime.now(UTC)
    for reason, kind, note in (
        ("Dispatched", "Normal", "created Pod polecat-broken"),
        ("CloneFailed", "Warning", fix),
    ):
        body = build_event(
            created, type=kind, reason=reason, note=note, action="Reconcile", instance="t", now=now
        )
        await events.create_namespaced_event(namespace, body, _request_timeout=30)
    pod_ref = {"kind": "Pod", "apiVersion": "v1", "namespace": namespace, "name": "polecat-broken"}
    pod_event = build_event(
        {"kind": "Pod", "apiVersion": "v1", "metadata": pod_ref},
        type="Normal",
        reason="Scheduled",
        note=f"Successfully assigned {namespace}/polecat-broken to {FAKE_NODE}",
        action="Binding",
        instance="default-scheduler",
        now=now,
    )
    await events.create_namespaced_event(namespace, pod_event, _request_timeout=30)
    # An Event about another Polecat must not show up.
    other = await create(k8s_api, namespace, polecat_body("other"))
    noise = build_event(
        other, type="Normal", reason="Noise", note="not me", action="x", instance="t", now=now
    )
    await events.create_namespaced_event(namespace, noise, _request_timeout=30)

    result = await gastown(lab, "describe", "-n", namespace, "broken")
    assert result.exit_code == 0, result.output
    text = result.stdout
    status = text[text.index("\nStatus:") + 1 :]
    assert "Phase:" in status.splitlines()[1] and "Failed" in status.splitlines()[1]
    assert "CloneFailed" in status.splitlines()[2]
    assert "Add the git host's key to the ConfigMap" in " ".join(status.split())
    events_block = text[text.index("\nEvents:") :]
    assert "Dispatched" in events_block and "CloneFailed" in events_block
    assert f"pod/polecat-broken: Successfully assigned {namespace}/polecat-broken" in events_block
    assert "Noise" not in text
    # How to see the work, with commands that carry the kubeconfig used here.
    assert f"--kubeconfig {lab.kubeconfig}" in text
    assert "logs broken --follow" in text and "attach broken" in text
    # Secret references by name only.
    assert "git-ssh" in text and "anthropic (key api-key)" in text


async def test_describe_missing_polecat_is_exit_3(lab: Lab, namespace: str, crd: None) -> None:
    result = await gastown(lab, "describe", "-n", namespace, "nope")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert one_line(result.stderr) == f'gastown: Polecat "nope" in namespace "{namespace}" not found'


async def test_context_namespace_is_the_default(lab: Lab, namespace: str, crd: None, tmp_path: Path) -> None:
    config = yaml.safe_load(lab.kubeconfig.read_text())
    for ctx in config["contexts"]:
        ctx["context"]["namespace"] = namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = await asyncio.to_thread(CliRunner().invoke, main, ["--kubeconfig", str(kubeconfig), "list"])
    assert result.stderr.strip() == f"No Polecats found in namespace {namespace}."


# --------------------------------------------------------------------------------------
# sling
# --------------------------------------------------------------------------------------
async def test_sling_creates_a_polecat(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    task = "Fix the login bug; don't touch $(HOME) or `this`"
    result = await gastown(
        lab, "-n", namespace, "sling", "gt-abc12", "gastown", "--task", task, "--dispatcher", "tmux",
        "--command", "claude", "--label", "team=core",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("polecat.gastown.gastown.io/gastown-gt-abc12-")
    name = result.stdout.split()[0].split("/")[1]
    custom = client.CustomObjectsApi(k8s_api)
    obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert obj["spec"]["task"] == task
    assert obj["spec"]["local"] == {"dispatcher": "tmux", "command": "claude"}
    assert obj["metadata"]["labels"] == {"team": "core"}


async def test_sling_rejected_by_the_apiserver_is_one_line(lab: Lab, namespace: str, crd: None) -> None:
    """The CRD schema refuses a rig that is not a DNS label: exit 1 with the apiserver's words."""
    result = await gastown(lab, "-n", namespace, "sling", "gt-1", "Not_A_Label", "--name", "bad")
    assert result.exit_code == ExitCode.FAILED
    line = one_line(result.stderr)
    assert line.startswith("gastown: ") and "spec.rig" in line


async def test_sling_existing_name_is_one_line(lab: Lab, namespace: str, crd: None) -> None:
    assert (await gastown(lab, "-n", namespace, "sling", "gt-1", "gastown", "--name", "dup")).exit_code == 0
    again = await gastown(lab, "-n", namespace, "sling", "gt-1", "gastown", "--name", "dup")
    assert again.exit_code == ExitCode.FAILED
    assert "already exists" in one_line(again.stderr)


async def _stand_in_operator(
    api: client.ApiClient, namespace: str, name: str, steps: list[dict[str, Any]]
) -> None:
    """Wait for the Polecat to exist, then write each status in turn (the operator's job)."""
    custom = client.CustomObjectsApi(api)
    for _ in range(600):
        with contextlib.suppress(client.ApiException):
            await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            break
        await asyncio.sleep(0.05)
    for status in steps:
        await set_status(api, namespace, name, status)
        await asyncio.sleep(0.2)


async def test_sling_wait_until_done(lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None) -> None:
    """`sling --wait` follows the Polecat (status written by the test standing in for the operator)."""
    steps = [
        {"phase": "Dispatching", "conditions": [ready("False", "Dispatching", "Creating Pod polecat-w1")]},
        {
            "phase": "Working",
            "kubernetes": {"podName": "polecat-w1", "nodeName": FAKE_NODE},
            "conditions": [ready("True", "PodRunning", "The agent is working.")],
        },
        {"phase": "Done", "conditions": [ready("True", "Completed", "pushed polecat/w1 at abc123")]},
    ]
    operator = asyncio.create_task(_stand_in_operator(k8s_api, namespace, "w1", steps))
    try:
        result = await gastown(
            lab, "-n", namespace, "sling", "gt-abc12", "gastown", "--name", "w1",
            "--repo", "git@github.com:me/app.git", "--git-secret", "git-ssh", "--wait", "--timeout", "120",
        )  # fmt: skip
    finally:
        await operator
    assert result.exit_code == 0, result.output
    out = result.stdout
    for words in ("created", "Dispatching", "Working", "PodRunning", "pod/polecat-w1", "Done"):
        assert words in out
    assert out.index("Dispatching") < out.index("PodRunning") < out.rindex("Done")
    assert out.rstrip().endswith("polecat/w1 is Done: pushed polecat/w1 at abc123")


async def test_sling_wait_failed_exits_1_with_the_reason(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    fix = "spec.kubernetes.agentSecretRef: Secret 'anthropic' not found; create it"
    steps = [{"phase": "Failed", "conditions": [ready("False", "SecretNotFound", fix)]}]
    operator = asyncio.create_task(_stand_in_operator(k8s_api, namespace, "f1", steps))
    try:
        result = await gastown(
            lab, "-n", namespace, "sling", "gt-1", "gastown", "--name", "f1", "--repo", "https://x.test/r.git",
            "--wait", "--timeout", "120",
        )  # fmt: skip
    finally:
        await operator
    assert result.exit_code == ExitCode.FAILED
    assert one_line(result.stderr) == f"gastown: polecat/f1 Failed (SecretNotFound): {fix}"


async def test_sling_wait_gives_up_after_timeout(lab: Lab, namespace: str, crd: None) -> None:
    result = await gastown(
        lab, "-n", namespace, "sling", "gt-1", "gastown", "--name", "t1", "--wait", "--timeout", "1"
    )
    assert result.exit_code == ExitCode.TIMEOUT
    assert "still Pending" in one_line(result.stderr)


# --------------------------------------------------------------------------------------
# logs / attach, kubernetes mode
# --------------------------------------------------------------------------------------
async def test_kubernetes_logs_without_a_kubelet_is_one_clear_line(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    """kwok nodes have no kubelet, so the apiserver cannot fetch logs: the user is told so."""
    await create(k8s_api, namespace, polecat_body("k1", mode="kubernetes"))
    core = client.CoreV1Api(k8s_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="polecat-k1"),
        spec=client.V1PodSpec(
            node_name=FAKE_NODE,
            containers=[client.V1Container(name="agent", image="example.invalid/agent:1")],
        ),
    )
    await core.create_namespaced_pod(namespace, pod)
    await set_status(
        k8s_api,
        namespace,
        "k1",
        {"phase": "Working", "kubernetes": {"podName": "polecat-k1", "nodeName": FAKE_NODE}},
    )
    result = await gastown(lab, "-n", namespace, "logs", "k1")
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    line = one_line(result.stderr)
    assert line.startswith("gastown: cannot read the logs of Pod polecat-k1: the apiserver could not reach")
    assert "10250" in line  # the apiserver's own dial error, for the administrator


async def test_kubernetes_logs_of_a_missing_pod_is_exit_3(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    await create(k8s_api, namespace, polecat_body("k2", mode="kubernetes"))
    result = await gastown(lab, "-n", namespace, "logs", "k2")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert one_line(result.stderr) == f'gastown: Pod "polecat-k2" in namespace "{namespace}" not found'


async def test_kubernetes_attach_print(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    await create(k8s_api, namespace, polecat_body("k3", mode="kubernetes"))
    result = await gastown(lab, "-n", namespace, "attach", "k3", "--print")
    assert result.exit_code == 0, result.output
    assert shlex.split(result.stdout) == [
        "kubectl", "--kubeconfig", str(lab.kubeconfig), "attach", "-it", "--namespace", namespace,
        "pod/polecat-k3", "--container", "agent",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# logs / attach, local mode: real sshd + real tmux
# --------------------------------------------------------------------------------------
async def tmux(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture
async def local_polecat(
    *, k8s_api: client.ApiClient, namespace: str, crd: None, sshd: Any, tmux_socket: str, tmp_path: Path
) -> AsyncIterator[tuple[str, Path, list[str]]]:
    """A local Polecat whose tmux session (the "agent") runs on this host, reached over sshd.

    The agent prints a line, waits for a file the test creates, prints another line and
    exits; the pane stays (remain-on-exit) so its last output can be read, as gt does.
    """
    name = f"l-{uuid.uuid4().hex[:6]}"
    session = session_name(namespace, name)
    release = tmp_path / "release"
    await tmux("-L", tmux_socket, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "sleep 600")
    await tmux("-L", tmux_socket, "set-option", "-w", "-t", f"={session}:", "remain-on-exit", "on")
    script = (
        f"echo first line from the agent; while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.1; done; "
    )
    script += "echo second line from the agent"
    rc, out = await tmux("-L", tmux_socket, "respawn-pane", "-k", "-t", f"={session}:", script)
    assert rc == 0, out
    await create(k8s_api, namespace, polecat_body(name, local={"dispatcher": "tmux", "command": "agent"}))
    await set_status(
        k8s_api,
        namespace,
        name,
        {
            "phase": "Working",
            "local": {
                "host": sshd.host,
                "tmuxSocket": tmux_socket,
                "tmuxSession": session,
                "sessionActive": True,
            },
        },
    )
    ssh_flags = [
        "--ssh-port", str(sshd.port), "--ssh-user", sshd.user,
        "--ssh-key", str(sshd.client_key_file), "--known-hosts", str(sshd.known_hosts_file),
    ]  # fmt: skip
    try:
        yield name, release, ssh_flags
    finally:
        await tmux("-L", tmux_socket, "kill-session", "-t", f"={session}")


@pytest.mark.sshd
async def test_local_logs_reads_the_tmux_pane_over_ssh(
    lab: Lab, namespace: str, local_polecat: tuple[str, Path, list[str]]
) -> None:
    name, _, ssh_flags = local_polecat
    for _ in range(100):  # the pane prints its first line right after respawn
        result = await gastown(lab, "-n", namespace, "logs", name, *ssh_flags)
        assert result.exit_code == 0, result.output
        if "first line from the agent" in result.stdout:
            break
        await asyncio.sleep(0.1)
    assert "first line from the agent" in result.stdout.splitlines()
    assert "second line" not in result.stdout


@pytest.mark.sshd
async def test_local_logs_follow_until_the_agent_exits(
    lab: Lab, namespace: str, local_polecat: tuple[str, Path, list[str]]
) -> None:
    """`logs -f` as a real process: it prints the pane, keeps following, and ends with the agent."""
    name, release, ssh_flags = local_polecat
    script = Path(sys.executable).with_name("gastown")
    proc = await asyncio.create_subprocess_exec(
        str(script), "--kubeconfig", str(lab.kubeconfig), "-n", namespace, "logs", name, "-f", *ssh_flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        seen: list[str] = []
        async with asyncio.timeout(60):
            while "first line from the agent" not in seen:
                line = await proc.stdout.readline()
                assert line, f"logs -f ended early: {(await proc.stderr.read()).decode()}"
                seen.append(line.decode().rstrip("\n"))
            assert proc.returncode is None, "logs -f must keep following while the agent runs"
            release.touch()
            rest, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        lines = seen + rest.decode().splitlines()
        assert lines.count("first line from the agent") == 1
        assert lines.count("second line from the agent") == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.sshd
async def test_local_attach_prints_a_command_that_reaches_the_session(
    lab: Lab, namespace: str, local_polecat: tuple[str, Path, list[str]], sshd: Any, tmux_socket: str
) -> None:
    name, _, ssh_flags = local_polecat
    result = await gastown(lab, "-n", namespace, "attach", name, "--print", *ssh_flags)
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.stdout)
    session = session_name(namespace, name)
    assert argv[0] == "ssh" and argv[-6:] == ["tmux", "-L", tmux_socket, "attach", "-t", f"={session}"]
    assert f"{sshd.user}@{sshd.host}" in argv
    # The same ssh invocation, non-interactive, asking tmux whether the session exists.
    probe = [a for a in argv[:-6] if a != "-t"] + [
        "-o",
        "BatchMode=yes",
        "tmux",
        "-L",
        tmux_socket,
        "has-session",
        "-t",
        f"={session}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *probe,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.mark.sshd
async def test_local_logs_with_a_wrong_host_key_is_one_line(
    lab: Lab, namespace: str, local_polecat: tuple[str, Path, list[str]], tmp_path: Path, sshd: Any
) -> None:
    name, _, ssh_flags = local_polecat
    wrong = tmp_path / "known_hosts"
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {other_key}\n")
    flags = [*ssh_flags[: ssh_flags.index("--known-hosts")], "--known-hosts", str(wrong)]
    result = await gastown(lab, "-n", namespace, "logs", name, *flags)
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    assert "host key" in one_line(result.stderr)


# --------------------------------------------------------------------------------------
# kubectl plugin
# --------------------------------------------------------------------------------------
async def test_kubectl_gastown_runs_the_plugin(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    """The installed kubectl-gastown script is found by the lab's real kubectl on PATH."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "kubectl-gastown").exists():
        unavailable(
            "kubectl-gastown is not installed next to this Python: run `make venv` (pip install -e .)"
        )
    await create(k8s_api, namespace, polecat_body("plugged"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "KUBECONFIG": str(lab.kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        str(lab.kubectl_path), "gastown", "list", "-n", namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[1].split()[:4] == ["plugged", "gastown", "local", "Pending"]
    # Exit codes pass through kubectl: a missing Polecat is still 3.
    proc = await asyncio.create_subprocess_exec(
        str(lab.kubectl_path), "gastown", "describe", "-n", namespace, "nope",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == ExitCode.NOT_FOUND
    assert err.decode().startswith('gastown: Polecat "nope"')
