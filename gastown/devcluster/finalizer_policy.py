"""The chart's finalizer policy on a lab, for what runs the operator without Helm (dev, tests, benchmarks).

The Helm chart installs a MutatingAdmissionPolicy (``templates/finalizerpolicy.yaml``) that adds
the operator's finalizer to each new Polecat inside the apiserver, so the operator spends no
write on it. Whatever runs the operator outside the chart should see the same cluster, so this
module renders that very template with the lab's helm (no second copy of the policy to drift)
and applies it, optionally bound to some namespaces only: a lab shared by many tests must not
put finalizers on Polecats that no operator will ever release.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gastown.devcluster import binaries
from gastown.devcluster.lab import Lab, LabError

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "gastown-operator"
TEMPLATE = "templates/finalizerpolicy.yaml"


async def render(
    *, namespaces: Sequence[str] = (), kube_version: str, release: str = "gastown-operator"
) -> list[dict[str, Any]]:
    """The policy and its binding as the chart renders them (bound to ``namespaces``, or all)."""
    helm = binaries.helm_binary()
    if helm is None:
        raise LabError("helm is not built: run `make lab`")
    with tempfile.TemporaryDirectory() as tmp:
        values = Path(tmp) / "values.yaml"
        values.write_text(json.dumps({"watchNamespaces": list(namespaces)}))
        proc = await asyncio.create_subprocess_exec(
            str(helm),
            "template",
            release,
            str(CHART_DIR),
            "-f",
            str(values),
            "--kube-version",
            kube_version,
            "--show-only",
            TEMPLATE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise LabError(f"helm template {TEMPLATE} failed: {err.decode(errors='replace')}")
    return [doc for doc in yaml.safe_load_all(out.decode()) if doc]


async def server_version(lab: Lab) -> str:
    """The lab apiserver's version, e.g. ``1.37.2``."""
    _, out, _ = await lab.kubectl("version", "-o", "json")
    return str(json.loads(out)["serverVersion"]["gitVersion"]).lstrip("v")


async def install(lab: Lab, *, namespaces: Sequence[str] = (), suffix: str = "") -> list[dict[str, Any]]:
    """Apply the policy (names get ``suffix``) and return once the apiserver applies it.

    Returns the applied documents, for :func:`uninstall`; see :func:`wait_until_applied`.
    """
    docs = await render(namespaces=namespaces, kube_version=await server_version(lab))
    if suffix:
        for doc in docs:
            doc["metadata"]["name"] += suffix
        docs[1]["spec"]["policyName"] = docs[0]["metadata"]["name"]
    await lab.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    await wait_until_applied(lab, namespaces[0] if namespaces else "default", applied=True)
    return docs


async def adds_finalizer(lab: Lab, namespace: str) -> bool | None:
    """Whether a Polecat created in ``namespace`` now gets a finalizer from admission.

    A server-side dry run: admission runs in full, nothing is stored. None when the create
    was refused (e.g. a validating webhook being removed at the same moment): unknown.
    """
    probe = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": f"policy-probe-{uuid.uuid4().hex[:8]}", "namespace": namespace},
        # Kubernetes mode with a public repository: what a validating webhook, if one is
        # registered, admits without any setup (local mode may be disabled there).
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
    rc, out, _ = await lab.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False
    )
    if rc != 0:
        return None
    return bool(json.loads(out)["metadata"].get("finalizers"))


async def wait_until_applied(lab: Lab, namespace: str, *, applied: bool, timeout: float = 30.0) -> None:
    """Wait until the apiserver applies (or, after removal, no longer applies) the policy.

    It loads policies asynchronously, so a policy just created or deleted may not (or may
    still) act for a moment: this looks instead of assuming.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await adds_finalizer(lab, namespace) is not applied:
        if loop.time() > deadline:
            state = "applied" if applied else "gone"
            raise LabError(
                f"the finalizer policy was not {state} in namespace {namespace} within {timeout} s"
            )
        await asyncio.sleep(0.2)


async def uninstall(lab: Lab, docs: list[dict[str, Any]], *, namespace: str = "default") -> None:
    """Remove what :func:`install` applied; return once it no longer acts in ``namespace``."""
    await lab.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(docs)
    )
    await wait_until_applied(lab, namespace, applied=False)
