"""The chart's MutatingAdmissionPolicy on a real kube-apiserver: finalizers without an operator write.

The policy (``charts/gastown-operator/templates/finalizerpolicy.yaml``, applied here by
:mod:`gastown.devcluster.finalizer_policy` exactly as the chart renders it) puts the operator's
finalizer on each new Polecat inside the apiserver's admission chain, so the operator does not
PATCH every Polecat to add it. Shown with no operator running at all: whatever finalizer a
Polecat carries came from the apiserver. The binding is limited to the test's namespace (the
chart's ``watchNamespaces``), so the session's other tests never meet the policy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gastown.api.models import ExecutionMode, finalizer_for
from gastown.devcluster import finalizer_policy
from gastown.devcluster.lab import Lab
from tests.support.lab_api import fresh_namespace

pytestmark = pytest.mark.lab


def _polecat(name: str, mode: ExecutionMode, finalizers: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"rig": "webapp", "beadID": f"gt-{name}"}
    if mode is ExecutionMode.KUBERNETES:
        spec |= {
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "https://git.example.com/webapp.git",
                "agentSecretRef": {"name": "agent"},
            },
        }
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "gastown.gastown.io/v1alpha1", "kind": "Polecat", "metadata": meta, "spec": spec}


async def _create(lab: Lab, namespace: str, body: dict[str, Any]) -> list[str]:
    """Create ``body``; the finalizers the apiserver stored."""
    _, out, _ = await lab.kubectl("-n", namespace, "create", "-o", "json", "-f", "-", input=json.dumps(body))
    return list(json.loads(out)["metadata"].get("finalizers") or [])


async def _strip_finalizers(lab: Lab, namespace: str) -> None:
    """No operator runs here to release them: strip them so the namespace can go."""
    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "-o", "name")
    for name in out.split():
        await lab.kubectl(
            "-n", namespace, "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )


@pytest.fixture
async def policy(lab: Lab, namespace: str, crd: None) -> AsyncIterator[None]:
    """The chart's policy, bound to ``namespace`` only and shown to be active."""
    docs = await finalizer_policy.install(lab, namespaces=[namespace], suffix=f"-{namespace}")
    try:
        yield
    finally:
        await finalizer_policy.uninstall(lab, docs, namespace=namespace)
        await _strip_finalizers(lab, namespace)


async def test_each_mode_gets_its_finalizer_from_the_apiserver(
    lab: Lab, namespace: str, policy: None
) -> None:
    local = await _create(lab, namespace, _polecat("local-one", ExecutionMode.LOCAL))
    kubernetes = await _create(lab, namespace, _polecat("k8s-one", ExecutionMode.KUBERNETES))
    assert local == [finalizer_for(ExecutionMode.LOCAL)]
    assert kubernetes == [finalizer_for(ExecutionMode.KUBERNETES)]


async def test_a_users_own_finalizers_are_kept(lab: Lab, namespace: str, policy: None) -> None:
    stored = await _create(lab, namespace, _polecat("mine", ExecutionMode.LOCAL, ["example.com/audit"]))
    assert stored == ["example.com/audit", finalizer_for(ExecutionMode.LOCAL)]


async def test_updates_are_left_alone(lab: Lab, namespace: str, policy: None) -> None:
    """Only CREATE is matched: a finalizer the operator removed is not put back by an update."""
    await _create(lab, namespace, _polecat("upd", ExecutionMode.LOCAL))
    await lab.kubectl(
        "-n", namespace, "patch", "pcat", "upd", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    _, out, _ = await lab.kubectl("-n", namespace, "label", "pcat", "upd", "touched=yes", "-o", "json")
    assert not json.loads(out)["metadata"].get("finalizers")


async def test_other_namespaces_are_not_bound(lab: Lab, namespace: str, policy: None, k8s_api: Any) -> None:
    """A binding for ``watchNamespaces`` leaves the rest alone (the probe proved it is active)."""
    async with fresh_namespace(k8s_api, "other") as other:
        assert await _create(lab, other, _polecat("elsewhere", ExecutionMode.LOCAL)) == []
