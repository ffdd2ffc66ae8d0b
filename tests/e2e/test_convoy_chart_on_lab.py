"""A Convoy through the chart's webhook registration and RBAC, on the lab.

Real: the chart installed with the real Helm CLI (devMode: the operator runs in the test
process, authenticated only by a token of the chart's ServiceAccount), kube-apiserver's
RBAC and admission (the Convoy reaches the operator's webhook through the chart's
ValidatingWebhookConfiguration), the garbage collector. kwok plays the kubelet.
Fixtures and helpers are those of tests/e2e/test_helm_install_on_lab.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from gastown.controller.manager import Manager
from gastown.devcluster.lab import Lab, free_port
from gastown.kube import load_api_client
from gastown.webhook.server import PATH as WEBHOOK_PATH
from tests.e2e import test_helm_install_on_lab as helm_install
from tests.e2e.test_convoy_on_lab import convoy_body
from tests.e2e.test_helm_install_on_lab import Release
from tests.support.operator_env import deployment_env, settings_from_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

release = helm_install.release


async def test_a_convoy_runs_as_the_chart_service_account_through_the_charts_webhook(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, release: Release, tmp_path: Any
) -> None:
    """As the chart's ServiceAccount: a Convoy with duplicate beads is denied by the webhook
    (the message names the field); a good one gets its owned Polecat Working, and its
    status written (so the chart's RBAC covers the Convoy informer, Polecat creates with
    blockOwnerDeletion owner references, and convoys/status)."""
    ns, name = namespace, release.name
    port = free_port()
    values: dict[str, Any] = {
        "watchNamespaces": [ns],
        "devMode": {
            "externalWebhookURL": f"https://127.0.0.1:{port}{WEBHOOK_PATH}",
            "caBundle": helm_install._webhook_tls(release.workdir / "tls"),
        },
    }
    rendered = await release.template({k: v for k, v in values.items() if k != "devMode"})
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    settings = settings_from_env(deployment_env(deployment, pod_name=f"{name}-test")).model_copy(
        update={
            "health_port": 0,
            "metrics_port": 0,
            "shutdown_grace": 5.0,
            "webhook_host": "127.0.0.1",
            "webhook_port": port,
            "webhook_cert_dir": release.workdir / "tls",
        }
    )
    await release.install(values)
    token = await helm_install._service_account_token(k8s_api, ns, name)
    api = await load_api_client(helm_install._token_kubeconfig(lab, token, release.workdir / "sa.kubeconfig"))
    manager = Manager(settings, api=api)
    for secret in ("git-key", "agent-api-key"):
        await lab.kubectl("create", "secret", "generic", secret, "-n", ns, "--from-literal=api-key=x")
    await lab.kubectl("create", "configmap", "git-known-hosts", "-n", ns, "--from-literal=known_hosts=x")
    try:
        await manager.start()
        await asyncio.wait_for(manager.wait_synced(), 60)

        bad = convoy_body("dupes", beads=[{"beadID": "gt-a1"}, {"beadID": "gt-a1"}])
        bad_file = tmp_path / "bad.yaml"
        bad_file.write_text(yaml.safe_dump(bad))
        rc, _, err = await lab.kubectl("apply", "-n", ns, "-f", str(bad_file), check=False)
        assert rc != 0 and "spec.beads[1].beadID: 'gt-a1' is listed twice" in err, err

        good_file = tmp_path / "good.yaml"
        good_file.write_text(yaml.safe_dump(convoy_body("batch", count=2, parallelism=1)))
        await lab.kubectl("apply", "-n", ns, "-f", str(good_file))

        async def working() -> dict[str, Any] | None:
            _, out, _ = await lab.kubectl("get", "polecat", "batch-1", "-n", ns, "-o", "json", check=False)
            obj = json.loads(out) if out else {}
            return obj if (obj.get("status") or {}).get("phase") == "Working" else None

        polecat = await wait_for(working, timeout=60, interval=0.2, what="the Convoy's Polecat Working")
        [owner] = polecat["metadata"]["ownerReferences"]
        assert owner["kind"] == "Convoy" and owner["blockOwnerDeletion"] is True

        async def counted() -> bool:
            _, out, _ = await lab.kubectl("get", "convoy", "batch", "-n", ns, "-o", "json", check=False)
            status = (json.loads(out) if out else {}).get("status") or {}
            return (status.get("counts") or {}).get("working") == 1

        await wait_for(counted, timeout=30, interval=0.2, what="the Convoy's status counting it Working")
        rc, _, _ = await lab.kubectl("get", "polecat", "batch-2", "-n", ns, check=False)
        assert rc != 0, "parallelism 1, yet a second Polecat exists"
        await lab.kubectl("delete", "convoy", "batch", "-n", ns, "--wait=false")

        async def gone() -> bool:
            rc, _, _ = await lab.kubectl("get", "polecat", "batch-1", "-n", ns, check=False)
            return rc != 0

        await wait_for(gone, timeout=60, interval=0.2, what="the Convoy's Polecat deleted with it")
    finally:
        await manager.stop()
        await api.close()
    await release.uninstall()
