"""One bead, one live Polecat: a second Polecat on a claimed bead waits (kubernetes mode).

Real: the operator's Manager with its own executors (informers, work queue, reconciler
with its bead-claim index, the ``KubernetesExecutor``), the lab's kube-apiserver, etcd
and scheduler. kwok plays the kubelet (no container runtime here); the agent exiting is
stood in for by the Pod annotations of tests/e2e/test_kubernetes_mode_on_lab.py.

The waiter's own backstop requeue is the production 5 minutes, longer than any wait
here: it is dispatched because the holder's watch event woke it, not by polling.
"""

from __future__ import annotations

from typing import Any

import pytest

from gastown.api.models import API_VERSION, KIND, Phase
from gastown.controller.manager import Manager
from gastown.kube import KubeClient
from tests.e2e import test_kubernetes_mode_on_lab as kubernetes_mode
from tests.e2e.test_kubernetes_mode_on_lab import COMMIT, end_pod, phase_is, running, wait_pod
from tests.support.engine import polecats_path
from tests.support.operator import conditions, get_or_none, pod_path, wait_gone, wait_status

pytestmark = pytest.mark.lab

# The kubernetes-mode tests' fixtures: a restricted namespace with the referenced objects,
# and the operator serving it.
restricted = kubernetes_mode.restricted
operator = kubernetes_mode.operator

BEAD = "gt-shared1"


async def create_on_bead(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "rig": "webshop",
            "beadID": BEAD,
            "task": "Fix the login redirect loop.",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "git@github.com:acme/app.git",
                "gitSecretRef": {"name": "git-key"},
                "knownHostsConfigMapRef": {"name": "git-known-hosts"},
                "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
            },
        },
    }
    created: dict[str, Any] = await kube.create(polecats_path(namespace), body)
    return created


def bead_claimed_by(holder: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        ready = conditions(obj).get("Ready") or {}
        return (
            (obj.get("status") or {}).get("phase") == Phase.PENDING.value
            and ready.get("status") == "False"
            and ready.get("reason") == "BeadClaimed"
            and f"claimed by Polecat {holder}" in ready.get("message", "")
        )

    return check


async def assert_waiting_without_a_pod(kube: KubeClient, namespace: str, name: str, holder: str) -> None:
    """A whole reconcile of the waiter ran (it reports the new generation) and made no Pod.

    Level-based, no sleep: the spec change (allowed, nothing was dispatched) makes a new
    generation; when the status reports it, a reconcile saw the bead claimed and ended.
    """
    bumped = await kube.merge_patch(polecats_path(namespace, name), {"spec": {"task": "still waiting"}})
    generation = bumped["metadata"]["generation"]
    waiting = await wait_status(
        kube,
        namespace,
        name,
        f"BeadClaimed at generation {generation}",
        lambda o: (
            bead_claimed_by(holder)(o) and (o.get("status") or {}).get("observedGeneration") == generation
        ),
    )
    assert "startTime" not in waiting["status"]
    assert "starts when that one finishes or is deleted" in conditions(waiting)["Ready"]["message"]
    assert await get_or_none(kube, pod_path(namespace, f"polecat-{name}")) is None, (
        "the waiter was dispatched"
    )


async def test_second_polecat_on_a_bead_waits_until_the_first_is_done(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    ns = restricted
    await create_on_bead(kube, ns, "first")
    await wait_status(kube, ns, "first", "Working", phase_is(Phase.WORKING))
    await wait_pod(kube, ns, "polecat-first", "Running", running)

    await create_on_bead(kube, ns, "second")
    await wait_status(kube, ns, "second", "BeadClaimed", bead_claimed_by(f"{ns}/first"))
    await assert_waiting_without_a_pod(kube, ns, "second", f"{ns}/first")

    report = {
        "branch": "polecat/first",
        "commit": COMMIT,
        "pushed": True,
        "agentExitCode": 0,
        "message": "ok",
    }
    await end_pod(kube, ns, "polecat-first", 0, report)
    done = await wait_status(kube, ns, "first", "Done", phase_is(Phase.DONE))
    pod = await wait_pod(kube, ns, "polecat-second", "created once the holder is Done", lambda p: True)
    # Dispatched after the holder finished, never while it was live.
    assert pod["metadata"]["creationTimestamp"] >= done["status"]["completionTime"]
    working = await wait_status(kube, ns, "second", "Working", phase_is(Phase.WORKING))
    assert conditions(working)["Ready"]["reason"] != "BeadClaimed"


async def test_deleting_the_holder_lets_the_next_one_start(
    kube: KubeClient, restricted: str, operator: Manager
) -> None:
    ns = restricted
    await create_on_bead(kube, ns, "holder")
    await wait_status(kube, ns, "holder", "Working", phase_is(Phase.WORKING))
    await create_on_bead(kube, ns, "waiter")
    await assert_waiting_without_a_pod(kube, ns, "waiter", f"{ns}/holder")

    await kube.delete(polecats_path(ns, "holder"))
    await wait_gone(kube, polecats_path(ns, "holder"))
    await wait_status(kube, ns, "waiter", "Working once the holder is gone", phase_is(Phase.WORKING))
