"""The runner's SSH setup for git: installed identity, the ssh command line, failure messages."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from gastown.runner.git_ssh import (
    CredentialNames,
    SSHIdentity,
    explain_ssh_failure,
    git_env,
    install_identity,
    installed_identity,
    redact_url,
    ssh_command,
    ssh_host,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_identity_fixes_modes_and_final_newline(tmp_path: Path) -> None:
    mounted = tmp_path / "mount"
    mounted.mkdir()
    key = mounted / "ssh-privatekey"
    key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----")
    key.chmod(0o440)  # what a Secret volume with fsGroup looks like: group-readable
    hosts = mounted / "known_hosts"
    hosts.write_text("github.com ssh-ed25519 AAAA\n")
    identity = install_identity(tmp_path / "home" / ".ssh", key, hosts)
    assert identity.key_file is not None
    assert mode(identity.key_file) == 0o600
    assert identity.key_file.read_bytes().endswith(b"-----END OPENSSH PRIVATE KEY-----\n")
    assert identity.known_hosts_file.read_text() == "github.com ssh-ed25519 AAAA\n"
    assert mode(tmp_path / "home" / ".ssh") == 0o700
    assert installed_identity(tmp_path / "home" / ".ssh") == identity


def test_install_without_sources_trusts_no_host(tmp_path: Path) -> None:
    identity = install_identity(tmp_path / ".ssh", None, None)
    assert identity.key_file is None
    assert identity.known_hosts_file.read_text() == ""
    assert installed_identity(tmp_path / ".ssh").key_file is None


def test_ssh_command_is_strict_and_quoted() -> None:
    identity = SSHIdentity(Path("/home/a b/.ssh/id"), Path("/home/a b/.ssh/known_hosts; rm -rf ~"))
    argv = shlex.split(ssh_command(identity))
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    assert "StrictHostKeyChecking=yes" in argv
    assert 'UserKnownHostsFile="/home/a b/.ssh/known_hosts; rm -rf ~"' in argv
    assert "GlobalKnownHostsFile=/dev/null" in argv
    assert "BatchMode=yes" in argv
    assert argv[-4:] == ["-o", "IdentitiesOnly=yes", "-i", "/home/a b/.ssh/id"]
    no_key = shlex.split(ssh_command(SSHIdentity(None, Path("/k"))))
    assert "-i" not in no_key


def test_git_env() -> None:
    env = git_env(SSHIdentity(None, Path("/k")), {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "ssh:https"
    assert env["GIT_SSH_COMMAND"].startswith("ssh ")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("git@github.com:acme/app.git", "github.com"),
        ("github.com:acme/app.git", "github.com"),
        ("ssh://git@github.com/acme/app.git", "github.com"),
        ("ssh://git@github.com:22/acme/app.git", "github.com"),
        ("ssh://git@127.0.0.1:2222/srv/app.git", "[127.0.0.1]:2222"),
        ("ssh://git@[::1]:2222/srv/app.git", "[::1]:2222"),
        ("https://github.com/acme/app.git", None),
        ("/srv/app.git", None),
        ("./app.git", None),
    ],
)
def test_ssh_host(url: str, host: str | None) -> None:
    assert ssh_host(url) == host


def test_redact_url() -> None:
    assert redact_url("https://bot:s3cret@git.example/app.git") == "https://bot:***@git.example/app.git"
    assert redact_url("https://git.example:8443/app.git") == "https://git.example:8443/app.git"
    assert redact_url("git@github.com:acme/app.git") == "git@github.com:acme/app.git"


NAMES = CredentialNames(git_secret="git-key", known_hosts_configmap="git-known-hosts")
URL = "ssh://git@127.0.0.1:2222/srv/app.git"


def test_unknown_host_message() -> None:
    stderr = (
        "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n"
        "Host key verification failed.\nfatal: Could not read from remote repository.\n"
    )
    assert explain_ssh_failure(stderr, URL, NAMES) == (
        "host key for [127.0.0.1]:2222 not in known_hosts ConfigMap git-known-hosts: add it "
        "(e.g. the output of ssh-keyscan for [127.0.0.1]:2222) to the ConfigMap's known_hosts key"
    )
    no_cm = explain_ssh_failure(stderr, URL, CredentialNames())
    assert no_cm is not None and "spec.kubernetes.knownHostsConfigMapRef" in no_cm


def test_changed_host_key_message() -> None:
    stderr = (
        "@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n"
        "Host key verification failed.\n"
    )
    message = explain_ssh_failure(stderr, URL, NAMES)
    assert message is not None
    assert message.startswith(
        "host key for [127.0.0.1]:2222 does not match known_hosts ConfigMap git-known-hosts"
    )


def test_refused_key_message() -> None:
    stderr = "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n"
    message = explain_ssh_failure(stderr, URL, NAMES)
    assert message is not None and "Secret git-key" in message and "deploy key" in message
    message = explain_ssh_failure(stderr, URL, CredentialNames())
    assert message is not None and "spec.kubernetes.gitSecretRef" in message


def test_other_failures_are_not_ssh_failures() -> None:
    assert explain_ssh_failure("fatal: Remote branch nope not found in upstream origin\n", URL, NAMES) is None
