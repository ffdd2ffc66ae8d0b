"""``gastown-agent run``: run the agent, then save everything it did to origin.

The contract (what the operator relies on):

* The agent command is an argv list (default: Claude Code non-interactive,
  ``claude -p --dangerously-skip-permissions``; the Pod is the sandbox). The task text
  reaches it on stdin and as a file named by ``$GASTOWN_TASK_FILE``; it is never part of
  an argv or a shell line, so a hostile task is inert data.
* Whatever the agent's outcome, every change in the workspace is committed
  (``git add -A``; hooks and signing off, so nothing can block saving) and ``HEAD`` is
  pushed to ``refs/heads/<workBranch>``. A failing agent's partial work is on the
  branch; the report says it failed.
* SIGTERM/SIGINT (Pod deleted, ``activeDeadlineSeconds`` reached) stop the agent's
  process group (SIGKILL after ``agent_stop_grace`` seconds) and the commit and push
  still happen inside the Pod's termination grace period.
* The report (:class:`~gastown.runner.termination.RunReport`) goes to the termination
  log; exit code 0 only if the agent exited 0 **and** the push succeeded.

The deploy key is never readable by the agent (it runs as the same uid, so file modes
cannot separate them; time and process state do):

1. Before the agent starts, the runner reads the key (and known_hosts) the clone step
   installed into memory, **deletes the key file**, and marks itself non-dumpable
   (``prctl(PR_SET_DUMPABLE, 0)``): its ``/proc/<pid>/mem``, ``environ``, ``fd`` and
   ptrace are then closed to same-uid processes without ``CAP_SYS_PTRACE`` (the Pod drops
   all capabilities). The agent's environment names no key.
2. After the agent's process group is gone, with ``container_sweep`` (set by the Pod,
   whose container has its own PID namespace) ``kill(-1, SIGKILL)`` removes every other
   process of the container but tini, so nothing the agent detached (``setsid``) is
   left to watch for the key.
3. Only for ``git push`` is the key written to a fresh 0600 file in a new 0700 directory,
   with config the agent could have planted (``~/.gitconfig``, hooks, fsmonitor) turned
   off; the directory is removed right after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from gastown.runner.git_cli import git
from gastown.runner.git_ssh import (
    DEFAULT_ALLOWED_PROTOCOLS,
    CredentialNames,
    SSHIdentity,
    explain_ssh_failure,
    git_env,
    installed_identity,
    last_line,
)
from gastown.runner.key_custody import sweep_container, take_credentials
from gastown.runner.termination import RunReport

DEFAULT_AGENT_COMMAND = ("claude", "-p", "--dangerously-skip-permissions")
DEFAULT_AUTHOR_NAME = "Gas Town Polecat"
DEFAULT_AUTHOR_EMAIL = "polecat@gastown.invalid"
# agentExitCode when the agent never ran (no workspace, bad command line).
AGENT_DID_NOT_RUN = -1


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything the run step needs (the CLI builds it from flags and env)."""

    workspace: Path
    work_branch: str
    task: str
    ssh_dir: Path
    agent_command: tuple[str, ...] = DEFAULT_AGENT_COMMAND
    author_name: str = DEFAULT_AUTHOR_NAME
    author_email: str = DEFAULT_AUTHOR_EMAIL
    commit_subject: str = "Polecat work"
    names: CredentialNames = field(default_factory=CredentialNames)
    allowed_protocols: str = DEFAULT_ALLOWED_PROTOCOLS
    agent_stop_grace: float = 10.0
    push_attempts: int = 3
    push_retry_delay: float = 2.0
    # Only where the runner's container has its own PID namespace (the Pod): kill(-1) there
    # ends the agent's detached leftovers; anywhere else it would hit the user's processes.
    container_sweep: bool = False


@dataclass(slots=True)
class _AgentRun:
    """The agent child and whether we were asked to stop it."""

    proc: subprocess.Popen[bytes] | None = None
    stop_requested: bool = False
    timers: list[threading.Timer] = field(default_factory=list)


def run(cfg: RunConfig, base_env: Mapping[str, str]) -> RunReport:
    """Run the agent, commit and push; never raises for git or agent failures."""
    held = take_credentials(installed_identity(cfg.ssh_dir))
    # The agent's (and commit's) git environment names no key: there is none on disk now.
    no_key = SSHIdentity(key_file=None, known_hosts_file=cfg.ssh_dir / "known_hosts")
    env = git_env(no_key, base_env, allowed_protocols=cfg.allowed_protocols)
    if not (cfg.workspace / ".git").is_dir():
        return RunReport(
            branch=cfg.work_branch,
            commit=None,
            pushed=False,
            agent_exit_code=AGENT_DID_NOT_RUN,
            message=f"the agent did not run: {cfg.workspace} is not a git clone (did git-clone run?)",
        )
    agent_code, agent_note = _run_agent(cfg, env)
    if cfg.container_sweep:
        sweep_container()
    changed, commit_error = _commit_all(cfg, env, agent_code)
    head = git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=cfg.workspace, env=env, echo=False)
    commit = head.stdout.strip() or None
    agent = "the agent succeeded" if agent_code == 0 else f"the agent exited with code {agent_code}"
    if agent_note:
        agent += f" ({agent_note})"
    short, branch = (commit or "")[:12], cfg.work_branch
    if commit_error is not None:
        pushed, message = False, f"{agent}; its changes could NOT be committed: {commit_error}"
    elif commit is None:
        pushed, message = False, f"{agent}; there is no commit to push"
    else:
        with held.installed() as identity:
            push_env = git_env(identity, base_env, allowed_protocols=cfg.allowed_protocols)
            pushed, push_error = _push(cfg, push_env)
        if pushed:
            what = "committed its changes and pushed" if changed else "it changed no files; pushed"
            message = f"{agent}; {what} {short} to {branch}"
        else:
            saved = "its changes were committed" if changed else "it changed no files"
            message = f"{agent}; {saved} but NOT pushed to {branch}: {push_error}"
    return RunReport(branch=branch, commit=commit, pushed=pushed, agent_exit_code=agent_code, message=message)


def _run_agent(cfg: RunConfig, env: dict[str, str]) -> tuple[int, str]:
    """Run the agent command with the task on stdin and in a file; return (exit code, note)."""
    fd, task_path = tempfile.mkstemp(prefix="gastown-task-", suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(cfg.task)
    agent_env = {**env, "GASTOWN_TASK_FILE": task_path}
    state = _AgentRun()
    previous = {sig: signal.signal(sig, _stopper(state, cfg.agent_stop_grace)) for sig in _STOP_SIGNALS}
    try:
        try:
            state.proc = subprocess.Popen(
                list(cfg.agent_command),
                cwd=cfg.workspace,
                env=agent_env,
                stdin=subprocess.PIPE,
                start_new_session=True,  # its own process group, so a stop reaches its children
            )
        except OSError as exc:
            return 127, f"the agent command {cfg.agent_command[0]!r} could not start: {exc.strerror or exc}"
        feeder = threading.Thread(target=_feed, args=(state.proc, cfg.task.encode()), daemon=True)
        feeder.start()
        code = state.proc.wait()
        feeder.join(timeout=1)
        _signal_group(state.proc, signal.SIGKILL)  # nothing the agent started may outlive it
    finally:
        for timer in state.timers:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        Path(task_path).unlink(missing_ok=True)
    if code < 0:
        code = 128 - code  # shell convention: killed by signal N -> 128+N
    note = "it was stopped because the Pod is terminating" if state.stop_requested else ""
    return code, note


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stopper(state: _AgentRun, grace: float) -> Callable[[int, FrameType | None], None]:
    """A signal handler that stops the agent's group and lets the run go on to save work."""

    def handle(signum: int, frame: FrameType | None) -> None:
        del frame
        state.stop_requested = True
        sys.stderr.write(f"gastown-agent: got signal {signum}; stopping the agent, then saving its work\n")
        if state.proc is not None:
            _signal_group(state.proc, signal.SIGTERM)
            timer = threading.Timer(grace, _signal_group, args=(state.proc, signal.SIGKILL))
            timer.daemon = True
            state.timers.append(timer)
            timer.start()

    return handle


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    """Write the task to the agent's stdin; an agent that does not read it is fine."""
    stdin = proc.stdin
    if stdin is None:
        return
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _commit_all(cfg: RunConfig, env: dict[str, str], agent_code: int) -> tuple[bool, str | None]:
    """Commit every change in the workspace; return (something committed, error)."""
    ws = cfg.workspace
    lock = ws / ".git" / "index.lock"
    if lock.exists():
        # The agent is gone (we waited for its whole process group), so a lock it left
        # behind is stale and would block `git add`.
        lock.unlink(missing_ok=True)
    add = git(["add", "--all"], cwd=ws, env=env)
    if not add.ok:
        return False, f"git add failed: {last_line(add.stderr)}"
    staged = git(["diff", "--cached", "--quiet"], cwd=ws, env=env, echo=False)
    if staged.returncode == 0:
        return False, None
    author = {
        "GIT_AUTHOR_NAME": cfg.author_name,
        "GIT_AUTHOR_EMAIL": cfg.author_email,
        "GIT_COMMITTER_NAME": cfg.author_name,
        "GIT_COMMITTER_EMAIL": cfg.author_email,
    }
    body = f"Agent exit code: {agent_code}."
    if agent_code != 0:
        body += " The agent failed; this commit saves its changes as it left them."
    commit = git(
        [
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--no-verify",
            "--quiet",
            "-m",
            cfg.commit_subject,
            "-m",
            body,
        ],
        cwd=ws,
        env={**env, **author},
    )
    if not commit.ok:
        return False, f"git commit failed: {last_line(commit.stderr) or last_line(commit.stdout)}"
    return True, None


def _remote_refusal(porcelain: str, stderr: str, limit: int = 400) -> str:
    """Why the remote refused a push: the porcelain reason plus the remote's own words."""
    reason = ""
    for line in porcelain.splitlines():
        if "[remote rejected]" in line:
            reason = line.split("[remote rejected]", 1)[1].strip().strip("()")
            break
    said = [
        line.strip()[len("remote:") :].strip()
        for line in stderr.splitlines()
        if line.strip().startswith("remote:") and line.strip()[len("remote:") :].strip()
    ]
    text = f"{reason or 'rejected'}; the remote said: {' / '.join(said)}" if said else reason or "rejected"
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PUSH_HARDENING = ("-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false")


def _push(cfg: RunConfig, env: dict[str, str]) -> tuple[bool, str | None]:
    """Push HEAD to the work branch, retrying faults that may pass; return (pushed, error)."""
    origin = git(["remote", "get-url", "origin"], cwd=cfg.workspace, env=env, echo=False).stdout.strip()
    error = "git push was not attempted"
    for attempt in range(max(1, cfg.push_attempts)):
        if attempt:
            time.sleep(cfg.push_retry_delay * attempt)
        res = git(
            # --no-verify: a pre-push hook the agent left must not keep its work from origin.
            # No hooks or fsmonitor at all, no global/system config: nothing the agent planted
            # runs while the key is on disk.
            [
                *_PUSH_HARDENING,
                "push",
                "--porcelain",
                "--no-verify",
                "origin",
                f"HEAD:refs/heads/{cfg.work_branch}",
            ],
            cwd=cfg.workspace,
            env={**env, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
        )
        if res.ok:
            return True, None
        explained = explain_ssh_failure(res.stderr, origin, cfg.names)
        if explained is not None:
            return False, explained
        if "[remote rejected]" in res.stdout:
            # A hook or a server policy said no: trying again cannot change that; what the
            # remote said (its "remote:" lines) is what the user can act on.
            return (
                False,
                f"origin refused the push to {cfg.work_branch}: {_remote_refusal(res.stdout, res.stderr)}",
            )
        if "[rejected]" in res.stdout or "rejected" in res.stderr:
            return False, (
                f"origin rejected the push to {cfg.work_branch} (it has commits this Pod does not): "
                f"{last_line(res.stderr) or last_line(res.stdout)}"
            )
        error = f"git push failed: {last_line(res.stderr) or 'no error output'}"
    return False, error
