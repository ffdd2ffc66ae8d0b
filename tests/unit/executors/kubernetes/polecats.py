"""Polecats for the kubernetes-mode unit tests (plain builders, not fixtures)."""

from __future__ import annotations

from typing import Any

from gastown.api.models import Polecat

UID = "6f1c1d9e-5f0e-4d7a-9c39-2f4a8c1b7e10"


def polecat(
    *,
    name: str = "fix-login",
    task: str | None = "Fix the login redirect loop.",
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    **kubernetes: Any,
) -> Polecat:
    """A kubernetes-mode Polecat with every reference set; ``kubernetes`` overrides its fields."""
    k8s: dict[str, Any] = {
        "gitRepository": "git@github.com:acme/app.git",
        "gitBranch": "main",
        "gitSecretRef": {"name": "git-key"},
        "knownHostsConfigMapRef": {"name": "git-known-hosts"},
        "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
    }
    k8s.update(kubernetes)
    obj: dict[str, Any] = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": "team-a", "uid": UID, "generation": 1},
        "spec": {
            "rig": "webshop",
            "beadID": "gt-abc12",
            "task": task,
            "executionMode": "kubernetes",
            "kubernetes": k8s,
            **(spec or {}),
        },
    }
    if status is not None:
        obj["status"] = status
    return Polecat.from_dict(obj)
