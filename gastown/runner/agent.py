"""``gastown-agent``: the entry point of the kubernetes-mode Pod's containers.

``gastown-agent clone`` is the ``git-clone`` init container; ``gastown-agent run`` is
the ``agent`` container. The Pod passes everything through environment variables
(never through a shell line), each of which a flag can override when run by hand:

=============================  ==========================================================
GASTOWN_GIT_REPOSITORY         repository URL (clone)
GASTOWN_GIT_BRANCH             branch to clone (clone)
GASTOWN_WORK_BRANCH            branch results are pushed to (both)
GASTOWN_WORKSPACE              where the clone lives (both; default /workspace/repo)
GASTOWN_SSH_DIR                where the identity is installed (both; default ~/.ssh)
GASTOWN_SSH_KEY_SOURCE         mounted private key file (clone; unset: no key)
GASTOWN_KNOWN_HOSTS_SOURCE     mounted known_hosts file (clone; unset: no host is trusted)
GASTOWN_GIT_SECRET             name of the key's Secret, for messages
GASTOWN_KNOWN_HOSTS_CONFIGMAP  name of the known_hosts ConfigMap, for messages
GASTOWN_GIT_ALLOW_PROTOCOL     git transports allowed (default ssh:https)
GASTOWN_TASK / _TASK_FILE      the task text, or a file holding it (run)
GASTOWN_AGENT_COMMAND          agent argv as a JSON list (run; default Claude Code)
GASTOWN_GIT_AUTHOR_NAME/EMAIL  commit author (run)
GASTOWN_AGENT_STOP_GRACE       seconds from SIGTERM to SIGKILL of the agent (run; default 10)
GASTOWN_POLECAT, GASTOWN_BEAD  for the commit subject (run)
GASTOWN_CONTAINER_SWEEP        "true": after the agent, SIGKILL every other process of the
                               container's PID namespace but PID 1 (run; the Pod sets it)
GASTOWN_TERMINATION_LOG        report file (both; default /dev/termination-log)
=============================  ==========================================================

Exit codes: 0 success; 1 the step failed (the termination log says why); 2 bad usage.
The environment is read here and nowhere else; the steps receive typed configs.
Standard library only, so the image can install the package without dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from gastown.runner.clone import CloneConfig, CloneError, clone
from gastown.runner.git_ssh import DEFAULT_ALLOWED_PROTOCOLS, CredentialNames
from gastown.runner.run import (
    AGENT_DID_NOT_RUN,
    DEFAULT_AGENT_COMMAND,
    DEFAULT_AUTHOR_EMAIL,
    DEFAULT_AUTHOR_NAME,
    RunConfig,
    run,
)
from gastown.runner.termination import DEFAULT_PATH, RunReport, write_termination_message

DEFAULT_WORKSPACE = "/workspace/repo"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The runner was configured wrongly (missing or malformed setting)."""


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def opt(name: str, default: str | None = None) -> str | None:
        return env.get(name) or default

    parser = argparse.ArgumentParser(
        prog="gastown-agent",
        description="Clone a repository and run a Gas Town agent in it, pushing the results.",
    )
    parser.add_argument("--workspace", default=opt("GASTOWN_WORKSPACE", DEFAULT_WORKSPACE))
    parser.add_argument("--ssh-dir", default=opt("GASTOWN_SSH_DIR", str(Path.home() / ".ssh")))
    parser.add_argument("--work-branch", default=opt("GASTOWN_WORK_BRANCH"))
    parser.add_argument("--termination-log", default=opt("GASTOWN_TERMINATION_LOG", str(DEFAULT_PATH)))
    sub = parser.add_subparsers(dest="step", required=True)

    c = sub.add_parser("clone", help="install the SSH identity, clone, check out the work branch")
    c.add_argument("--repository", default=opt("GASTOWN_GIT_REPOSITORY"))
    c.add_argument("--branch", default=opt("GASTOWN_GIT_BRANCH", "main"))
    c.add_argument("--ssh-key-source", default=opt("GASTOWN_SSH_KEY_SOURCE"))
    c.add_argument("--known-hosts-source", default=opt("GASTOWN_KNOWN_HOSTS_SOURCE"))

    r = sub.add_parser("run", help="run the agent, then commit and push everything")
    r.add_argument("--task-file", default=opt("GASTOWN_TASK_FILE"))
    return parser


def _names(env: Mapping[str, str]) -> CredentialNames:
    return CredentialNames(
        git_secret=env.get("GASTOWN_GIT_SECRET") or None,
        known_hosts_configmap=env.get("GASTOWN_KNOWN_HOSTS_CONFIGMAP") or None,
    )


def _agent_command(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("GASTOWN_AGENT_COMMAND")
    if not raw:
        return DEFAULT_AGENT_COMMAND
    try:
        argv = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"GASTOWN_AGENT_COMMAND is not JSON ({exc}): give an argv list") from exc
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise UsageError(
            'GASTOWN_AGENT_COMMAND must be a JSON list of non-empty strings, e.g. ["claude", "-p"]'
        )
    return tuple(argv)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise UsageError(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return value


def _task(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.task_file:
        try:
            return Path(args.task_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the task file {args.task_file}: {exc.strerror}") from exc
    return env.get("GASTOWN_TASK", "")


def _clone(args: argparse.Namespace, env: Mapping[str, str], log: Path) -> int:
    cfg = CloneConfig(
        repository=args.repository or "",
        branch=args.branch,
        work_branch=args.work_branch or f"polecat/{env.get('GASTOWN_POLECAT') or 'work'}",
        workspace=Path(args.workspace),
        ssh_dir=Path(args.ssh_dir),
        key_source=Path(args.ssh_key_source) if args.ssh_key_source else None,
        known_hosts_source=Path(args.known_hosts_source) if args.known_hosts_source else None,
        names=_names(env),
        allowed_protocols=env.get("GASTOWN_GIT_ALLOW_PROTOCOL") or DEFAULT_ALLOWED_PROTOCOLS,
    )
    try:
        commit = clone(cfg, env)
    except CloneError as exc:
        sys.stderr.write(f"gastown-agent clone: {exc.message}\n")
        write_termination_message(log, exc.message)
        return EXIT_FAILED
    print(f"gastown-agent clone: {cfg.work_branch} at {commit} in {cfg.workspace}", flush=True)
    return EXIT_OK


def _run(args: argparse.Namespace, env: Mapping[str, str], log: Path) -> int:
    work_branch = args.work_branch or ""
    try:
        if not work_branch:
            raise UsageError("no work branch: set GASTOWN_WORK_BRANCH or --work-branch")
        polecat, bead = env.get("GASTOWN_POLECAT", ""), env.get("GASTOWN_BEAD", "")
        subject = f"{bead}: work of polecat {polecat}" if bead else f"Work of polecat {polecat or 'agent'}"
        cfg = RunConfig(
            workspace=Path(args.workspace),
            work_branch=work_branch,
            task=_task(args, env),
            ssh_dir=Path(args.ssh_dir),
            agent_command=_agent_command(env),
            author_name=env.get("GASTOWN_GIT_AUTHOR_NAME") or DEFAULT_AUTHOR_NAME,
            author_email=env.get("GASTOWN_GIT_AUTHOR_EMAIL") or DEFAULT_AUTHOR_EMAIL,
            commit_subject=subject,
            names=_names(env),
            allowed_protocols=env.get("GASTOWN_GIT_ALLOW_PROTOCOL") or DEFAULT_ALLOWED_PROTOCOLS,
            agent_stop_grace=_seconds(env, "GASTOWN_AGENT_STOP_GRACE", 10.0),
            container_sweep=env.get("GASTOWN_CONTAINER_SWEEP") == "true",
        )
    except UsageError as exc:
        report = RunReport(work_branch, None, False, AGENT_DID_NOT_RUN, f"the agent did not run: {exc}")
        write_termination_message(log, report.to_json())
        sys.stderr.write(f"gastown-agent run: {exc}\n")
        return EXIT_USAGE
    report = run(cfg, env)
    text = report.to_json()
    write_termination_message(log, text)
    print(f"gastown-agent run: {text}", flush=True)
    return EXIT_OK if report.succeeded else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the process exit code."""
    env = dict(os.environ)
    args = _parser(env).parse_args(argv)
    log = Path(args.termination_log)
    if args.step == "clone":
        return _clone(args, env, log)
    return _run(args, env, log)


if __name__ == "__main__":
    sys.exit(main())
