"""The Pod's clone → agent → commit → push path, outside a container, over a real sshd.

Real parts: OpenSSH's sshd on 127.0.0.1 (key auth only, its own host key), the ssh
client with strict known_hosts, git on both ends, and ``gastown-agent`` run as a
separate process exactly as the Pod's containers run it (same environment variables;
the Secret and ConfigMap volumes are plain directories with the modes the kubelet
gives them). The only stand-in is the LLM agent: a small Python script that edits
files the way an agent would (and fails on purpose where the test says so).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gastown.devcluster.sshd import UserSshd, sshd_available
from tests.support.ci import unavailable

pytestmark = pytest.mark.sshd

STAND_IN_AGENT = """\
# Stands in for the LLM agent (Claude Code): reads the task, edits files, exits.
import os, pathlib, sys
task = sys.stdin.read()
pathlib.Path("NOTES.md").write_text("task was: " + task + "\\n")
readme = pathlib.Path("README.md")
readme.write_text(readme.read_text() + "\\nFixed by the agent.\\n")
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
"""


@pytest.fixture(scope="module")
async def sshd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UserSshd]:
    reason = sshd_available()
    if reason is not None:
        unavailable(reason)
    async with UserSshd.start(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Seed",
        "GIT_AUTHOR_EMAIL": "seed@example.invalid",
        "GIT_COMMITTER_NAME": "Seed",
        "GIT_COMMITTER_EMAIL": "seed@example.invalid",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class Pod:
    """One simulated Pod: a bare repo behind sshd, mounted credentials, the runner's env."""

    origin: Path
    url: str
    env: dict[str, str]
    termination_log: Path

    async def step(self, name: str, **extra: str) -> tuple[int, str, str]:
        """Run ``gastown-agent NAME``; return (exit code, termination message, stderr)."""
        self.termination_log.unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gastown.runner.agent",
            name,
            env={**self.env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        message = self.termination_log.read_text() if self.termination_log.exists() else ""
        assert proc.returncode is not None
        return proc.returncode, message, err.decode(errors="replace")

    def report(self, message: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(message)
        return data

    def rev(self, ref: str) -> str:
        return _git("--git-dir", str(self.origin), "rev-parse", "--verify", ref)

    def show(self, ref: str, path: str) -> str:
        return _git("--git-dir", str(self.origin), "show", f"{ref}:{path}")


@pytest.fixture
def pod(sshd: UserSshd, tmp_path: Path) -> Pod:
    origin = tmp_path / "srv" / "app.git"
    _git("init", "--quiet", "--bare", "--initial-branch", "main", str(origin))
    seed = tmp_path / "seed"
    _git("clone", "--quiet", str(origin), str(seed))
    (seed / "README.md").write_text("# app\n")
    _git("add", "README.md", cwd=seed)
    _git("commit", "--quiet", "-m", "initial", cwd=seed)
    _git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=seed)

    # The Secret volume: the kubelet writes the key 0400 and fsGroup adds group read.
    secret = tmp_path / "etc" / "git-ssh"
    secret.mkdir(parents=True)
    shutil.copy(sshd.client_key_file, secret / "ssh-privatekey")
    (secret / "ssh-privatekey").chmod(0o440)
    configmap = tmp_path / "etc" / "known-hosts"
    configmap.mkdir(parents=True)
    shutil.copy(sshd.known_hosts_file, configmap / "known_hosts")

    home = tmp_path / "home dir"  # a space: every path must survive two layers of quoting
    agent = tmp_path / "stand_in_agent.py"
    agent.write_text(STAND_IN_AGENT)
    log = tmp_path / "termination-log"
    url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{origin}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GASTOWN_GIT_REPOSITORY": url,
        "GASTOWN_GIT_BRANCH": "main",
        "GASTOWN_WORK_BRANCH": "polecat/fix-login",
        "GASTOWN_WORKSPACE": str(tmp_path / "workspace" / "repo"),
        "GASTOWN_SSH_DIR": str(home / ".ssh"),
        "GASTOWN_SSH_KEY_SOURCE": str(secret / "ssh-privatekey"),
        "GASTOWN_KNOWN_HOSTS_SOURCE": str(configmap / "known_hosts"),
        "GASTOWN_GIT_SECRET": "git-key",
        "GASTOWN_KNOWN_HOSTS_CONFIGMAP": "git-known-hosts",
        "GASTOWN_TERMINATION_LOG": str(log),
        "GASTOWN_POLECAT": "fix-login",
        "GASTOWN_BEAD": "gt-abc12",
        "GASTOWN_TASK": "Fix the README; $(touch /tmp/should-not-exist)",
        "GASTOWN_AGENT_COMMAND": json.dumps([sys.executable, str(agent)]),
    }
    return Pod(origin=origin, url=url, env=env, termination_log=log)


async def test_clone_agent_commit_push(pod: Pod) -> None:
    code, message, err = await pod.step("clone")
    assert code == 0, err
    assert message == ""

    code, message, err = await pod.step("run")
    assert code == 0, err
    commit = pod.rev("refs/heads/polecat/fix-login")
    assert pod.report(message) == {
        "branch": "polecat/fix-login",
        "commit": commit,
        "pushed": True,
        "agentExitCode": 0,
        "message": (
            f"the agent succeeded; committed its changes and pushed {commit[:12]} to polecat/fix-login"
        ),
    }
    assert pod.show(commit, "README.md") == "# app\n\nFixed by the agent."
    assert pod.show(commit, "NOTES.md") == "task was: Fix the README; $(touch /tmp/should-not-exist)"
    assert pod.rev("refs/heads/main") == pod.rev(f"{commit}~1")  # one commit on top of main
    assert _git("--git-dir", str(pod.origin), "log", "-1", "--format=%an", commit) == "Gas Town Polecat"


async def test_unknown_host_key_fails_clearly(pod: Pod, sshd: UserSshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "etc" / "known-hosts" / "known_hosts"
    # The ConfigMap lists another host only: our server is unknown.
    known_hosts.write_text(sshd.host_key_line.replace(f"[{sshd.host}]", "[git.example.com]") + "\n")
    code, message, err = await pod.step("clone")
    assert code == 1
    host = f"[{sshd.host}]:{sshd.port}"
    assert message.startswith(f"host key for {host} not in known_hosts ConfigMap git-known-hosts: add it")
    assert err.rstrip().endswith(message)
    assert not (tmp_path / "workspace" / "repo").exists()


async def test_changed_host_key_fails_clearly(pod: Pod, sshd: UserSshd, tmp_path: Path) -> None:
    other = tmp_path / "impostor_key"
    keygen = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)
    )
    assert await keygen.wait() == 0
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    known_hosts = tmp_path / "etc" / "known-hosts" / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {key_type} {key}\n")
    code, message, _ = await pod.step("clone")
    assert code == 1
    assert message.startswith(
        f"host key for [{sshd.host}]:{sshd.port} does not match known_hosts ConfigMap git-known-hosts"
    )


async def test_no_known_hosts_configmap_trusts_nothing(pod: Pod, sshd: UserSshd) -> None:
    del pod.env["GASTOWN_KNOWN_HOSTS_SOURCE"], pod.env["GASTOWN_KNOWN_HOSTS_CONFIGMAP"]
    code, message, _ = await pod.step("clone")
    assert code == 1
    assert message.startswith(
        f"host key for [{sshd.host}]:{sshd.port} is unknown and no known_hosts ConfigMap"
    )


async def test_agent_failure_after_edits_is_pushed_and_reported(pod: Pod) -> None:
    assert (await pod.step("clone"))[0] == 0
    code, message, _ = await pod.step("run", STAND_IN_EXIT="7")
    assert code == 1
    report = pod.report(message)
    commit = pod.rev("refs/heads/polecat/fix-login")
    assert report["agentExitCode"] == 7
    assert report["pushed"] is True
    assert report["commit"] == commit
    assert report["message"].startswith("the agent exited with code 7; committed its changes and pushed")
    assert pod.show(commit, "README.md") == "# app\n\nFixed by the agent."


async def test_refused_key_on_push_is_reported(pod: Pod, sshd: UserSshd, tmp_path: Path) -> None:
    """The host drops the deploy key after the clone: the work is committed, not pushed."""
    assert (await pod.step("clone"))[0] == 0
    authorized = sshd.authorized_keys_file.read_text()
    sshd.authorized_keys_file.write_text("")
    try:
        code, message, _ = await pod.step("run")
    finally:
        sshd.authorized_keys_file.write_text(authorized)
    assert code == 1
    report = pod.report(message)
    assert report["pushed"] is False
    assert "refused the SSH key from Secret git-key" in report["message"]
    workspace = tmp_path / "workspace" / "repo"
    assert _git("log", "-1", "--format=%s", cwd=workspace) == "gt-abc12: work of polecat fix-login"


# A stand-in for the LLM agent that goes looking for the deploy key: every readable file
# under $HOME, the ssh dir and the workspace, and the environment it was given.
KEY_PROBE = r"""
import os, pathlib
marker = b"PRIVATE KEY"
found, looked = [], 0
for root in (os.environ["HOME"], os.environ["GASTOWN_PROBE_SSH_DIR"], "."):
    for path in pathlib.Path(root).rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            looked += 1
            try:
                if marker in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
if any(marker.decode() in v for v in os.environ.values()):
    found.append("environment")
pathlib.Path("PROBE.md").write_text(f"looked at {looked} files; key found in: {found or 'nothing'}\n")
"""


async def test_the_agent_cannot_find_the_key_on_disk_and_the_push_still_works(
    pod: Pod, tmp_path: Path
) -> None:
    """Today the clone leaves the key in $HOME/.ssh for the agent's whole run; now the runner
    holds it in memory while the (stand-in) agent runs and writes it back only for the push."""
    probe = tmp_path / "probe.py"
    probe.write_text(KEY_PROBE)
    code, _, err = await pod.step("clone")
    assert code == 0, err
    ssh_dir = Path(pod.env["GASTOWN_SSH_DIR"])
    assert b"PRIVATE KEY" in (ssh_dir / "id_gastown").read_bytes()  # the clone step had it
    code, message, err = await pod.step(
        "run",
        GASTOWN_AGENT_COMMAND=json.dumps([sys.executable, str(probe)]),
        GASTOWN_PROBE_SSH_DIR=str(ssh_dir),
    )
    assert code == 0, err
    assert pod.report(message)["pushed"] is True
    result = pod.show("refs/heads/polecat/fix-login", "PROBE.md")
    assert result.startswith("looked at ") and "key found in: nothing" in result, result
    assert not (ssh_dir / "id_gastown").exists()  # and not left behind after the push
