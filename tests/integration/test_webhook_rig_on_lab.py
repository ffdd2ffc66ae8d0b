"""The webhook and Rigs, called by the real kube-apiserver (the lab), through kubectl.

The WebhookServer runs in this test process (see tests/integration/test_webhook_on_lab.py
for how it is registered). Shows: a Rig's values are checked with the Polecat's rules and
messages; a Polecat is checked against its Rig, read live by the webhook; a Polecat that
needs a Rig that does not exist is admitted with a warning that it will wait; the Secrets a
Rig names are looked up like a Polecat's own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gastown.devcluster.lab import Lab
from tests.integration.test_webhook_on_lab import ServedWebhook, webhook  # noqa: F401 - fixture
from tests.support.admission import DENIED_BY

pytestmark = pytest.mark.lab


def rig(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": name},
        "spec": spec,
    }


def polecat(name: str, rig: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": rig, "beadID": f"gt-{name}", **spec},
    }


async def apply(lab: Lab, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj), check=False)
    return rc, out + err


async def test_a_rig_gets_the_polecats_rules(
    lab: Lab,
    namespace: str,
    webhook: ServedWebhook,  # noqa: F811 - the fixture
) -> None:
    rc, output = await apply(
        lab, namespace, rig("bad", kubernetes={"gitRepository": "ftp://x/y", "image": "A B"})
    )
    assert rc != 0, output
    assert DENIED_BY in output, output
    assert "spec.kubernetes.gitRepository:" in output
    assert "spec.kubernetes.image:" in output


async def test_a_polecat_is_checked_against_its_rig(
    lab: Lab,
    namespace: str,
    webhook: ServedWebhook,  # noqa: F811 - the fixture
) -> None:
    # No Rig yet: admitted, with the warning that it will wait.
    rc, output = await apply(lab, namespace, polecat("early", "later", executionMode="kubernetes"))
    assert rc == 0, output
    assert (
        f"Warning: spec.rig: Rig 'later' in namespace '{namespace}' was not found; this Polecat needs it "
        "for spec.kubernetes.gitRepository, so it will wait in Pending (RigNotFound) until the Rig exists"
    ) in output

    # A Rig that does not complete it: denied, naming the Polecat and the Rig.
    rc, output = await apply(lab, namespace, rig("thin", kubernetes={"image": "ghcr.io/x/agent:1"}))
    assert rc == 0, output
    rc, output = await apply(lab, namespace, polecat("thin-one", "thin", executionMode="kubernetes"))
    assert rc != 0, output
    assert DENIED_BY in output, output
    assert (
        "spec.kubernetes.gitRepository: is required with executionMode kubernetes and neither the Polecat "
        "nor Rig 'thin' sets it"
    ) in output

    # A Rig that completes it: admitted; the Secrets the Rig names are looked up as the Polecat's.
    full = {
        "gitRepository": "git@github.com:acme/app.git",
        "gitSecretRef": {"name": "rig-git-key"},
        "knownHostsConfigMapRef": {"name": "rig-known-hosts"},
        "agentSecretRef": {"name": "rig-agent-key"},
        "image": "ghcr.io/x/agent:1",
    }
    rc, output = await apply(lab, namespace, rig("full", executionMode="kubernetes", kubernetes=full))
    assert rc == 0, output
    rc, output = await apply(lab, namespace, polecat("bare", "full"))
    assert rc == 0, output
    assert "Warning: spec.kubernetes.agentSecretRef: Secret 'rig-agent-key' was not found" in output
