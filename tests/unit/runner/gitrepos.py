"""Real git repositories and a way to run ``gastown-agent`` for the runner tests.

These tests use real git on local bare repositories (the ``file`` transport, allowed
explicitly with ``GASTOWN_GIT_ALLOW_PROTOCOL``); the SSH path has its own test over a
real sshd in tests/integration/test_runner_git_over_sshd.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.invalid",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.invalid",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git for test setup; fail loudly."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def make_origin(root: Path, branches: tuple[str, ...] = ("main",)) -> Path:
    """A bare repository with a README commit on each of ``branches``."""
    origin = root / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch", branches[0], str(origin))
    seed = root / "seed"
    git("clone", "--quiet", str(origin), str(seed))
    (seed / "README.md").write_text("# app\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "initial", cwd=seed)
    for branch in branches:
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=seed)
    return origin


def show(origin: Path, ref: str, path: str) -> str:
    """A file's content at ``ref`` in ``origin``."""
    return git("--git-dir", str(origin), "show", f"{ref}:{path}")


def rev(origin: Path, ref: str) -> str:
    return git("--git-dir", str(origin), "rev-parse", "--verify", ref)


@dataclass
class Step:
    """One ``gastown-agent`` invocation's outcome."""

    returncode: int
    stdout: str
    stderr: str
    termination: str

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.termination)
        return data


def agent_env(root: Path, origin: Path, **extra: str) -> dict[str, str]:
    """Environment for ``gastown-agent`` as the Pod would set it, rooted in ``root``."""
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "GASTOWN_GIT_REPOSITORY": str(origin),
        "GASTOWN_GIT_BRANCH": "main",
        "GASTOWN_WORK_BRANCH": "polecat/fix-login",
        "GASTOWN_WORKSPACE": str(root / "workspace" / "repo"),
        "GASTOWN_SSH_DIR": str(root / "home" / ".ssh"),
        "GASTOWN_TERMINATION_LOG": str(root / "termination-log"),
        "GASTOWN_GIT_ALLOW_PROTOCOL": "file",
        "GASTOWN_POLECAT": "fix-login",
        "GASTOWN_BEAD": "gt-abc12",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.update(extra)
    return env


def gastown_agent(step: str, env: dict[str, str], timeout: float = 60) -> Step:
    """Run ``gastown-agent STEP`` as the container would (a separate process)."""
    log = Path(env["GASTOWN_TERMINATION_LOG"])
    log.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "gastown.runner.agent", step],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    termination = log.read_text() if log.exists() else ""
    return Step(proc.returncode, proc.stdout, proc.stderr, termination)


def script(root: Path, name: str, body: str) -> str:
    """Write a Python stand-in for the LLM agent; return the GASTOWN_AGENT_COMMAND JSON."""
    path = root / name
    path.write_text(body)
    return json.dumps([sys.executable, str(path)])
