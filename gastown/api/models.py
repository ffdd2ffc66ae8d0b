"""The Polecat API: pydantic models that are the single source of truth.

The CRD in ``crds/`` is generated from these models (see ``gastown.api.crd``), the
webhook validates against them, and the controller reads cached objects through them.
Field names are the Kubernetes wire names (camelCase) so that a model dumps to exactly
what the apiserver stores; that is why the attribute names break PEP 8.

Simple invariants (enums, patterns, bounds, defaults) live here, in the field
definitions, so they reach the CRD schema and hold even when the webhook is down.
Rules that need more than one field, the operator's settings, or the old object live
in ``gastown.webhook.rules``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "gastown.gastown.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Polecat"
PLURAL = "polecats"
SINGULAR = "polecat"
SHORT_NAMES = ["pcat"]  # not "pc": kubectl already resolves that to PriorityClass
CATEGORIES = ["gastown"]

# Label and annotation keys the operator owns.
LABEL_POLECAT = f"{GROUP}/polecat"
LABEL_RIG = f"{GROUP}/rig"
LABEL_BEAD = f"{GROUP}/bead"
ANNOTATION_FORCE_DELETE = f"{GROUP}/force-delete"
FINALIZER = f"{GROUP}/local-cleanup"
"""Local mode's finalizer: the tmux session is cleaned up (and unpushed work kept) first."""
KUBERNETES_FINALIZER = f"{GROUP}/save-work"
"""Kubernetes mode's finalizer: the Pod is stopped and its result recorded first."""

# DNS-1123 label: what a rig name must be, because it becomes part of label values,
# tmux session names and directory names.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Gas Town bead ids look like "gt-abc12": a short prefix, a dash, an id. Kept to
# characters that are safe in a label value, a tmux session name and a git ref.
BEAD_ID = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
# A git branch restricted to characters no shell or git treats specially.
GIT_BRANCH = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


def rig_suppliable(schema: dict[str, Any]) -> None:
    """Keep a field's default out of the CRD schema: a Rig may supply the value.

    With a schema default the apiserver would fill the field in, and "left out" (take
    the Rig's value) could not be told from "set to the default". The pydantic default
    stays: it is what a field resolves to when neither the Polecat nor its Rig sets it
    (see :mod:`gastown.api.resolve`, which reads ``model_fields_set``).
    """
    schema.pop("default", None)


class _Model(BaseModel):
    """Base for every API model: wire names, tolerant of fields we do not know."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        use_enum_values=False,
        validate_default=False,
    )


class ExecutionMode(StrEnum):
    """Where the agent runs."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"


def finalizer_for(mode: ExecutionMode) -> str:
    """The finalizer a Polecat of ``mode`` carries (see :data:`FINALIZER`)."""
    return KUBERNETES_FINALIZER if mode is ExecutionMode.KUBERNETES else FINALIZER


class DesiredState(StrEnum):
    """What the user wants: work going on, or work stopped (the record is kept)."""

    WORKING = "Working"
    TERMINATED = "Terminated"


class Dispatcher(StrEnum):
    """How local mode starts the agent."""

    GT = "gt"
    TMUX = "tmux"


class Phase(StrEnum):
    """Where a Polecat is in its life."""

    PENDING = "Pending"
    DISPATCHING = "Dispatching"
    WORKING = "Working"
    DONE = "Done"
    FAILED = "Failed"
    STUCK = "Stuck"
    TERMINATED = "Terminated"


TERMINAL_PHASES = frozenset({Phase.DONE, Phase.FAILED, Phase.TERMINATED})


class LocalObjectReference(_Model):
    """A reference to an object in the Polecat's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the object, in the Polecat's namespace.",
    )


class SecretKeySelector(_Model):
    """A key of a Secret in the Polecat's namespace."""

    name: str = Field(
        min_length=1, max_length=253, description="Name of the Secret, in the Polecat's namespace."
    )
    key: str = Field(
        default="api-key",
        min_length=1,
        max_length=253,
        description="Key inside the Secret whose value is used.",
    )


class ResourceRequirements(_Model):
    """CPU and memory for the agent container, as in a Pod's container resources."""

    requests: dict[str, str] = Field(
        default_factory=dict,
        description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.",
    )
    limits: dict[str, str] = Field(
        default_factory=dict,
        description="Maximum resources, e.g. {cpu: '2', memory: 4Gi}.",
    )


class Toleration(_Model):
    """A Pod toleration, passed through to the agent Pod."""

    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(default=None, description="Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    tolerationSeconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


class LocalSpec(_Model):
    """Settings for local mode: the agent runs in tmux on the operator host."""

    dispatcher: Dispatcher = Field(
        default=Dispatcher.GT,
        json_schema_extra=rig_suppliable,
        description=(
            "How the work is started: 'gt' runs `gt sling <beadID> <rig>` in a Gas Town "
            "install; 'tmux' starts a tmux session running `command` with no Gas Town needed."
        ),
    )
    townRoot: str | None = Field(
        default=None,
        max_length=4096,
        pattern=r"^/[^\x00]*$",
        description="Absolute path of the Gas Town town root (GT_TOWN_ROOT) for the gt dispatcher.",
    )
    command: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "Command the tmux dispatcher runs in the session (a shell command line written by "
            "the Polecat's author). The task text reaches it as $GASTOWN_TASK_FILE, never "
            "spliced into the line."
        ),
    )
    workDir: str | None = Field(
        default=None,
        max_length=4096,
        pattern=r"^/[^\x00]*$",
        description="Absolute working directory for the tmux dispatcher's session.",
    )
    activeDeadlineSeconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Seconds the work may run (from status.startTime) before the operator stops it, as "
            "desiredState Terminated would (the worktree or work directory is kept), and the Polecat "
            "becomes Failed (DeadlineExceeded). Unset: no deadline."
        ),
    )


class KubernetesSpec(_Model):
    """Settings for kubernetes mode: the agent runs in a Pod."""

    gitRepository: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description=(
            "Repository to clone: git@host:path, ssh://..., or https://... Required, on the "
            "Polecat or its Rig."
        ),
    )
    gitBranch: str = Field(
        default="main",
        json_schema_extra=rig_suppliable,
        min_length=1,
        max_length=255,
        pattern=GIT_BRANCH,
        description="Branch to clone.",
    )
    workBranch: str | None = Field(
        default=None,
        max_length=255,
        pattern=GIT_BRANCH,
        description="Branch the results are pushed to. Default: polecat/<name>.",
    )
    gitSecretRef: LocalObjectReference | None = Field(
        default=None,
        description=(
            "A kubernetes.io/ssh-auth Secret whose 'ssh-privatekey' is used to clone and push. "
            "Required for SSH repository URLs."
        ),
    )
    knownHostsConfigMapRef: LocalObjectReference | None = Field(
        default=None,
        description=(
            "ConfigMap whose 'known_hosts' key lists the git host's keys. Host keys are "
            "checked strictly: an unknown host fails the clone."
        ),
    )
    image: str | None = Field(
        default=None,
        max_length=1024,
        description="Agent container image. Default: the operator's configured agent image.",
    )
    agentSecretRef: SecretKeySelector | None = Field(
        default=None,
        description="Secret key holding the agent's API key; mounted as an env var from the Secret.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of the agent container."
    )
    activeDeadlineSeconds: int = Field(
        default=3600,
        json_schema_extra=rig_suppliable,
        ge=1,
        description="Seconds the Pod may run before Kubernetes stops it (DeadlineExceeded).",
    )
    nodeSelector: dict[str, str] | None = Field(
        default=None, description="Node labels the Pod must be scheduled onto."
    )
    tolerations: list[Toleration] | None = Field(default=None, description="Tolerations of the Pod.")
    runtimeClassName: str | None = Field(
        default=None, max_length=253, description="RuntimeClass of the Pod, e.g. gvisor."
    )
    serviceAccountName: str | None = Field(
        default=None,
        max_length=253,
        description="ServiceAccount of the Pod. When set, its token is mounted; otherwise none is.",
    )


class PolecatSpec(_Model):
    """What the user asks for: one agent working on one bead of one rig."""

    rig: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Gas Town rig (project) name; a DNS-1123 label. Immutable.",
    )
    beadID: str = Field(
        min_length=1,
        max_length=63,
        pattern=BEAD_ID,
        description="Gas Town bead (work item) id, e.g. gt-abc12. Immutable once dispatched.",
    )
    task: str | None = Field(
        default=None,
        max_length=65536,
        description="Free-text instructions for the agent. Passed by file or env, never as code.",
    )
    desiredState: DesiredState = Field(
        default=DesiredState.WORKING,
        description="Working to run; Terminated to stop the work and keep the record.",
    )
    executionMode: ExecutionMode = Field(
        default=ExecutionMode.LOCAL,
        json_schema_extra=rig_suppliable,
        description=(
            "Where the agent runs: local (tmux on the operator host) or kubernetes (a Pod). "
            "Unset: the Rig's, else local."
        ),
    )
    agent: str = Field(
        default="claude-code",
        json_schema_extra=rig_suppliable,
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Which agent runs the work. Unset: the Rig's, else claude-code.",
    )
    local: LocalSpec | None = Field(
        default=None,
        description="Local-mode settings. Only with executionMode local; fields left out come from the Rig.",
    )
    kubernetes: KubernetesSpec | None = Field(
        default=None,
        description=(
            "Kubernetes-mode settings. Required with executionMode kubernetes (on the Polecat or its "
            "Rig), else forbidden; fields left out come from the Rig."
        ),
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds after the Polecat finishes (Done, Failed or Terminated) before the operator "
            "deletes it, as a Job's ttlSecondsAfterFinished. Deletion follows the usual rules: "
            "work is saved first. Unset: kept until deleted."
        ),
    )


class Condition(_Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready, Dispatched, Progressing.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="What happened and, if wrong, what to do.")
    lastTransitionTime: datetime | None = Field(default=None, description="When the status last changed.")
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation the condition was set from."
    )


class LocalStatus(_Model):
    """Where a local Polecat runs, so a user can attach to it."""

    polecatName: str | None = Field(default=None, description="Gas Town's name for the polecat.")
    tmuxSocket: str | None = Field(default=None, description="tmux socket name (tmux -L).")
    tmuxSession: str | None = Field(default=None, description="tmux session name.")
    host: str | None = Field(default=None, description="Host the session runs on.")
    sessionActive: bool | None = Field(default=None, description="Whether the session exists.")


class KubernetesStatus(_Model):
    """The Pod that runs a kubernetes-mode Polecat."""

    podName: str | None = Field(default=None, description="Name of the agent Pod.")
    podPhase: str | None = Field(default=None, description="Phase of the agent Pod.")
    nodeName: str | None = Field(default=None, description="Node the Pod runs on.")


class ResultStatus(_Model):
    """What the work produced."""

    branch: str | None = Field(default=None, description="Branch the results were pushed to.")
    commit: str | None = Field(default=None, description="Commit that holds the results.")
    pushed: bool | None = Field(default=None, description="Whether the results reached origin.")
    message: str | None = Field(default=None, description="Summary from the runner.")


class EffectiveSpec(_Model):
    """The spec the work was dispatched with: the Polecat's, with what it left out from its Rig.

    Written once, in the first status write after dispatch, and only when a Rig existed
    then; from then on every part of the operator reads it instead of resolving again, so
    a later Rig edit never changes running work.
    """

    rig: str = Field(description="Name of the Rig the defaults came from.")
    rigGeneration: int = Field(description="The Rig's .metadata.generation at dispatch.")
    executionMode: ExecutionMode = Field(description="Execution mode the work runs in.")
    agent: str = Field(description="Agent that runs the work.")
    local: LocalSpec | None = Field(default=None, description="Effective local-mode settings.")
    kubernetes: KubernetesSpec | None = Field(default=None, description="Effective kubernetes-mode settings.")
    fromRig: list[Annotated[str, Field(description="A spec path, e.g. kubernetes.image.")]] = Field(
        default_factory=list,
        description="Spec paths whose value came from the Rig, e.g. kubernetes.gitRepository.",
    )


class PolecatStatus(_Model):
    """What the operator observed."""

    phase: Phase = Field(default=Phase.PENDING, description="Where the Polecat is in its life.")
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation this status was computed from."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    executionMode: ExecutionMode | None = Field(
        default=None,
        description=(
            "Where the work runs, decided at dispatch: spec.executionMode, else the Rig's, else local "
            "(kubectl get shows it as Mode)."
        ),
    )
    startTime: datetime | None = Field(default=None, description="When the work was dispatched.")
    completionTime: datetime | None = Field(default=None, description="When the work ended.")
    lastActivity: datetime | None = Field(default=None, description="Last sign of the agent working.")
    local: LocalStatus | None = Field(default=None, description="Local-mode details.")
    kubernetes: KubernetesStatus | None = Field(default=None, description="Kubernetes-mode details.")
    result: ResultStatus | None = Field(default=None, description="What the work produced.")
    effective: EffectiveSpec | None = Field(
        default=None,
        description="The spec resolved against the Rig at dispatch (only when a Rig existed then).",
    )


class ObjectMeta(_Model):
    """The parts of ObjectMeta the operator reads."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resourceVersion: str = ""
    creationTimestamp: datetime | None = None
    deletionTimestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)


class Polecat(_Model):
    """One agent working on one bead of one rig."""

    apiVersion: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PolecatSpec
    status: PolecatStatus | None = None

    @property
    def key(self) -> str:
        """The namespace/name key used by caches and the work queue."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @property
    def work_branch(self) -> str:
        """The branch results go to: the spec's, or polecat/<name>."""
        k8s = self.spec.kubernetes
        if k8s is not None and k8s.workBranch:
            return k8s.workBranch
        return f"polecat/{self.metadata.name}"

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Polecat:
        """Parse an object as the apiserver returns it."""
        return cls.model_validate(obj)

    def to_dict(self) -> dict[str, Any]:
        """Dump to wire form, leaving out unset optional fields."""
        return self.model_dump(mode="json", exclude_none=True)
