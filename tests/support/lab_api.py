"""An admin client and fresh namespaces on a lab: what the kwok lab's and the real node's
fixtures both need, written once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from kubernetes_asyncio import client

from gastown.devcluster.lab import Lab
from gastown.kube import load_api_client
from tests.support.waiting import wait_for


@asynccontextmanager
async def admin_api(lab: Lab) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio ApiClient with the lab's admin credentials, closed after use."""
    api = await load_api_client(lab.kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@asynccontextmanager
async def fresh_namespace(
    api: client.ApiClient, prefix: str, labels: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """A new namespace, usable for Pods (its default ServiceAccount exists), deleted after."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    meta = client.V1ObjectMeta(name=name, labels=dict(labels) if labels else None)
    await core.create_namespace(client.V1Namespace(metadata=meta))

    # Pods are refused until the controller-manager has made the default ServiceAccount;
    # right after a test restarts the apiserver that can take the controller-manager's
    # watches a while (over 15 s seen), so the bound is generous.
    async def has_default_account() -> bool:
        accounts = await core.list_namespaced_service_account(name)
        return any(sa.metadata.name == "default" for sa in accounts.items)

    await wait_for(has_default_account, timeout=90, what=f"the default ServiceAccount of {name}")
    try:
        yield name
    finally:
        await core.delete_namespace(name, propagation_policy="Background")
