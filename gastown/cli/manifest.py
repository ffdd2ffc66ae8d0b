"""Polecat manifests on the user's side: the one ``sling`` builds, the ones ``validate`` reads.

Pure: :func:`build_polecat` turns ``sling``'s flags into a Polecat object (no
defaults the apiserver would add, so ``--dry-run`` prints what a user would write by
hand); :func:`read_documents` splits a YAML/JSON file into objects, the way
``kubectl apply -f`` does (multi-document streams and ``kind: List`` both work).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gastown.api.models import API_VERSION, GROUP, KIND

# The Pod is polecat-<name> and the name is a label value: 63 - len("polecat-") = 55,
# and the apiserver appends 5 characters to a generateName.
MAX_GENERATE_NAME = 63 - len("polecat-") - 5
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
GROUP_KINDS = (KIND, "Rig", "Convoy")
"""The kinds ``validate`` checks; anything else in a file is skipped."""


class ManifestError(ValueError):
    """A flag combination or file that cannot become a Polecat; the message says why."""


@dataclass(frozen=True, slots=True)
class SlingRequest:
    """Everything ``gastown sling`` was asked for."""

    bead: str
    rig: str
    mode: str | None = None
    name: str | None = None
    task: str | None = None
    agent: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # kubernetes mode
    repo: str | None = None
    branch: str | None = None
    work_branch: str | None = None
    git_secret: str | None = None
    agent_secret: str | None = None
    known_hosts_configmap: str | None = None
    image: str | None = None
    # local mode
    dispatcher: str | None = None
    command: str | None = None
    town_root: str | None = None
    work_dir: str | None = None

    def kubernetes_flags(self) -> dict[str, Any]:
        return {
            "--repo": self.repo,
            "--branch": self.branch,
            "--work-branch": self.work_branch,
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


def generate_name(rig: str, bead: str) -> str:
    """A ``metadata.generateName`` from the rig and the bead: lower-case DNS label, ends in '-'."""
    base = _NOT_DNS.sub("-", f"{rig}-{bead}".lower()).strip("-") or "polecat"
    return base[: MAX_GENERATE_NAME - 1].rstrip("-") + "-"


def effective_mode(request: SlingRequest) -> str | None:
    """The mode asked for, or the one the mode-specific flags imply; None when neither says.

    None leaves ``spec.executionMode`` out: the rig's Rig decides, else local. Flags of the
    other mode are a usage error naming the flag, rather than being silently dropped.
    """
    k8s_given = [flag for flag, value in request.kubernetes_flags().items() if value is not None]
    local_given = [flag for flag, value in request.local_flags().items() if value is not None]
    implied = "kubernetes" if k8s_given and not local_given else ("local" if local_given else None)
    mode = request.mode or implied
    if mode == "local" and k8s_given:
        raise ManifestError(f"{', '.join(k8s_given)} only apply to --mode kubernetes")
    if mode == "kubernetes" and local_given:
        raise ManifestError(f"{', '.join(local_given)} only apply to --mode local")
    return mode


def _secret_key(value: str) -> dict[str, str]:
    """``NAME`` or ``NAME:KEY`` as a SecretKeySelector."""
    name, _, key = value.partition(":")
    if not name:
        raise ManifestError(f"--agent-secret {value!r}: give the Secret's name, optionally NAME:KEY")
    return {"name": name, "key": key} if key else {"name": name}


def build_polecat(request: SlingRequest) -> dict[str, Any]:
    """The Polecat ``sling`` creates (validation is the apiserver's and the webhook's job)."""
    mode = effective_mode(request)
    metadata: dict[str, Any] = (
        {"name": request.name} if request.name else {"generateName": generate_name(request.rig, request.bead)}
    )
    if request.labels:
        metadata["labels"] = dict(request.labels)
    spec: dict[str, Any] = {"rig": request.rig, "beadID": request.bead}
    if mode is not None:
        spec["executionMode"] = mode
    if request.task is not None:
        spec["task"] = request.task
    if request.agent:
        spec["agent"] = request.agent
    if mode == "kubernetes":
        # No --repo: the Rig's repository is used (the webhook says so when there is none).
        k8s: dict[str, Any] = {"gitRepository": request.repo} if request.repo else {}
        if request.branch:
            k8s["gitBranch"] = request.branch
        if request.work_branch:
            k8s["workBranch"] = request.work_branch
        if request.git_secret:
            k8s["gitSecretRef"] = {"name": request.git_secret}
        if request.known_hosts_configmap:
            k8s["knownHostsConfigMapRef"] = {"name": request.known_hosts_configmap}
        if request.agent_secret:
            k8s["agentSecretRef"] = _secret_key(request.agent_secret)
        if request.image:
            k8s["image"] = request.image
        if k8s:
            spec["kubernetes"] = k8s
    else:
        local = {
            key: value
            for key, value in (
                ("dispatcher", request.dispatcher),
                ("command", request.command),
                ("townRoot", request.town_root),
                ("workDir", request.work_dir),
            )
            if value is not None
        }
        if local:
            spec["local"] = local
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


@dataclass(frozen=True, slots=True)
class Document:
    """One object of a manifest file, with where it came from for messages."""

    index: int  # 1-based position in the file
    obj: Any

    @property
    def is_polecat(self) -> bool:
        return self.kind == KIND

    @property
    def kind(self) -> str | None:
        """The kind when it is one of this API group's (Polecat, Rig, Convoy), else None."""
        if not isinstance(self.obj, dict):
            return None
        group = str(self.obj.get("apiVersion") or "").split("/", maxsplit=1)[0]
        kind = self.obj.get("kind")
        if kind in GROUP_KINDS and (not group or group == GROUP):
            return str(kind)
        return None

    @property
    def label(self) -> str:
        """``polecat/NAME`` (or the generateName, or the document number)."""
        if isinstance(self.obj, dict):
            meta = self.obj.get("metadata")
            kind = str(self.obj.get("kind") or "object").lower()
            if isinstance(meta, dict):
                if meta.get("name"):
                    return f"{kind}/{meta['name']}"
                if meta.get("generateName"):
                    return f"{kind}/{meta['generateName']}*"
            return f"{kind} #{self.index}"
        return f"document #{self.index}"


def read_documents(text: str) -> list[Document]:
    """The objects of a YAML (or JSON) stream; ``kind: List`` is flattened, empty documents dropped."""
    import yaml  # noqa: PLC0415

    try:
        raw = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"not valid YAML{where}: {problem}") from exc
    objects: list[Any] = []
    for doc in raw:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    return [Document(index, obj) for index, obj in enumerate(objects, start=1)]
