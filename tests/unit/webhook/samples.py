"""Polecats and AdmissionReview envelopes the webhook unit tests share."""

from __future__ import annotations

import json
from typing import Any


def k8s_polecat(**kubernetes: Any) -> dict[str, Any]:
    spec = {
        "gitRepository": "git@github.com:example/gastown.git",
        "gitSecretRef": {"name": "repo-deploy-key"},
        "knownHostsConfigMapRef": {"name": "git-known-hosts"},
        "agentSecretRef": {"name": "agent-api-key"},
        "image": "ghcr.io/gastown/polecat-agent:0.1.0",
    }
    spec.update(kubernetes)
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p1", "namespace": "ns"},
        "spec": {"rig": "gastown", "beadID": "gt-abc12", "executionMode": "kubernetes", "kubernetes": spec},
    }


def local_polecat(**local: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p1", "namespace": "ns"},
        "spec": {"rig": "gastown", "beadID": "gt-abc12", "local": {"townRoot": "/srv/gt", **local}},
    }


def envelope(
    obj: Any, *, operation: str = "CREATE", old: Any = None, uid: str = "abc-123", **request: Any
) -> bytes:
    req: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "gastown.gastown.io", "version": "v1alpha1", "kind": "Polecat"},
        "resource": {"group": "gastown.gastown.io", "version": "v1alpha1", "resource": "polecats"},
        "namespace": "ns",
        "name": "p1",
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    req.update(request)
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    ).encode()
