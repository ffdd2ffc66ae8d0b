"""The agent Pod of a kubernetes-mode Polecat: a pure function of the Polecat and the defaults.

``build_pod`` returns the Pod in wire form (a plain dict), ready to POST. Same inputs,
same Pod: the name is deterministic (``polecat-<name>``), so creating it twice is
caught by the apiserver (409) and a Polecat is never dispatched twice.

What the Pod guarantees, and why:

* **Owned and found.** A controller ownerReference to the Polecat (garbage collection
  deletes the Pod with it, so kubernetes mode needs no finalizer) and labels the
  informer selects on (``app.kubernetes.io/managed-by`` = :data:`MANAGED_BY`). Label
  values are sanitized and, when too long, cut with a hash suffix; the ownerReference,
  not a label, is the authoritative link to the Polecat.
* **Pod Security "restricted".** Non-root numeric user, no privilege escalation, ALL
  capabilities dropped, seccomp RuntimeDefault, read-only root filesystem; the only
  writable places are emptyDirs for the workspace, ``$HOME`` and ``/tmp``. No service
  account token unless ``serviceAccountName`` asks for one.
* **Credentials by reference.** The SSH key is a Secret volume (only in the init
  container, mode 0400; ``fsGroup`` makes it readable to the runner, which installs a
  0600 copy in ``$HOME/.ssh``; the agent container's runner takes that copy into memory
  and deletes it before the agent starts, see :mod:`gastown.runner.key_custody`),
  ``known_hosts`` a ConfigMap volume, the agent API key an env ``valueFrom.secretKeyRef``.
  No secret value is ever in the Pod spec.
* **User text is data.** Repository and branches reach the runner as environment
  variables; container ``args`` are fixed words. Nothing is built into a shell line.
  The task is a file: the Pod annotation :data:`ANNOTATION_TASK`, projected by a
  downwardAPI volume. Not an env var, because Linux refuses to start a process with
  one string over 128 KiB in its environment, and a 64 Ki-character task in a
  non-Latin script is larger than that.
* **It can finish.** ``restartPolicy: Never``, ``activeDeadlineSeconds``, no sidecar:
  the Pod reaches Succeeded or Failed, and the runner's JSON report lands in the
  termination message (``FallbackToLogsOnError`` keeps a clone failure's last log lines).
* **The image's entrypoint stays.** Only ``args`` are set, so the agent image's
  ``tini`` (``ENTRYPOINT``) remains PID 1 and reaps what the agent leaves behind.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from gastown.api.models import API_VERSION, KIND, LABEL_BEAD, LABEL_POLECAT, LABEL_RIG, Polecat
from gastown.executors.base import UserError
from gastown.settings import PodDefaults

POD_NAME_PREFIX = "polecat-"
MANAGED_BY = "gastown-operator"
APP_NAME = "gastown-polecat"
COMPONENT = "agent"
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by"
# What the operator's Pod informer selects on.
POD_LABEL_SELECTOR = f"{LABEL_APP_MANAGED_BY}={MANAGED_BY},{LABEL_APP_NAME}={APP_NAME}"

CLONE_CONTAINER = "git-clone"
AGENT_CONTAINER = "agent"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"

HOME = "/home/polecat"
WORKSPACE_ROOT = "/workspace"
WORKSPACE = f"{WORKSPACE_ROOT}/repo"
SSH_DIR = f"{HOME}/.ssh"
GIT_SSH_MOUNT = "/etc/gastown/git-ssh"
TASK_MOUNT = "/etc/gastown/task"
TASK_FILE = f"{TASK_MOUNT}/task.md"
ANNOTATION_TASK = "gastown.gastown.io/task"
# Set on an agent Pod the operator stopped (value: why, "Terminate" or "Delete"), together
# with a shortened activeDeadlineSeconds: the observer reads its end as a stop on request.
ANNOTATION_STOP = "gastown.gastown.io/stop"
STOP_TERMINATE = "Terminate"
STOP_DELETE = "Delete"
KNOWN_HOSTS_MOUNT = "/etc/gastown/known-hosts"
SSH_KEY_ITEM = "ssh-privatekey"
KNOWN_HOSTS_ITEM = "known_hosts"
SECRET_FILE_MODE = 0o400
# Seconds between SIGTERM and SIGKILL: the runner commits and pushes in this window.
TERMINATION_GRACE_SECONDS = 60

# The env var each agent reads its API key from. Unknown agents get the generic one.
API_KEY_ENV = {"claude-code": "ANTHROPIC_API_KEY"}
GENERIC_API_KEY_ENV = "GASTOWN_AGENT_API_KEY"

_LABEL_VALUE_MAX = 63
_NAME_MAX = 253
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def pod_name(polecat: Polecat) -> str:
    """``polecat-<name>``; a name too long for a Pod is cut and suffixed with a hash."""
    return pod_name_for(polecat.metadata.name)


def pod_name_for(polecat_name: str) -> str:
    """:func:`pod_name` from the Polecat's name alone."""
    name = POD_NAME_PREFIX + polecat_name
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(polecat_name.encode()).hexdigest()[:10]
    return name[: _NAME_MAX - 11].rstrip("-.") + "-" + digest


def label_value(value: str) -> str:
    """``value`` made a valid label value: allowed characters, alphanumeric ends, ≤ 63.

    Values that had to change get a hash of the original, so two different inputs do
    not collapse into one label value.
    """
    clean = _INVALID_LABEL_CHARS.sub("-", value).strip("-._")
    if clean == value and len(clean) <= _LABEL_VALUE_MAX:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    head = clean[: _LABEL_VALUE_MAX - len(digest) - 1].rstrip("-._")
    return f"{head}-{digest}" if head else digest


def pod_labels(polecat: Polecat) -> dict[str, str]:
    """The Pod's labels (also what tests and the informer select on)."""
    return {
        LABEL_APP_NAME: APP_NAME,
        LABEL_APP_INSTANCE: label_value(polecat.metadata.name),
        LABEL_APP_COMPONENT: COMPONENT,
        LABEL_APP_MANAGED_BY: MANAGED_BY,
        LABEL_POLECAT: label_value(polecat.metadata.name),
        LABEL_RIG: label_value(polecat.spec.rig),
        LABEL_BEAD: label_value(polecat.spec.beadID),
    }


def owner_reference(polecat: Polecat) -> dict[str, Any]:
    """The controller ownerReference to the Polecat."""
    if not polecat.metadata.uid:
        raise ValueError(f"Polecat {polecat.key} has no uid: build Pods from objects read from the API")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": polecat.metadata.name,
        "uid": polecat.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def agent_image(polecat: Polecat, defaults: PodDefaults) -> str:
    """The agent container's image: the spec's, or the operator default."""
    k8s = polecat.spec.kubernetes
    return (k8s.image if k8s is not None and k8s.image else None) or defaults.agent_image


def build_pod(polecat: Polecat, defaults: PodDefaults) -> dict[str, Any]:
    """The agent Pod for ``polecat``, in wire form.

    Raises ``UserError`` when the Polecat has no ``spec.kubernetes`` (the webhook and
    the CRD normally prevent that).
    """
    k8s = polecat.spec.kubernetes
    if k8s is None:
        raise UserError(
            "MissingKubernetesSpec",
            "spec.kubernetes is required with executionMode kubernetes: set at least gitRepository",
        )
    if k8s.gitRepository is None:
        raise UserError(
            "MissingKubernetesSpec",
            "spec.kubernetes.gitRepository is required with executionMode kubernetes: set it on the "
            "Polecat or in its Rig's spec.kubernetes",
        )
    image = agent_image(polecat, defaults)
    uid = defaults.run_as_user
    resources = _resources(polecat, defaults)

    git_env = [
        _env("HOME", HOME),
        _env("GASTOWN_WORKSPACE", WORKSPACE),
        _env("GASTOWN_SSH_DIR", SSH_DIR),
        _env("GASTOWN_WORK_BRANCH", polecat.work_branch),
        _env("GASTOWN_POLECAT", polecat.metadata.name),
        _env("GASTOWN_TERMINATION_LOG", TERMINATION_MESSAGE_PATH),
    ]
    if k8s.gitSecretRef is not None:
        git_env.append(_env("GASTOWN_GIT_SECRET", k8s.gitSecretRef.name))
    if k8s.knownHostsConfigMapRef is not None:
        git_env.append(_env("GASTOWN_KNOWN_HOSTS_CONFIGMAP", k8s.knownHostsConfigMapRef.name))

    clone_env = [
        *git_env,
        _env("GASTOWN_GIT_REPOSITORY", k8s.gitRepository),
        _env("GASTOWN_GIT_BRANCH", k8s.gitBranch),
    ]
    clone_mounts = [_mount("workspace", WORKSPACE_ROOT), _mount("home", HOME), _mount("tmp", "/tmp")]
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "task",
            "downwardAPI": {
                "items": [
                    {
                        "path": TASK_FILE.rsplit("/", 1)[1],
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_TASK}']"},
                    }
                ]
            },
        },
    ]
    if k8s.gitSecretRef is not None:
        volumes.append(
            {
                "name": "git-ssh",
                "secret": {
                    "secretName": k8s.gitSecretRef.name,
                    "items": [{"key": SSH_KEY_ITEM, "path": SSH_KEY_ITEM}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
        clone_mounts.append(_mount("git-ssh", GIT_SSH_MOUNT, read_only=True))
        clone_env.append(_env("GASTOWN_SSH_KEY_SOURCE", f"{GIT_SSH_MOUNT}/{SSH_KEY_ITEM}"))
    if k8s.knownHostsConfigMapRef is not None:
        volumes.append(
            {
                "name": "known-hosts",
                "configMap": {
                    "name": k8s.knownHostsConfigMapRef.name,
                    "items": [{"key": KNOWN_HOSTS_ITEM, "path": KNOWN_HOSTS_ITEM}],
                },
            }
        )
        clone_mounts.append(_mount("known-hosts", KNOWN_HOSTS_MOUNT, read_only=True))
        clone_env.append(_env("GASTOWN_KNOWN_HOSTS_SOURCE", f"{KNOWN_HOSTS_MOUNT}/{KNOWN_HOSTS_ITEM}"))

    agent_env: list[dict[str, Any]] = [
        *git_env,
        _env("GASTOWN_AGENT", polecat.spec.agent),
        _env("GASTOWN_RIG", polecat.spec.rig),
        _env("GASTOWN_BEAD", polecat.spec.beadID),
        _env("GASTOWN_TASK_FILE", TASK_FILE),
        # The agent container has its own PID namespace: the runner may end all the agent left.
        _env("GASTOWN_CONTAINER_SWEEP", "true"),
    ]
    if k8s.agentSecretRef is not None:
        agent_env.append(
            {
                "name": API_KEY_ENV.get(polecat.spec.agent, GENERIC_API_KEY_ENV),
                "valueFrom": {
                    "secretKeyRef": {"name": k8s.agentSecretRef.name, "key": k8s.agentSecretRef.key}
                },
            }
        )

    clone_container = {
        "name": CLONE_CONTAINER,
        "image": defaults.clone_image or image,
        "imagePullPolicy": defaults.image_pull_policy,
        "args": [*defaults.agent_command, "clone"],
        "env": clone_env,
        "workingDir": WORKSPACE_ROOT,
        "volumeMounts": clone_mounts,
        "resources": resources,
        "securityContext": _container_security(uid),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    agent_container = {
        "name": AGENT_CONTAINER,
        "image": image,
        "imagePullPolicy": defaults.image_pull_policy,
        "args": [*defaults.agent_command, "run"],
        "env": agent_env,
        "workingDir": WORKSPACE,
        "volumeMounts": [
            _mount("workspace", WORKSPACE_ROOT),
            _mount("home", HOME),
            _mount("tmp", "/tmp"),
            _mount("task", TASK_MOUNT, read_only=True),
        ],
        "resources": resources,
        "securityContext": _container_security(uid),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": k8s.activeDeadlineSeconds,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [clone_container],
        "containers": [agent_container],
        "volumes": volumes,
    }
    if k8s.serviceAccountName:
        spec["serviceAccountName"] = k8s.serviceAccountName
        spec["automountServiceAccountToken"] = True
    else:
        spec["automountServiceAccountToken"] = False
    if k8s.nodeSelector:
        spec["nodeSelector"] = dict(k8s.nodeSelector)
    if k8s.tolerations:
        spec["tolerations"] = [t.model_dump(mode="json", exclude_none=True) for t in k8s.tolerations]
    if k8s.runtimeClassName:
        spec["runtimeClassName"] = k8s.runtimeClassName

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(polecat),
            "namespace": polecat.metadata.namespace,
            "labels": pod_labels(polecat),
            "annotations": {ANNOTATION_TASK: polecat.spec.task or ""},
            "ownerReferences": [owner_reference(polecat)],
        },
        "spec": spec,
    }


def _resources(polecat: Polecat, defaults: PodDefaults) -> dict[str, dict[str, str]]:
    """The spec's resources as given (a partial set is not merged with defaults, since a
    default request could then exceed a user's smaller limit), else the defaults."""
    k8s = polecat.spec.kubernetes
    if k8s is not None and k8s.resources is not None and (k8s.resources.requests or k8s.resources.limits):
        out: dict[str, dict[str, str]] = {}
        if k8s.resources.requests:
            out["requests"] = dict(k8s.resources.requests)
        if k8s.resources.limits:
            out["limits"] = dict(k8s.resources.limits)
        return out
    return {
        "requests": {"cpu": defaults.cpu_request, "memory": defaults.memory_request},
        "limits": {"cpu": defaults.cpu_limit, "memory": defaults.memory_limit},
    }


def _container_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _mount(volume: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount
