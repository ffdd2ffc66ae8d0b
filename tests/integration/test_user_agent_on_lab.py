"""Writes are attributed to who made them: the apiserver names each write's field manager
after the client's User-Agent (up to its first ``/``), so the operator's clients send their
own names rather than the generated client's "OpenAPI-Generator"; ``kubectl get pcat -o yaml
--show-managed-fields`` (and the audit log, and apiserver metrics) then say who wrote what.
"""

from __future__ import annotations

import pytest

from gastown.cli.kubeclient import ClusterOptions, connect
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient, load_api_client

pytestmark = pytest.mark.lab


def _managers(obj: dict[str, object]) -> set[str]:
    meta = obj["metadata"]
    assert isinstance(meta, dict)
    return {entry["manager"] for entry in meta.get("managedFields") or []}


async def test_operator_and_cli_writes_carry_their_own_field_manager(lab: Lab, namespace: str) -> None:
    api = await load_api_client(lab.kubeconfig)
    try:
        created = await KubeClient(api).create(
            f"/api/v1/namespaces/{namespace}/configmaps",
            {"metadata": {"name": "by-operator"}, "data": {"by": "operator"}},
        )
    finally:
        await api.close()
    assert _managers(created) == {"gastown-operator"}

    async with connect(ClusterOptions(kubeconfig=lab.kubeconfig, namespace=namespace)) as cluster:
        created = await cluster.kube.create(
            f"/api/v1/namespaces/{namespace}/configmaps",
            {"metadata": {"name": "by-cli"}, "data": {"by": "cli"}},
        )
    assert _managers(created) == {"gastown"}
