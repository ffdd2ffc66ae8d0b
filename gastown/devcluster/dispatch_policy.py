"""The dispatch policy on a lab, for what runs without Helm (dev, tests, benchmarks).

The chart ships the dispatch freeze as a ValidatingAdmissionPolicy (see
:mod:`gastown.api.policy`); a lab that only gets ``kubectl apply -f crds/`` would otherwise
accept changes to a dispatched Polecat that every real install refuses. This applies
``webhooks/dispatchpolicy.yaml`` (the chart's policy, byte for byte in content: a unit test
compares them) and waits until the apiserver enforces it, which it does asynchronously.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from gastown.api import policy
from gastown.devcluster.lab import Lab, LabError

PROBE_NAMESPACE = "default"


def _probe(name: str) -> dict[str, object]:
    # Kubernetes mode with a public repository: what a validating webhook, if one is
    # registered, admits without any setup.
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name, "namespace": PROBE_NAMESPACE},
        "spec": {
            "rig": "probe",
            "beadID": "gt-probe",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "https://git.example.com/probe.git",
                "agentSecretRef": {"name": "probe"},
            },
        },
    }


async def enforced(lab: Lab, name: str, attempt: int) -> bool:
    """Whether changing the task of the dispatched probe ``name`` is refused now."""
    rc, _, err = await lab.kubectl(
        "-n", PROBE_NAMESPACE, "patch", "polecat", name, "--type=merge",
        "-p", json.dumps({"spec": {"task": f"probe change {attempt}"}}), check=False,
    )  # fmt: skip
    return rc != 0 and "is immutable once the Polecat is dispatched" in err


async def install(lab: Lab, *, timeout: float = 30.0) -> None:
    """Apply the policy and return once a frozen-field change is refused by it."""
    await lab.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(policy.KUBECTL_POLICY))
    name = f"dispatch-policy-probe-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # A CRD just installed answers 429 "storage is (re)initializing" for a moment.
    while (await lab.kubectl("create", "-f", "-", input=json.dumps(_probe(name)), check=False))[0] != 0:
        if loop.time() > deadline:
            raise LabError(f"could not create the dispatch policy's probe Polecat within {timeout} s")
        await asyncio.sleep(0.2)
    try:
        await lab.kubectl(
            "-n", PROBE_NAMESPACE, "patch", "polecat", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"}}),
        )  # fmt: skip
        attempt = 0
        while not await enforced(lab, name, attempt):
            attempt += 1
            if loop.time() > deadline:
                raise LabError(f"the dispatch policy was not enforced within {timeout} s")
            await asyncio.sleep(0.2)
    finally:
        await lab.kubectl(
            "-n", PROBE_NAMESPACE, "patch", "polecat", name, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip
        await lab.kubectl("-n", PROBE_NAMESPACE, "delete", "polecat", name, "--wait=false", check=False)
