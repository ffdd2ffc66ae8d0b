"""Where a Polecat's work runs and how a user gets to it: the SSH target, attach argv, hints.

Local mode: the work is a tmux session on the operator's host. The CLI reaches it
the way the operator does, over SSH, with the same settings object
(:class:`~gastown.settings.SSHSettings`): the host comes from ``--ssh-host``, else the
Polecat's ``status.local.host`` (what the operator recorded), else ``GASTOWN_SSH_HOST``;
port, user, key and known_hosts from the ``--ssh-*`` flags, else the ``GASTOWN_SSH_*``
environment, else the defaults. Host keys are always checked.

Kubernetes mode: the work is the Pod ``status.kubernetes.podName`` (else the
deterministic ``polecat-<name>``); attaching is ``kubectl attach``/``kubectl exec``
with the user's own kubeconfig and context.

All pure except reading the environment through pydantic-settings.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gastown.api.models import ExecutionMode, Polecat
from gastown.cli.errors import CLIError, ExitCode
from gastown.executors.kubernetes.pod import AGENT_CONTAINER, pod_name
from gastown.settings import PodDefaults, Settings, SSHSettings

if TYPE_CHECKING:
    from gastown.executors.kubernetes.executor import KubernetesExecutor
    from gastown.kube import KubeClient

_SOCKET = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class SSHOptions:
    """The ``--ssh-*`` flags; None means "not given" (fall back to status, then environment)."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: Path | None = None
    known_hosts_file: Path | None = None


EFFECTIVE_FIELDS = ("executionMode", "agent", "local", "kubernetes")
"""The spec fields a Rig may fill in, recorded at dispatch in ``status.effective``."""


def effective_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The Polecat with the values it runs with: ``status.effective`` over its spec.

    A Polecat dispatched with a Rig has the Rig's defaults resolved and recorded in
    ``status.effective``; logs, attach and the hints must reach the work where it really
    runs (a Rig-based Polecat's own spec may not even name its mode). Without the record
    the spec is the effective spec, as before Rigs.
    """
    status = obj.get("status")
    effective = status.get("effective") if isinstance(status, dict) else None
    if not isinstance(effective, dict):
        return obj
    spec = dict(obj.get("spec") or {})
    for key in EFFECTIVE_FIELDS:
        if effective.get(key) is not None:
            spec[key] = effective[key]
    if spec.get("executionMode") == "kubernetes":
        spec.pop("local", None)
    elif spec.get("executionMode") == "local":
        spec.pop("kubernetes", None)
    return {**obj, "spec": spec}


def parse_polecat(obj: dict[str, Any]) -> Polecat:
    """The apiserver's dict as the model the executors take (its effective values, see above)."""
    try:
        return Polecat.from_dict(effective_object(obj))
    except ValidationError as exc:
        name = (obj.get("metadata") or {}).get("name", "?")
        raise CLIError(
            f"Polecat {name} does not parse as a v1alpha1 Polecat: {exc.errors()[0]['msg']}"
        ) from exc


def mode_of(polecat: Polecat) -> ExecutionMode:
    return polecat.spec.executionMode


def local_settings(polecat: Polecat, options: SSHOptions) -> Settings:
    """Operator-shaped settings that reach the Polecat's host, for the LocalExecutor.

    The tmux socket recorded in the status (tmux dispatcher) becomes the settings'
    socket, so the executor looks where the operator started the session.
    """
    status_local = polecat.status.local if polecat.status is not None else None
    ssh_values: dict[str, Any] = {}
    host = options.host or (status_local.host if status_local is not None else None)
    if host:
        ssh_values["host"] = host
    for key in ("port", "user", "key_file", "known_hosts_file"):
        value = getattr(options, key)
        if value is not None:
            ssh_values[key] = value
    values: dict[str, Any] = {}
    socket = status_local.tmuxSocket if status_local is not None else None
    if socket and _SOCKET.match(socket):
        values["tmux_socket"] = socket
    try:
        ssh = SSHSettings(**ssh_values)
        settings = Settings(ssh=ssh, **values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CLIError(f"invalid SSH setting {where}: {error['msg']}", ExitCode.USAGE) from exc
    if settings.ssh.host is None:
        raise CLIError(
            f"Polecat {polecat.key} has no status.local.host yet and no SSH host is configured: pass "
            "--ssh-host or set GASTOWN_SSH_HOST",
            ExitCode.UNREACHABLE,
        )
    return settings


def local_attach_argv(base: list[str], ssh: SSHSettings) -> list[str]:
    """The executor's ``ssh -t ... tmux attach`` plus the key and known_hosts the CLI was given.

    ``base`` starts with ``ssh``; options go right after it so they apply to ssh, not
    to the remote command.
    """
    extra: list[str] = []
    if ssh.key_file is not None:
        extra += ["-i", str(ssh.key_file), "-o", "IdentitiesOnly=yes"]
    if ssh.known_hosts_file is not None:
        extra += ["-o", f"UserKnownHostsFile={ssh.known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
    return [base[0], *extra, *base[1:]]


def pod_of(polecat: Polecat) -> str:
    """The agent Pod's name: the recorded one, else the deterministic one."""
    recorded = polecat.status.kubernetes if polecat.status is not None else None
    if recorded is not None and recorded.podName:
        return recorded.podName
    return pod_name(polecat)


def with_kubectl_flags(argv: list[str], kubectl_flags: list[str]) -> list[str]:
    """An executor's ``kubectl ...`` command with the CLI's cluster flags after ``kubectl``."""
    return [argv[0], *kubectl_flags, *argv[1:]]


def kubernetes_executor(kube: KubeClient) -> KubernetesExecutor:
    """The operator's kubernetes-mode executor over the CLI's client, for logs and attach.

    It reads no cache (the CLI has none) and creates nothing: only its user-facing
    methods, ``logs`` and ``attach_command``, are used.
    """
    from gastown.executors.kubernetes.executor import KubernetesExecutor  # noqa: PLC0415 - CLI start-up

    return KubernetesExecutor(kube, lambda namespace, name: None, PodDefaults(), check_references=False)


def command_name(argv0: str) -> str:
    """How the user invoked us, for hints: ``kubectl gastown`` when run as the kubectl plugin."""
    return "kubectl gastown" if Path(argv0).name.startswith("kubectl-") else "gastown"


def hint_commands(polecat: Polecat, *, invoked_as: str, kubectl_flags: list[str]) -> list[tuple[str, str]]:
    """The ``Logs:``/``Attach:`` lines of ``describe``: exact commands to copy."""
    prefix = [*invoked_as.split(), *kubectl_flags, "-n", polecat.metadata.namespace]
    logs = shlex.join([*prefix, "logs", polecat.metadata.name, "--follow"])
    attach = shlex.join([*prefix, "attach", polecat.metadata.name])
    if mode_of(polecat) is ExecutionMode.KUBERNETES:
        pod = pod_of(polecat)
        kubectl_logs = shlex.join(
            [
                "kubectl",
                *kubectl_flags,
                "logs",
                "-n",
                polecat.metadata.namespace,
                f"pod/{pod}",
                "-c",
                AGENT_CONTAINER,
                "-f",
            ]
        )
        return [("Logs", f"{logs}   (or: {kubectl_logs})"), ("Attach", f"{attach}   (kubectl attach -it)")]
    return [("Logs", logs), ("Attach", f"{attach}   (ssh + tmux attach; --print shows the command)")]
