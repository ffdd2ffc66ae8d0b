"""The lab's real node itself: a real kubelet and containerd run a restricted Pod.

Real: kube-apiserver (PodSecurity "restricted" admission), the scheduler, the
kubelet v1.37 built from the pinned module, containerd, runc, the CNI bridge, and
the pause image built from Kubernetes' pause.c. Nothing is faked.
"""

from __future__ import annotations

import json

import pytest

from gastown.devcluster import binaries
from gastown.devcluster.lab import Lab
from gastown.devcluster.network import GATEWAY, POD_SUBNET
from gastown.devcluster.node import RealNode
from gastown.devcluster.node_binaries import PAUSE_IMAGE
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.real_node]


def restricted_pod(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65535,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


async def pod_json(lab: Lab, ns: str, name: str) -> dict[str, object] | None:
    rc, out, _ = await lab.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out) if rc == 0 else None


async def test_node_is_ready_with_the_pinned_kubelet(node_lab: Lab, real_node: RealNode) -> None:
    _, out, _ = await node_lab.kubectl("get", "node", real_node.name, "-o", "json")
    node = json.loads(out)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == binaries.kubernetes_version()
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    # TaintNodesByCondition's not-ready taint was lifted by the node lifecycle controller.
    assert not [t for t in node["spec"].get("taints", []) if "not-ready" in t["key"]]


async def test_restricted_pod_runs_on_the_bridge_and_is_torn_down(
    node_lab: Lab, real_node: RealNode, node_namespace: str
) -> None:
    """A restricted Pod from the locally built pause image runs with an address on the
    bridge; deleted, its container is stopped (SIGTERM) and the Pod goes."""
    ns = node_namespace
    await node_lab.kubectl(
        "apply", "-n", ns, "-f", "-", input=json.dumps(restricted_pod("pause", PAUSE_IMAGE))
    )

    async def running() -> dict[str, object] | None:
        pod = await pod_json(node_lab, ns, "pause")
        status = (pod or {}).get("status") or {}
        return pod if isinstance(status, dict) and status.get("phase") == "Running" else None

    pod = await wait_for(running, what="the pause Pod Running on the real node", timeout=60.0)
    status = pod["status"]
    assert isinstance(status, dict)
    assert pod["spec"]["nodeName"] == real_node.name
    prefix = POD_SUBNET.split(".0.0/")[0] + "."
    assert status["podIP"].startswith(prefix) and status["podIP"] != GATEWAY
    tasks = await real_node.ctr("tasks", "list")
    assert "RUNNING" in tasks

    await node_lab.kubectl("delete", "pod", "pause", "-n", ns, "--wait=true", "--timeout=60s")
    assert await pod_json(node_lab, ns, "pause") is None
