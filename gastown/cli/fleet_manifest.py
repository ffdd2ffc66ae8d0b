"""Rig and Convoy objects on the user's side: the ones ``rig create`` / ``convoy create`` build.

Pure, like :mod:`gastown.cli.manifest`: flags in, a plain dict out, with no defaults the
apiserver would add, so ``--dry-run`` prints what a user would write by hand. Only
what flags alone can get wrong is checked here (a malformed ``--bead``, ``--bead`` and
``--count`` together, a flag of the other mode); the fields themselves are checked by
the webhook's own rules (:mod:`gastown.webhook.kinds`) before anything is sent, so the
messages are the webhook's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gastown.api import convoy as convoy_api
from gastown.api import rig as rig_api
from gastown.api.models import API_VERSION
from gastown.cli.manifest import ManifestError


def parse_bead(value: str) -> dict[str, str]:
    """``--bead ID`` or ``--bead ID=TASK`` as a ``spec.beads[]`` entry.

    The task is everything after the first ``=`` (it may itself hold ``=``); an empty
    task (``ID=``) is an error rather than a silent "use the template's task".
    """
    bead, sep, task = value.partition("=")
    bead = bead.strip()
    if not bead:
        raise ManifestError(f"--bead {value!r}: give a bead id, as ID or ID=TASK (e.g. gt-abc12=Fix the bug)")
    if sep and not task.strip():
        raise ManifestError(f"--bead {value!r}: the task after '=' is empty; leave out '=' to use --task")
    return {"beadID": bead, "task": task} if sep else {"beadID": bead}


def parse_labels(values: tuple[str, ...] | list[str], flag: str = "--label") -> dict[str, str]:
    """``KEY=VALUE`` flags as a dict."""
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ManifestError(f"{flag} {item!r}: use KEY=VALUE")
        labels[key] = value
    return labels


@dataclass(frozen=True, slots=True)
class ConvoyRequest:
    """Everything ``gastown convoy create``'s quick form was asked for."""

    name: str
    rig: str
    beads: list[str] = field(default_factory=list)  # raw --bead values
    count: int | None = None
    task: str | None = None
    mode: str | None = None
    agent: str | None = None
    parallelism: int | None = None
    failure_policy: str | None = None
    max_failures: int | None = None
    ttl: int | None = None
    polecat_ttl: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


def build_convoy(request: ConvoyRequest) -> dict[str, Any]:
    """The Convoy the quick form creates: beads (or count), a template naming the rig."""
    if request.beads and request.count is not None:
        raise ManifestError("give --bead (one per bead) or --count, not both")
    if not request.beads and request.count is None:
        raise ManifestError("give the beads: --bead ID[=TASK] (repeatable) or --count N with --task")
    if request.count is not None and not request.task:
        raise ManifestError("--count N runs one task N times: give it with --task (or --task-file)")
    if request.max_failures is not None and request.failure_policy != convoy_api.FailurePolicy.STOP.value:
        raise ManifestError("--max-failures only applies with --failure-policy Stop")
    template_spec: dict[str, Any] = {"rig": request.rig}
    if request.mode:
        template_spec["executionMode"] = request.mode
    if request.agent:
        template_spec["agent"] = request.agent
    if request.task is not None:
        template_spec["task"] = request.task
    if request.polecat_ttl is not None:
        template_spec["ttlSecondsAfterFinished"] = request.polecat_ttl
    spec: dict[str, Any] = {}
    if request.beads:
        seen: set[str] = set()
        beads = []
        for raw in request.beads:
            bead = parse_bead(raw)
            if bead["beadID"] in seen:
                raise ManifestError(f"--bead {bead['beadID']}: given twice; each bead runs once per Convoy")
            seen.add(bead["beadID"])
            beads.append(bead)
        spec["beads"] = beads
    else:
        spec["count"] = request.count
    spec["template"] = {"spec": template_spec}
    if request.parallelism is not None:
        spec["parallelism"] = request.parallelism
    if request.failure_policy is not None:
        spec["failurePolicy"] = request.failure_policy
    if request.max_failures is not None:
        spec["maxFailures"] = request.max_failures
    if request.ttl is not None:
        spec["ttlSecondsAfterFinished"] = request.ttl
    metadata: dict[str, Any] = {"name": request.name}
    if request.labels:
        metadata["labels"] = dict(request.labels)
    return {"apiVersion": API_VERSION, "kind": convoy_api.KIND, "metadata": metadata, "spec": spec}


@dataclass(frozen=True, slots=True)
class RigRequest:
    """Everything ``gastown rig create``'s quick form was asked for."""

    name: str
    mode: str | None = None
    agent: str | None = None
    max_active: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # kubernetes defaults
    repo: str | None = None
    branch: str | None = None
    git_secret: str | None = None
    agent_secret: str | None = None
    known_hosts_configmap: str | None = None
    image: str | None = None
    deadline: int | None = None
    # local defaults
    dispatcher: str | None = None
    command: str | None = None
    town_root: str | None = None
    work_dir: str | None = None

    def kubernetes_flags(self) -> dict[str, Any]:
        return {
            "--repo": self.repo,
            "--branch": self.branch,
            "--git-secret": self.git_secret,
            "--agent-secret": self.agent_secret,
            "--known-hosts-configmap": self.known_hosts_configmap,
            "--image": self.image,
        }

    def local_flags(self) -> dict[str, Any]:
        return {
            "--dispatcher": self.dispatcher,
            "--command": self.command,
            "--town-root": self.town_root,
            "--work-dir": self.work_dir,
        }


def secret_key(value: str, flag: str = "--agent-secret") -> dict[str, str]:
    """``NAME`` or ``NAME:KEY`` as a SecretKeySelector."""
    name, sep, key = value.partition(":")
    if not name or (sep and not key):
        raise ManifestError(f"{flag} {value!r}: use NAME or NAME:KEY")
    return {"name": name, "key": key} if key else {"name": name}


def build_rig(request: RigRequest) -> dict[str, Any]:
    """The Rig the quick form creates. Only the mode's own defaults may be given.

    A Rig may hold defaults for both modes in a file; on the command line, flags of a
    mode other than ``--mode`` are refused by name, because they would never apply to
    the rig's Polecats unless each one overrode the mode.
    """
    k8s_given = [flag for flag, value in request.kubernetes_flags().items() if value is not None]
    local_given = [flag for flag, value in request.local_flags().items() if value is not None]
    mode = request.mode or ("kubernetes" if k8s_given and not local_given else None)
    if mode == "kubernetes" and local_given:
        raise ManifestError(f"{', '.join(local_given)}: local-mode flags; this rig's mode is kubernetes")
    if mode in (None, "local") and k8s_given:
        raise ManifestError(
            f"{', '.join(k8s_given)}: kubernetes-mode flags; give --mode kubernetes or leave them out"
        )
    if request.deadline is not None and mode is None:
        raise ManifestError("--deadline needs --mode (the deadline is kept per mode)")
    spec: dict[str, Any] = {}
    if mode:
        spec["executionMode"] = mode
    if request.agent:
        spec["agent"] = request.agent
    if request.max_active is not None:
        spec["maxActivePolecats"] = request.max_active
    if mode == "kubernetes":
        if not request.repo:
            raise ManifestError(
                "--mode kubernetes needs --repo (the repository every Polecat of the rig clones)"
            )
        k8s: dict[str, Any] = {"gitRepository": request.repo}
        if request.branch:
            k8s["gitBranch"] = request.branch
        if request.git_secret:
            k8s["gitSecretRef"] = {"name": request.git_secret}
        if request.known_hosts_configmap:
            k8s["knownHostsConfigMapRef"] = {"name": request.known_hosts_configmap}
        if request.agent_secret:
            k8s["agentSecretRef"] = secret_key(request.agent_secret)
        if request.image:
            k8s["image"] = request.image
        if request.deadline is not None:
            k8s["activeDeadlineSeconds"] = request.deadline
        spec["kubernetes"] = k8s
    else:
        local = {
            key: value
            for key, value in (
                ("dispatcher", request.dispatcher),
                ("command", request.command),
                ("townRoot", request.town_root),
                ("workDir", request.work_dir),
                ("activeDeadlineSeconds", request.deadline),
            )
            if value is not None
        }
        if local:
            spec["local"] = local
    metadata: dict[str, Any] = {"name": request.name}
    if request.labels:
        metadata["labels"] = dict(request.labels)
    return {"apiVersion": API_VERSION, "kind": rig_api.KIND, "metadata": metadata, "spec": spec}
