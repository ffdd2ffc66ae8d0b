"""Where the CLI finds a Polecat's work, and the exact commands it runs to get there."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from gastown.api.models import Polecat
from gastown.cli.errors import CLIError, ExitCode
from gastown.cli.workload import (
    SSHOptions,
    command_name,
    hint_commands,
    local_attach_argv,
    local_settings,
    pod_of,
    with_kubectl_flags,
)
from gastown.executors.local.executor import LocalExecutor


def make(mode: str = "local", status: dict[str, Any] | None = None, **spec: Any) -> Polecat:
    body: dict[str, Any] = {"rig": "gastown", "beadID": "gt-abc12", "executionMode": mode, **spec}
    if mode == "kubernetes":
        body.setdefault("kubernetes", {"gitRepository": "git@github.com:me/app.git"})
    return Polecat.from_dict(
        {"metadata": {"name": "p1", "namespace": "team-a", "uid": "u1"}, "spec": body, "status": status}
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GASTOWN_SSH_HOST", "GASTOWN_SSH_PORT", "GASTOWN_SSH_USER", "GASTOWN_SSH_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)


def test_host_comes_from_status_then_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    polecat = make(status={"local": {"host": "ops.internal", "tmuxSocket": "sock1", "tmuxSession": "s"}})
    monkeypatch.setenv("GASTOWN_SSH_HOST", "from-env")
    monkeypatch.setenv("GASTOWN_SSH_USER", "envuser")
    settings = local_settings(polecat, SSHOptions(port=2222, key_file=Path("/k")))
    assert (settings.ssh.host, settings.ssh.port, settings.ssh.user) == ("ops.internal", 2222, "envuser")
    assert settings.ssh.key_file == Path("/k")
    assert settings.tmux_socket == "sock1"
    assert local_settings(polecat, SSHOptions(host="override")).ssh.host == "override"


def test_env_host_used_when_status_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASTOWN_SSH_HOST", "from-env")
    assert local_settings(make(), SSHOptions()).ssh.host == "from-env"


def test_no_host_anywhere_is_one_clear_error() -> None:
    with pytest.raises(CLIError) as info:
        local_settings(make(), SSHOptions())
    assert info.value.code is ExitCode.UNREACHABLE
    assert "--ssh-host" in info.value.message


def test_bad_port_is_a_usage_error() -> None:
    with pytest.raises(CLIError) as info:
        local_settings(make(), SSHOptions(host="h", port=70000))
    assert info.value.code is ExitCode.USAGE


def test_local_attach_argv_is_the_executors_plus_key_and_known_hosts() -> None:
    polecat = make(
        status={"local": {"host": "ops", "tmuxSocket": "gastown", "tmuxSession": "gp-team-a-p1"}},
        local={"dispatcher": "tmux", "command": "claude"},
    )
    settings = local_settings(
        polecat, SSHOptions(port=2200, user="me", key_file=Path("/keys/id"), known_hosts_file=Path("/kh"))
    )
    base = LocalExecutor(settings).attach_command(polecat)
    argv = local_attach_argv(base, settings.ssh)
    assert argv == [
        "ssh",
        "-i", "/keys/id", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/kh", "-o", "StrictHostKeyChecking=yes",
        "-t", "-p", "2200", "me@ops",
        "tmux", "-L", "gastown", "attach", "-t", "=gp-team-a-p1",
    ]  # fmt: skip


def test_kubectl_flags_go_right_after_kubectl() -> None:
    argv = ["kubectl", "attach", "-it", "--namespace", "team-a", "pod/polecat-p1", "--container", "agent"]
    flags = ["--kubeconfig", "/kc", "--context", "lab"]
    assert with_kubectl_flags(argv, flags) == [
        "kubectl", "--kubeconfig", "/kc", "--context", "lab",
        "attach", "-it", "--namespace", "team-a", "pod/polecat-p1", "--container", "agent",
    ]  # fmt: skip


def test_pod_name_falls_back_to_the_deterministic_one() -> None:
    assert pod_of(make("kubernetes")) == "polecat-p1"


def test_hints_are_runnable_commands() -> None:
    hints = dict(hint_commands(make(), invoked_as="kubectl gastown", kubectl_flags=["--context", "a b"]))
    assert shlex.split(hints["Logs"]) == [
        "kubectl", "gastown", "--context", "a b", "-n", "team-a", "logs", "p1", "--follow",
    ]  # fmt: skip
    k8s = dict(hint_commands(make("kubernetes"), invoked_as="gastown", kubectl_flags=[]))
    assert "kubectl logs -n team-a pod/polecat-p1 -c agent -f" in k8s["Logs"]


def test_command_name() -> None:
    assert command_name("/usr/local/bin/kubectl-gastown") == "kubectl gastown"
    assert command_name("gastown") == "gastown"
