"""``gastown-agent clone``: the Pod's init step, from credentials to a work branch.

1. Install the SSH identity and known_hosts (see :mod:`gastown.runner.git_ssh`).
2. ``git clone --branch <gitBranch> -- <repository> <workspace>`` (``--`` so a URL can
   never be read as an option).
3. Check out the work branch: if origin already has it (an earlier Pod for this Polecat
   pushed work before it was deleted), continue from it, so the next push is a
   fast-forward and nothing is lost; otherwise create it from ``gitBranch``.

Running it again on a finished workspace is harmless: it reuses the clone if its origin
is the same repository. Every failure is a :class:`CloneError` whose message names what
is wrong and what to do; the CLI writes it to the termination log and stderr, where the
operator's observer picks it up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gastown.runner.git_cli import git
from gastown.runner.git_ssh import (
    DEFAULT_ALLOWED_PROTOCOLS,
    CredentialNames,
    explain_ssh_failure,
    git_env,
    install_identity,
    last_line,
    redact_url,
)

# Same rule as the API's GIT_BRANCH pattern; re-checked because the runner also runs by hand.
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class CloneError(Exception):
    """The clone step failed; ``message`` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class CloneConfig:
    """Everything the clone step needs (the CLI builds it from flags and env)."""

    repository: str
    branch: str
    work_branch: str
    workspace: Path
    ssh_dir: Path
    key_source: Path | None = None
    known_hosts_source: Path | None = None
    names: CredentialNames = field(default_factory=CredentialNames)
    allowed_protocols: str = DEFAULT_ALLOWED_PROTOCOLS


def check_branch(name: str, field: str) -> None:
    """Reject a branch name git or a shell could misread; ``field`` names its origin."""
    if not _BRANCH.match(name) or ".." in name or name.endswith((".lock", "/", ".")):
        raise CloneError(
            f"{field} {name!r} is not a valid branch name: use letters, digits, '.', '_', '-', '/', "
            "starting with a letter or digit"
        )


def clone(cfg: CloneConfig, base_env: Mapping[str, str]) -> str:
    """Clone and check out the work branch; return the checked-out commit."""
    if not cfg.repository:
        raise CloneError("no repository to clone: set spec.kubernetes.gitRepository")
    check_branch(cfg.branch, "gitBranch")
    check_branch(cfg.work_branch, "workBranch")
    for source in (cfg.key_source, cfg.known_hosts_source):
        if source is not None and not source.is_file():
            raise CloneError(f"{source} is missing: is the Secret/ConfigMap volume mounted with that key?")
    identity = install_identity(cfg.ssh_dir, cfg.key_source, cfg.known_hosts_source)
    env = git_env(identity, base_env, allowed_protocols=cfg.allowed_protocols)
    ws = cfg.workspace
    if (ws / ".git").is_dir():
        origin = git(["remote", "get-url", "origin"], cwd=ws, env=env, echo=False)
        if origin.stdout.strip() != cfg.repository:
            raise CloneError(
                f"workspace {ws} already holds a clone of another repository "
                f"({redact_url(origin.stdout.strip())}): empty it or use another workspace"
            )
    else:
        if ws.exists() and any(ws.iterdir()):
            raise CloneError(f"workspace {ws} is not empty and not a git clone: empty it")
        ws.parent.mkdir(parents=True, exist_ok=True)
        res = git(
            ["clone", "--branch", cfg.branch, "--origin", "origin", "--", cfg.repository, str(ws)],
            cwd=ws.parent,
            env=env,
        )
        if not res.ok:
            raise CloneError(_explain_clone_failure(res.stderr, cfg))
    if cfg.work_branch != cfg.branch:
        remote_ref = f"refs/remotes/origin/{cfg.work_branch}"
        resume = git(["rev-parse", "--verify", "--quiet", remote_ref], cwd=ws, env=env, echo=False).ok
        start = remote_ref if resume else f"refs/remotes/origin/{cfg.branch}"
        res = git(["checkout", "--no-track", "-B", cfg.work_branch, start], cwd=ws, env=env)
        if not res.ok:
            raise CloneError(f"cannot create work branch {cfg.work_branch}: {last_line(res.stderr)}")
    head = git(["rev-parse", "HEAD"], cwd=ws, env=env, echo=False)
    return head.stdout.strip()


def _explain_clone_failure(stderr: str, cfg: CloneConfig) -> str:
    repo = redact_url(cfg.repository)
    ssh = explain_ssh_failure(stderr, cfg.repository, cfg.names)
    if ssh is not None:
        return ssh
    if "Remote branch" in stderr and "not found" in stderr:
        return f"branch {cfg.branch} (spec.kubernetes.gitBranch) does not exist in {repo}"
    if re.search(r"transport '[^']*' not allowed", stderr):
        allowed = cfg.allowed_protocols.replace(":", ", ")
        return f"the transport of {repo} is not allowed (allowed: {allowed}): use an ssh:// or https:// URL"
    if "does not appear to be a git repository" in stderr or "Repository not found" in stderr:
        return f"{repo} is not a repository this key can read: check spec.kubernetes.gitRepository"
    return f"git clone of {repo} failed: {last_line(stderr) or 'no error output'}"
