"""The agent Pod and KubernetesExecutor against the lab's real kube-apiserver.

Real parts: kube-apiserver with the PodSecurity admission plugin (the namespace is
labelled ``pod-security.kubernetes.io/enforce=restricted``), etcd, the scheduler,
garbage collection, the Polecat CRD. kwok stands in for the kubelet and container
runtime (none can run here): it moves scheduled Pods to Running, and finishes them
with the exit code and termination message a test puts in the ``lab.gastown.io/*``
annotations, the way the runner's container would.

The Pod lookup is a fresh GET each time (the controller's informer cache is another
helper's and tested there); its result goes through ``slim_pod`` as the cache's would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import API_VERSION, GROUP, KIND, PLURAL, VERSION, Phase, Polecat
from gastown.devcluster.lab import Lab
from gastown.executors.base import Observation, UserError
from gastown.executors.kubernetes.executor import KubernetesExecutor
from gastown.executors.kubernetes.observer import slim_pod
from gastown.executors.kubernetes.pod import build_pod, pod_name
from gastown.kube import KubeClient
from gastown.settings import PodDefaults
from tests.support.crd import install_crd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

DEFAULTS = PodDefaults()
REPORT = {
    "branch": "polecat/fix-login",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "pushed": True,
    "agentExitCode": 0,
    "message": "the agent succeeded; committed its changes and pushed 0123456789ab to polecat/fix-login",
}


@pytest.fixture
async def restricted(lab: Lab, k8s_api: ApiClient, namespace: str) -> str:
    """The test namespace, enforcing Pod Security "restricted", with the CRD installed."""
    await install_crd(lab)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    await client.CoreV1Api(k8s_api).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


async def make_polecat(
    api: ApiClient, ns: str, name: str = "fix-login", refs: bool = True, **kubernetes: Any
) -> Polecat:
    """Create the referenced Secrets/ConfigMap (``refs``) and a kubernetes-mode Polecat."""
    core = client.CoreV1Api(api)
    if refs:
        await core.create_namespaced_secret(
            ns,
            {
                "metadata": {"name": "git-key"},
                "type": "kubernetes.io/ssh-auth",
                "stringData": {"ssh-privatekey": "not a real key"},
            },
        )
        await core.create_namespaced_secret(
            ns, {"metadata": {"name": "agent-api-key"}, "stringData": {"api-key": "sk-test"}}
        )
        await core.create_namespaced_config_map(
            ns,
            {"metadata": {"name": "git-known-hosts"}, "data": {"known_hosts": "github.com ssh-ed25519 AAAA"}},
        )
    spec = {
        "gitRepository": "git@github.com:acme/app.git",
        "gitSecretRef": {"name": "git-key"},
        "knownHostsConfigMapRef": {"name": "git-known-hosts"},
        "agentSecretRef": {"name": "agent-api-key", "key": "api-key"},
        "activeDeadlineSeconds": 600,
        **kubernetes,
    }
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "rig": "webshop",
            "beadID": "gt-abc12",
            "task": "Fix the login redirect loop. $(rm -rf /)",
            "executionMode": "kubernetes",
            "kubernetes": spec,
        },
    }
    created = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body
    )
    return Polecat.from_dict(created)


def api_lookup(
    api: ApiClient,
) -> tuple[Callable[[str, str], dict[str, Any] | None], dict[tuple[str, str], Any]]:
    """A Pod lookup backed by a dict the test fills from the API (the informer's role)."""
    cache: dict[tuple[str, str], Any] = {}
    return (lambda ns, name: cache.get((ns, name))), cache


async def refresh(api: ApiClient, cache: dict[tuple[str, str], Any], ns: str, name: str) -> None:
    try:
        pod = await client.CoreV1Api(api).read_namespaced_pod(name, ns)
        cache[(ns, name)] = slim_pod(api.sanitize_for_serialization(pod))
    except ApiException as exc:
        if exc.status != 404:
            raise
        cache.pop((ns, name), None)


async def test_pod_is_admitted_under_restricted_pod_security(k8s_api: ApiClient, restricted: str) -> None:
    polecat = await make_polecat(k8s_api, restricted)
    lookup, _ = api_lookup(k8s_api)
    observation = await KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS).dispatch(polecat)
    assert observation.phase is Phase.DISPATCHING

    pod = await client.CoreV1Api(k8s_api).read_namespaced_pod(pod_name(polecat), restricted)
    assert pod.metadata.owner_references[0].uid == polecat.metadata.uid
    assert pod.metadata.owner_references[0].controller is True
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.automount_service_account_token is False
    assert [c.name for c in pod.spec.init_containers] == ["git-clone"]
    agent = pod.spec.containers[0]
    assert agent.security_context.read_only_root_filesystem is True
    assert agent.security_context.capabilities.drop == ["ALL"]
    env = {e.name: e for e in agent.env}
    assert env["ANTHROPIC_API_KEY"].value is None
    assert env["ANTHROPIC_API_KEY"].value_from.secret_key_ref.name == "agent-api-key"


async def test_the_namespace_really_enforces_restricted(k8s_api: ApiClient, restricted: str) -> None:
    """Negative control: the same Pod with one restricted field removed is refused."""
    polecat = await make_polecat(k8s_api, restricted)
    body = copy.deepcopy(build_pod(polecat, DEFAULTS))
    del body["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
    with pytest.raises(ApiException) as err:
        await client.CoreV1Api(k8s_api).create_namespaced_pod(restricted, body)
    assert err.value.status == 403
    assert "violates PodSecurity" in err.value.body and "allowPrivilegeEscalation" in err.value.body


async def test_dispatch_twice_creates_one_pod(k8s_api: ApiClient, restricted: str) -> None:
    polecat = await make_polecat(k8s_api, restricted)
    lookup, _ = api_lookup(k8s_api)  # stays empty: the cache "lags" behind both dispatches
    executor = KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS)
    first = await executor.dispatch(polecat)
    second = await executor.dispatch(polecat)  # 409 AlreadyExists → read back, owned → success
    assert first.phase is not None and second.phase is not None
    pods = await client.CoreV1Api(k8s_api).list_namespaced_pod(restricted)
    assert [p.metadata.name for p in pods.items] == [pod_name(polecat)]


async def test_a_foreign_pod_with_the_name_is_refused(k8s_api: ApiClient, restricted: str) -> None:
    polecat = await make_polecat(k8s_api, restricted)
    foreign = build_pod(polecat, DEFAULTS)
    del foreign["metadata"]["ownerReferences"]
    await client.CoreV1Api(k8s_api).create_namespaced_pod(restricted, foreign)
    lookup, _ = api_lookup(k8s_api)
    with pytest.raises(UserError) as err:
        await KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS).dispatch(polecat)
    assert err.value.reason == "PodNameTaken"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("git-key", "Secret git-key (spec.kubernetes.gitSecretRef.name) does not exist in namespace"),
        (
            "git-known-hosts",
            "ConfigMap git-known-hosts (spec.kubernetes.knownHostsConfigMapRef.name) does not",
        ),
        ("agent-api-key", "Secret agent-api-key (spec.kubernetes.agentSecretRef.name) does not exist"),
    ],
)
async def test_missing_references_are_user_errors(
    k8s_api: ApiClient, restricted: str, missing: str, message: str
) -> None:
    polecat = await make_polecat(k8s_api, restricted)
    core = client.CoreV1Api(k8s_api)
    if missing == "git-known-hosts":
        await core.delete_namespaced_config_map(missing, restricted)
    else:
        await core.delete_namespaced_secret(missing, restricted)
    lookup, _ = api_lookup(k8s_api)
    with pytest.raises(UserError) as err:
        await KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS).dispatch(polecat)
    assert message in err.value.message
    assert (await core.list_namespaced_pod(restricted)).items == []


async def test_invalid_pod_is_a_user_error(k8s_api: ApiClient, restricted: str) -> None:
    polecat = await make_polecat(k8s_api, restricted, resources={"limits": {"memory": "lots"}})
    lookup, _ = api_lookup(k8s_api)
    with pytest.raises(UserError) as err:
        await KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS).dispatch(polecat)
    assert err.value.reason == "Invalid"
    assert "creating Pod polecat-fix-login" in err.value.message


@pytest.mark.parametrize(
    "outcome",
    [
        ("0", json.dumps(REPORT), Phase.DONE, "Succeeded"),
        ("0", "", Phase.DONE, "NoResultReported"),
        ("1", json.dumps({**REPORT, "agentExitCode": 3}), Phase.FAILED, "AgentFailed"),
        ("1", "", Phase.FAILED, "AgentFailed"),
    ],
)
async def test_kwok_runs_the_pod_to_the_end(
    k8s_api: ApiClient, restricted: str, outcome: tuple[str, str, Phase, str]
) -> None:
    exit_code, message, phase, reason = outcome
    polecat = await make_polecat(k8s_api, restricted)
    lookup, cache = api_lookup(k8s_api)
    executor = KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS)
    await executor.dispatch(polecat)
    name, ns = pod_name(polecat), restricted

    async def reached(wanted: Phase) -> Observation | None:
        await refresh(k8s_api, cache, ns, name)
        obs = await executor.observe(polecat)
        return obs if obs.phase is wanted else None

    working = await wait_for(
        lambda: reached(Phase.WORKING), what="the Pod to run (kwok pod-running)", timeout=60
    )
    assert working.kubernetes is not None and working.kubernetes.nodeName

    annotations = {"lab.gastown.io/exit-code": exit_code, "lab.gastown.io/termination-message": message}
    await client.CoreV1Api(k8s_api).patch_namespaced_pod(name, ns, {"metadata": {"annotations": annotations}})
    final = await wait_for(lambda: reached(phase), what=f"the Pod to finish as {phase}", timeout=60)
    assert final.reason == reason
    if message:
        assert final.result is not None and final.result.commit == REPORT["commit"]


async def test_terminate_stops_a_running_pod_in_place_and_keeps_it(
    k8s_api: ApiClient, restricted: str
) -> None:
    """Terminate of a started Pod shortens its activeDeadlineSeconds and marks it (not a
    delete): the Pod ends as at its deadline (kwok plays the kubelet) and stays for its report."""
    polecat = await make_polecat(k8s_api, restricted)
    lookup, cache = api_lookup(k8s_api)
    executor = KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS)
    name = pod_name(polecat)
    await executor.dispatch(polecat)

    async def started() -> bool | None:
        await refresh(k8s_api, cache, restricted, name)
        pod = lookup(restricted, name)
        return True if pod is not None and pod["status"].get("phase") == "Running" else None

    await wait_for(started, what="the Pod to run", timeout=60)
    observation = await executor.terminate(polecat)
    assert (observation.phase, observation.reason, observation.stopping) == (Phase.WORKING, "Stopping", True)
    stored = await client.CoreV1Api(k8s_api).read_namespaced_pod(name, restricted)
    assert stored.metadata.annotations["gastown.gastown.io/stop"] == "Terminate"
    assert stored.spec.active_deadline_seconds < 3600

    async def ended() -> bool | None:
        await refresh(k8s_api, cache, restricted, name)
        pod = lookup(restricted, name)
        return True if pod is not None and pod["status"].get("phase") == "Failed" else None

    await wait_for(ended, what="the Pod to end at its deadline", timeout=60)
    final = await executor.terminate(polecat)  # ended: observed, nothing patched or deleted
    assert (final.phase, final.reason) == (Phase.TERMINATED, "Stopped")
    assert final.work_saved is not None and final.work_saved.reason == "NoResultReported"
    assert lookup(restricted, name) is not None, "the Pod stays"
    still = await client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        GROUP, VERSION, restricted, PLURAL, polecat.metadata.name
    )
    assert still["metadata"]["uid"] == polecat.metadata.uid


async def test_finished_work_is_not_recreated_when_the_pod_is_gone(
    k8s_api: ApiClient, restricted: str
) -> None:
    polecat = await make_polecat(k8s_api, restricted)
    done = Polecat.from_dict({**polecat.to_dict(), "status": {"phase": "Done"}})
    lookup, _ = api_lookup(k8s_api)
    observation = await KubernetesExecutor(KubeClient(k8s_api), lookup, DEFAULTS).dispatch(done)
    assert (observation.phase, observation.reason) == (Phase.DONE, "PodGone")
    assert (await client.CoreV1Api(k8s_api).list_namespaced_pod(restricted)).items == []
