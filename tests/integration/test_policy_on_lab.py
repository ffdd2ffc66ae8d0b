"""The operator's image/ServiceAccount policy, enforced by the real webhook on the lab's apiserver.

The webhook runs with a restrictive policy (as the chart's ``podDefaults.allowedImages`` and
``podDefaults.allowedServiceAccounts`` would set it); ``kubectl apply`` of the shipped
kubernetes example with another image or a ServiceAccount is denied by the webhook with
the field, the value, what is allowed and where to change it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from gastown.devcluster.lab import Lab
from gastown.settings import PodDefaults
from tests.integration.test_webhook_on_lab import registered, start_webhook
from tests.support.admission import DENIED_BY
from tests.support.crd import install_crd
from tests.unit.webhook.invalid_examples import EXAMPLES

pytestmark = pytest.mark.lab

POLICY = PodDefaults(
    allowed_images=["registry.example.com/agents/*"], allowed_service_accounts=["agent-reader"]
)


async def test_the_webhook_denies_images_and_service_accounts_outside_the_policy(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    await install_crd(lab)
    obj = yaml.safe_load((EXAMPLES / "kubernetes" / "polecat.yaml").read_text())
    served = await start_webhook(tmp_path / "certs", k8s_api, pod=POLICY)
    try:
        async with registered(lab, served, namespace):
            obj["spec"]["kubernetes"]["image"] = "docker.io/evil/miner:1.0"
            obj["spec"]["kubernetes"]["serviceAccountName"] = "default"
            rc, _, denied = await lab.kubectl(
                "-n", namespace, "apply", "-f", "-", input=json.dumps(obj), check=False
            )  # fmt: skip
            obj["spec"]["kubernetes"]["image"] = "registry.example.com/agents/claude:1.2"
            obj["spec"]["kubernetes"]["serviceAccountName"] = "agent-reader"
            ok_rc, out, err = await lab.kubectl(
                "-n", namespace, "apply", "-f", "-", input=json.dumps(obj), check=False
            )  # fmt: skip
    finally:
        await served.close()
    assert rc != 0 and DENIED_BY in denied, denied
    assert (
        "- spec.kubernetes.image: image 'docker.io/evil/miner:1.0' is not allowed by this operator's "
        "policy (allowed patterns: 'registry.example.com/agents/*'"
    ) in denied, denied
    assert "podDefaults.allowedImages" in denied, denied
    assert (
        "- spec.kubernetes.serviceAccountName: ServiceAccount 'default' is not allowed by this "
        "operator's policy (allowed: 'agent-reader')"
    ) in denied, denied
    assert "podDefaults.allowedServiceAccounts" in denied, denied
    assert ok_rc == 0, err
    assert "created" in out
