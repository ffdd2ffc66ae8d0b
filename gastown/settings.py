"""Operator settings: one typed object, built once by the CLI and passed down.

Every field can be set from the environment with the ``GASTOWN_`` prefix (the Helm
chart sets them that way, e.g. ``GASTOWN_WORKERS=16``) or from the operator's command
line flags, which the CLI maps onto the same names. Nothing below the CLI reads the
environment: parts receive this object (or the piece of it they need) explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SSHSettings(BaseSettings):
    """The local-mode target: where tmux sessions run. Unset host disables local mode."""

    model_config = SettingsConfigDict(env_prefix="GASTOWN_SSH_", frozen=True)

    host: str | None = Field(default=None, description="SSH host; None disables local mode.")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="gastown", description="SSH user on the target host.")
    key_file: Path | None = Field(default=None, description="Private key file (mounted Secret).")
    known_hosts_file: Path | None = Field(
        default=None, description="known_hosts file; host keys are always checked."
    )
    max_sessions: int = Field(
        default=8, ge=1, description="Channels open at once on one connection (OpenSSH MaxSessions=10)."
    )
    command_timeout: float = Field(default=30.0, gt=0, description="Seconds per remote command.")
    keepalive_interval: float = Field(default=15.0, gt=0)


class PodDefaults(BaseSettings):
    """What kubernetes-mode Pods get when the Polecat does not say."""

    model_config = SettingsConfigDict(env_prefix="GASTOWN_POD_", frozen=True)

    agent_image: str = Field(default="ghcr.io/gastown/polecat-agent:0.1.0")
    clone_image: str | None = Field(
        default=None, description="Image of the git-clone init container; default: agent_image."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    agent_command: list[str] = Field(
        default_factory=lambda: ["gastown-agent"],
        description="Entrypoint of the agent container (the agent runner).",
    )
    run_as_user: int = Field(
        default=10001,
        ge=1,
        description="Numeric non-root uid (also gid and fsGroup) of the Pod; the agent image's user.",
    )
    check_references: bool = Field(
        default=True,
        description=(
            "Before creating a Pod, GET (metadata only) the Secrets and ConfigMap it references so a "
            "typo is a clear error. Needs RBAC get on secrets and configmaps in the Polecat's namespace; "
            "the Helm chart turns it off unless podDefaults.checkReferences grants that."
        ),
    )
    allowed_images: list[str] = Field(
        default_factory=list,
        description=(
            "fnmatch patterns spec.kubernetes.image must match (e.g. registry.example.com/agents/*, or a "
            "full @sha256: reference); empty allows every image. agent_image is always allowed."
        ),
    )
    allowed_service_accounts: list[str] = Field(
        default_factory=list,
        description=(
            "ServiceAccount names spec.kubernetes.serviceAccountName may be; empty allows none "
            "(agent Pods then run without an API token)."
        ),
    )


class Settings(BaseSettings):
    """Everything the operator process is configured with."""

    model_config = SettingsConfigDict(env_prefix="GASTOWN_", frozen=True)

    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig path; None means in-cluster, then ~/.kube/config."
    )
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty watches all.")
    operator_namespace: str = Field(default="gastown-system")
    workers: int = Field(default=16, ge=1, le=1024)
    log_format: Literal["json", "text"] = "text"
    log_level: str = "INFO"

    # Serving.
    webhook_enabled: bool = True
    webhook_host: str = "0.0.0.0"
    webhook_port: int = Field(default=9443, ge=0, le=65535)
    webhook_cert_dir: Path | None = Field(
        default=None,
        description="Directory with tls.crt/tls.key (reloaded on change); None: self-managed certs.",
    )
    webhook_secret_name: str = "gastown-operator-webhook-tls"
    webhook_service_name: str = "gastown-operator-webhook"
    webhook_config_name: str = "gastown-operator"
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    health_port: int = Field(default=8081, ge=0, le=65535)

    # Leader election.
    leader_election: bool = True
    lease_name: str = "gastown-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str | None = Field(default=None, description="Leader identity; default: hostname+pid.")

    # Shutdown.
    shutdown_grace: float = Field(default=20.0, ge=0)

    node_lost_timeout: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds a kubernetes-mode Polecat whose node stopped reporting stays Stuck (NodeNotReady) "
            "before it becomes Failed (NodeLost)."
        ),
    )

    ssh: SSHSettings = Field(default_factory=SSHSettings)
    pod: PodDefaults = Field(default_factory=PodDefaults)
    gt_binary: str = Field(default="gt", description="Gas Town CLI on the local-mode host.")
    town_root: str | None = Field(default=None, description="Default GT_TOWN_ROOT.")
    tmux_binary: str = "tmux"
    tmux_socket: str = Field(
        default="gastown",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="tmux socket (tmux -L) of the tmux dispatcher's sessions; gt uses the town's own.",
    )
    local_poll_interval: float = Field(default=5.0, gt=0)
    host_unreachable_timeout: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds the local-mode SSH host may stay unreachable before a Polecat reads phase Stuck with "
            "Ready=False reason HostUnreachable (until then: phase kept, Ready=Unknown)."
        ),
    )

    @property
    def local_mode_enabled(self) -> bool:
        """Local mode needs an SSH target; without one, local Polecats are rejected."""
        return self.ssh.host is not None
