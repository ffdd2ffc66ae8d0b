"""An idiomatic kopf operator doing the same kubernetes-mode job, for comparison.

Run by ``bench/kopf_bench.py`` as ``kopf run --standalone --all-namespaces`` against
the same lab, measured by the same client-side watches as ours. It uses the same Pod
builder and observer (so both operators do identical work per Polecat) and kopf's
usual idioms: a create handler that creates the Pod, an event handler on owned Pods
that patches the owner's status. kopf's own bookkeeping (progress annotations,
last-handled-configuration) is left on, as a kopf user would have it.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio import client, config

from gastown.api.models import GROUP, PLURAL, VERSION, Polecat
from gastown.executors.kubernetes.observer import observe_pod
from gastown.executors.kubernetes.pod import MANAGED_BY, build_pod
from gastown.settings import PodDefaults

_state: dict[str, Any] = {}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # no Events: ours batches them off the hot path anyway
    settings.watching.server_timeout = 300
    await config.load_kube_config()
    _state["api"] = client.ApiClient()
    _state["defaults"] = PodDefaults()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await _state["api"].close()


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create_pod(body: kopf.Body, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    polecat = Polecat.from_dict(dict(body))
    pod = build_pod(polecat, _state["defaults"])
    try:
        await client.CoreV1Api(_state["api"]).create_namespaced_pod(namespace, pod)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    patch.status["phase"] = "Dispatching"


@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def pod_changed(body: kopf.Body, event: str, **_: Any) -> None:
    if event == "DELETED":
        return
    owners = body.metadata.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("kind") == "Polecat"), None)
    if owner is None:
        return
    custom = client.CustomObjectsApi(_state["api"])
    namespace = body.metadata["namespace"]
    current = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, owner["name"])
    observation = observe_pod(dict(body), Polecat.from_dict(current))
    if observation.phase is None or (current.get("status") or {}).get("phase") == observation.phase:
        return
    await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        owner["name"],
        {"status": {"phase": observation.phase.value, "observedGeneration": body.metadata.get("generation")}},
        _content_type="application/merge-patch+json",
    )
