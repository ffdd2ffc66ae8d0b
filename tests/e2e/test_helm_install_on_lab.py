"""charts/gastown-operator installed on the test lab with the real Helm CLI.

Real: kube-apiserver (RBAC decisions, the TokenRequest API, PodSecurity admission),
kube-controller-manager (Deployment → ReplicaSet → Pods), the Helm CLI built from its
pinned module, and the operator's own code running as the chart's ServiceAccount.
Fake: kwok stands in for the kubelet and the container runtime, so no image is pulled
and nothing runs inside the Pods; that is why most installs here use ``devMode`` (no
Deployment) and the operator runs in the test process, authenticated only by a token
of the chart's ServiceAccount.

Each test installs its own release into its own namespace (cluster-scoped objects are
named after the release) and uninstalls it, so releases never collide.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from gastown.controller.manager import Manager
from gastown.devcluster import finalizer_policy
from gastown.devcluster.lab import Lab, free_port
from gastown.kube import load_api_client
from gastown.webhook import certs
from gastown.webhook.server import PATH as WEBHOOK_PATH
from tests.support.helm import CHART_DIR, REPO_ROOT, helm_env, parse_documents, require_helm
from tests.support.operator_env import deployment_env, settings_from_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

CRD_NAME = "polecats.gastown.gastown.io"
CRD_NAMES = (CRD_NAME, "rigs.gastown.gastown.io", "convoys.gastown.gastown.io")


# --------------------------------------------------------------------------------------
# Helpers: helm and kubectl as subprocesses, a kubeconfig that holds only a token
# --------------------------------------------------------------------------------------
async def _run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class Release:
    """One Helm release of the chart on the lab, installed into ``namespace``."""

    def __init__(self, lab: Lab, helm: Path, namespace: str, workdir: Path) -> None:
        self.lab = lab
        self.helm = helm
        self.namespace = namespace
        # Contains the chart name, so the chart's fullname is the release name.
        self.name = f"gastown-operator-{namespace.removeprefix('t-')}"
        self.workdir = workdir
        self.installed = False

    async def run(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        rc, out, err = await _run(
            [str(self.helm), *args, "--kubeconfig", str(self.lab.kubeconfig)], env=helm_env()
        )
        if check:
            assert rc == 0, f"helm {' '.join(args)} failed ({rc}):\n{err}"
        return rc, out, err

    def _values(self, values: dict[str, Any], revision: str) -> str:
        path = self.workdir / f"values-{revision}.json"
        path.write_text(json.dumps(values))
        return str(path)

    async def install(self, values: dict[str, Any]) -> str:
        _, out, _ = await self.run(
            "install", self.name, str(CHART_DIR), "-n", self.namespace, "-f", self._values(values, "1")
        )
        self.installed = True
        return out

    async def upgrade(self, values: dict[str, Any]) -> str:
        _, out, _ = await self.run(
            "upgrade", self.name, str(CHART_DIR), "-n", self.namespace, "-f", self._values(values, "2")
        )
        return out

    async def uninstall(self) -> None:
        await self.run("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "60s")
        self.installed = False

    async def template(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        _, out, _ = await self.run(
            "template", self.name, str(CHART_DIR), "-n", self.namespace, "-f", self._values(values, "t")
        )
        return parse_documents(out)

    async def cleanup(self) -> None:
        """Never leave a webhook or cluster roles behind for later tests."""
        if self.installed:
            await self.run("uninstall", self.name, "-n", self.namespace, check=False)
        for kind in ("validatingwebhookconfiguration", "clusterrole", "clusterrolebinding"):
            for name in (self.name, f"{self.name}-webhook-ca"):
                await self.lab.kubectl("delete", kind, name, "--ignore-not-found", check=False)


@pytest.fixture
async def release(lab: Lab, namespace: str) -> AsyncIterator[Release]:
    helm = require_helm()
    with tempfile.TemporaryDirectory(prefix="gastown-helm-") as tmp:
        rel = Release(lab, helm, namespace, Path(tmp))
        try:
            yield rel
        finally:
            await rel.cleanup()


async def _service_account_token(k8s_api: client.ApiClient, namespace: str, name: str) -> str:
    """A token for the ServiceAccount from the TokenRequest API (what a kubelet mounts)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = await client.CoreV1Api(k8s_api).create_namespaced_service_account_token(
        name, namespace, request, _request_timeout=30
    )
    token: str = response.status.token
    return token


def _token_kubeconfig(lab: Lab, token: str, path: Path) -> Path:
    """A kubeconfig with only the token: no client certificate that would win over it."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "lab",
                        "cluster": {"server": lab.server, "certificate-authority": str(lab.ca_file)},
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


async def _kubectl_as(lab: Lab, kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    return await _run([str(lab.kubectl_path), f"--kubeconfig={kubeconfig}", *args], timeout=60)


async def _can_i(lab: Lab, kubeconfig: Path, verb: str, resource: str, *flags: str) -> bool:
    rc, out, err = await _kubectl_as(lab, kubeconfig, "auth", "can-i", verb, resource, *flags)
    assert rc in (0, 1), f"kubectl auth can-i {verb} {resource} {flags}: {err}"
    return out.strip() == "yes"


async def _check_access(
    lab: Lab, kubeconfig: Path, expected: list[tuple[bool, str, str, tuple[str, ...]]]
) -> None:
    """Every (allowed?, verb, resource, flags) as the token sees it; all mismatches at once."""
    answers = await asyncio.gather(
        *(_can_i(lab, kubeconfig, verb, res, *fl) for _, verb, res, fl in expected)
    )
    wrong = [
        f"{'should' if want else 'must not'} be allowed: {verb} {res} {' '.join(fl)}"
        for (want, verb, res, fl), got in zip(expected, answers, strict=True)
        if want != got
    ]
    assert not wrong, "\n".join(wrong)


async def _exists(lab: Lab, *args: str) -> bool:
    rc, _, _ = await lab.kubectl("get", *args, check=False)
    return rc == 0


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------
async def test_install_cluster_wide_rbac_upgrade_uninstall(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, release: Release
) -> None:
    """devMode install: every object is created, the ServiceAccount's token can do exactly
    what the operator needs (and not read Secrets cluster-wide), the operator's caBundle
    patch survives ``helm upgrade``, and ``helm uninstall`` removes the release."""
    ns, name = namespace, release.name
    values: dict[str, Any] = {
        "devMode": {"externalWebhookURL": f"https://127.0.0.1:{free_port()}/validate-polecat"},
    }
    notes = await release.install(values)
    assert "Development mode" in notes

    # Everything the chart renders exists; no Deployment in devMode.
    for kind, obj, in_ns in [
        ("serviceaccount", name, True),
        ("role", name, True),
        ("rolebinding", name, True),
        ("clusterrole", name, False),
        ("clusterrolebinding", name, False),
        ("clusterrole", f"{name}-webhook-ca", False),
        ("clusterrolebinding", f"{name}-webhook-ca", False),
        ("validatingwebhookconfiguration", name, False),
        ("mutatingadmissionpolicy", f"{name}-finalizer", False),
        ("mutatingadmissionpolicybinding", f"{name}-finalizer", False),
        *(("customresourcedefinition", crd, False) for crd in CRD_NAMES),
    ]:
        assert await _exists(lab, kind, obj, *(["-n", ns] if in_ns else [])), f"{kind}/{obj} missing"
    assert not await _exists(lab, "deployment", name, "-n", ns)
    _, out, _ = await lab.kubectl("get", "validatingwebhookconfiguration", name, "-o", "json")
    hook = json.loads(out)["webhooks"][0]
    assert hook["clientConfig"]["url"] == values["devMode"]["externalWebhookURL"]
    assert hook["failurePolicy"] == "Fail"

    # The chart's ServiceAccount, authenticated by a TokenRequest token and nothing else.
    token = await _service_account_token(k8s_api, ns, name)
    sa = _token_kubeconfig(lab, token, release.workdir / "sa.kubeconfig")
    rc, out, err = await _kubectl_as(lab, sa, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert rc == 0 and out == f"system:serviceaccount:{ns}:{name}", err

    pc = "polecats.gastown.gastown.io"
    rigs, convoys = "rigs.gastown.gastown.io", "convoys.gastown.gastown.io"
    anywhere = ("-n", "default")
    here = ("-n", ns)
    await _check_access(
        lab,
        sa,
        [
            # What the operator needs, in any namespace.
            # Convoys create their Polecats and TTLs delete finished ones (issue 21).
            *[
                (True, verb, pc, anywhere)
                for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
            ],
            (True, "list", pc, ("--all-namespaces",)),
            (True, "watch", pc, ("--all-namespaces",)),
            (True, "patch", pc, ("--subresource=status", *anywhere)),
            (True, "update", pc, ("--subresource=status", *anywhere)),
            (True, "update", pc, ("--subresource=finalizers", *anywhere)),
            # Rigs are read (defaults, capacity) and counted in their status; Convoys are
            # read, finalized and given their aggregate status.
            *[(True, verb, rigs, anywhere) for verb in ("get", "list", "watch")],
            (True, "watch", rigs, ("--all-namespaces",)),
            (True, "patch", rigs, ("--subresource=status", *anywhere)),
            *[(True, verb, convoys, anywhere) for verb in ("get", "list", "watch", "update", "patch")],
            (True, "watch", convoys, ("--all-namespaces",)),
            (True, "patch", convoys, ("--subresource=status", *anywhere)),
            (True, "update", convoys, ("--subresource=finalizers", *anywhere)),
            *[(True, verb, "pods", anywhere) for verb in ("create", "get", "list", "watch", "delete")],
            (True, "watch", "pods", ("--all-namespaces",)),
            (True, "get", "pods", ("--subresource=log", *anywhere)),
            (True, "create", "events.events.k8s.io", anywhere),
            (True, "patch", "events.events.k8s.io", anywhere),
            # Its own Lease, webhook certificate Secret and webhook configuration.
            (True, "create", "leases.coordination.k8s.io", here),
            (True, "get", f"leases.coordination.k8s.io/{name}", here),
            (True, "update", f"leases.coordination.k8s.io/{name}", here),
            (True, "create", "secrets", here),
            (True, "get", f"secrets/{name}-webhook-tls", here),
            (True, "update", f"secrets/{name}-webhook-tls", here),
            (True, "patch", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{name}", ()),
            # What it must not do.
            (False, "list", "secrets", ("--all-namespaces",)),
            (False, "get", "secrets/anything", anywhere),
            (False, "get", "secrets/anything", here),
            (False, "list", "secrets", here),
            (False, "get", "configmaps/anything", anywhere),
            (False, "create", rigs, anywhere),
            (False, "update", rigs, anywhere),
            (False, "delete", rigs, anywhere),
            (False, "create", convoys, anywhere),
            (False, "delete", convoys, anywhere),
            (False, "update", "pods", anywhere),
            (False, "create", "pods", ("--subresource=exec", *anywhere)),
            (False, "get", "leases.coordination.k8s.io/someone-else", here),
            (False, "update", f"leases.coordination.k8s.io/{name}", anywhere),
            (False, "patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/other", ()),
            (False, "create", "validatingwebhookconfigurations.admissionregistration.k8s.io", ()),
            (False, "create", "clusterroles.rbac.authorization.k8s.io", ()),
            (False, "create", "serviceaccounts", ("--subresource=token", *here)),
            (False, "*", "*", ("--all-namespaces",)),
        ],
    )
    # Real requests with the token, not only the authorizer's answer.
    rc, _, err = await _kubectl_as(lab, sa, "get", "polecats,rigs,convoys", "--all-namespaces")
    assert rc == 0, err  # the three kinds are served
    rc, _, err = await _kubectl_as(lab, sa, "get", "secrets", "--all-namespaces")
    assert rc != 0 and "forbidden" in err.lower(), err

    # The operator's job with self-managed certificates, done with its own token: create its
    # Secret and patch the caBundle into the chart's webhook configuration.
    ca_bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
    rc, _, err = await _kubectl_as(
        lab, sa, "create", "secret", "generic", f"{name}-webhook-tls", "-n", ns, "--from-literal=tls.crt=x"
    )
    assert rc == 0, err
    patch = json.dumps([{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_bundle}])
    rc, _, err = await _kubectl_as(
        lab, sa, "patch", "validatingwebhookconfiguration", name, "--type=json", "-p", patch
    )
    assert rc == 0, err

    # helm upgrade changes what the chart owns and keeps what the operator set.
    await release.upgrade({**values, "webhook": {"failurePolicy": "Ignore"}})
    _, out, _ = await lab.kubectl("get", "validatingwebhookconfiguration", name, "-o", "json")
    hook = json.loads(out)["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["clientConfig"].get("caBundle") == ca_bundle, "helm upgrade dropped the operator's caBundle"
    _, out, _ = await release.run("status", name, "-n", ns, "-o", "json")
    assert json.loads(out)["version"] == 2 and json.loads(out)["info"]["status"] == "deployed"

    # helm uninstall removes the release's objects; the CRDs (and so the objects) stay.
    await release.uninstall()
    # The apiserver drops the finalizer policy asynchronously; later tests on this lab run no
    # operator, so wait until it is really gone.
    await finalizer_policy.wait_until_applied(lab, "default", applied=False)
    for kind, obj in [
        ("validatingwebhookconfiguration", name),
        ("mutatingadmissionpolicy", f"{name}-finalizer"),
        ("clusterrole", name),
        ("clusterrolebinding", f"{name}-webhook-ca"),
    ]:
        assert not await _exists(lab, kind, obj), f"{kind}/{obj} left behind"
    assert not await _exists(lab, "serviceaccount", name, "-n", ns)
    for crd in CRD_NAMES:
        assert await _exists(lab, "customresourcedefinition", crd)


async def test_operator_pods_are_admitted_by_pod_security_restricted(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, release: Release
) -> None:
    """The in-cluster install (2 replicas, a PDB) in a namespace that enforces Pod Security
    "restricted": the lab's PodSecurity admission creates the operator's Pods, and refuses
    an ordinary Pod in the same namespace (so the enforcement is real)."""
    ns, name = namespace, release.name
    await lab.kubectl(
        "label", "namespace", ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    # Serving only this namespace keeps the webhook (whose Pods kwok fakes) away from other tests.
    await release.install({"replicaCount": 2, "watchNamespaces": [ns]})

    async def pods() -> list[dict[str, Any]]:
        _, out, _ = await lab.kubectl(
            "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items if len(items) == 2 else []

    created = await wait_for(timeout=60, interval=0.2, what="2 operator Pods", check=pods)
    for pod in created:
        assert pod["spec"]["serviceAccountName"] == name
    _, out, _ = await lab.kubectl("get", "replicasets", "-n", ns, "-o", "json")
    for rs in json.loads(out)["items"]:
        failures = [c for c in rs["status"].get("conditions") or [] if c["type"] == "ReplicaFailure"]
        assert not failures, failures
    assert await _exists(lab, "poddisruptionbudget", name, "-n", ns)

    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "not-restricted", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x"}]},
    }
    rc, _, err = await lab.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert rc != 0 and "violates PodSecurity" in err, err

    # watchNamespaces: the workload rules are a Role here, nothing cluster-wide.
    token = await _service_account_token(k8s_api, ns, name)
    sa = _token_kubeconfig(lab, token, release.workdir / "sa.kubeconfig")
    await _check_access(
        lab,
        sa,
        [
            (True, "create", "pods", ("-n", ns)),
            (True, "watch", "polecats.gastown.gastown.io", ("-n", ns)),
            (False, "create", "pods", ("-n", "default")),
            (False, "list", "pods", ("--all-namespaces",)),
            (False, "list", "polecats.gastown.gastown.io", ("--all-namespaces",)),
        ],
    )
    await release.uninstall()
    await wait_for(timeout=60, interval=0.2, what="operator Pods gone", check=lambda: _no_pods(lab, ns, name))


async def _no_pods(lab: Lab, ns: str, name: str) -> bool:
    _, out, _ = await lab.kubectl(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "name"
    )
    return not out.strip()


def _webhook_tls(directory: Path) -> str:
    """A CA and a serving certificate for 127.0.0.1 in ``directory``; the CA as a caBundle."""
    ca_cert, ca_key = certs.generate_ca()
    cert, key = certs.issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
    directory.mkdir()
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    return base64.b64encode(ca_cert).decode()


@pytest.mark.parametrize("check_references", [False, True], ids=["default-rbac", "check-references"])
async def test_operator_as_the_chart_service_account_reconciles_a_polecat(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, release: Release, check_references: bool
) -> None:
    """The whole operator (webhook, Lease, informers, reconciler, kubernetes executor),
    configured exactly as the chart's Deployment would configure it and authenticated only
    by a token of the chart's ServiceAccount: the apiserver sends Polecats through the
    chart's webhook configuration (devMode URL) to it, it denies a bad one, takes the Lease,
    runs a kubernetes-mode Polecat to Working (kwok runs its Pod) and lets it go on delete.
    So the chart's RBAC is enough; the same token is refused Secrets cluster-wide.

    Both settings of ``podDefaults.checkReferences``: off (the default, no Secret access:
    the operator must not look the Secrets up) and on (``get`` on Secrets and ConfigMaps
    in the served namespace, and the operator checks them before creating the Pod)."""
    ns, name = namespace, release.name
    port = free_port()
    values: dict[str, Any] = {
        # Serving only this namespace keeps the webhook away from other tests' Polecats.
        "watchNamespaces": [ns],
        "podDefaults": {"checkReferences": check_references},
        "devMode": {
            "externalWebhookURL": f"https://127.0.0.1:{port}{WEBHOOK_PATH}",
            "caBundle": _webhook_tls(release.workdir / "tls"),
        },
    }
    # The operator's settings from the Deployment the chart renders without devMode; where
    # it serves and its certificate are what devMode changes.
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
    assert settings.operator_namespace == ns and settings.namespaces == [ns] and settings.leader_election
    assert settings.pod.check_references is check_references and settings.webhook_enabled
    await release.install(values)

    token = await _service_account_token(k8s_api, ns, name)
    sa_kubeconfig = _token_kubeconfig(lab, token, release.workdir / "sa.kubeconfig")
    api = await load_api_client(sa_kubeconfig)
    manager = Manager(settings, api=api)
    try:
        await manager.start()
        await asyncio.wait_for(manager.wait_synced(), 60)

        # The apiserver calls the operator's webhook through the chart's configuration.
        invalid = REPO_ROOT / "examples" / "invalid" / "webhook-agent-secret-required.yaml"
        rc, _, err = await lab.kubectl("apply", "-n", ns, "-f", str(invalid), check=False)
        assert rc != 0, "the webhook admitted a Polecat without agentSecretRef"
        assert 'admission webhook "polecats.gastown.gastown.io" denied' in err, err
        assert "spec.kubernetes.agentSecretRef" in err, err

        for path in sorted((REPO_ROOT / "examples" / "kubernetes").glob("*.yaml")):
            await lab.kubectl("apply", "-n", ns, "-f", str(path))
        polecat = yaml.safe_load((REPO_ROOT / "examples" / "kubernetes" / "polecat.yaml").read_text())
        polecat_name = polecat["metadata"]["name"]

        async def phase() -> str:
            _, out, _ = await lab.kubectl(
                "get", "polecat", polecat_name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False
            )
            return out if out == "Working" else ""

        try:
            await wait_for(timeout=60, interval=0.2, what=f"Polecat {polecat_name} Working", check=phase)
        except AssertionError as exc:
            _, status, _ = await lab.kubectl(
                "get", "polecat", polecat_name, "-n", ns, "-o", "jsonpath={.status}", check=False
            )
            raise AssertionError(f"{exc}; its status: {status}") from None
        _, out, _ = await lab.kubectl("get", "lease", settings.lease_name, "-n", ns, "-o", "json")
        assert json.loads(out)["spec"]["holderIdentity"] == manager.identity
        _, out, _ = await lab.kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json")
        about = [
            e for e in json.loads(out)["items"] if (e.get("regarding") or {}).get("name") == polecat_name
        ]
        assert about, "the operator recorded no Event about the Polecat"

        # The same identity is refused what the chart does not grant.
        rc, _, err = await _kubectl_as(lab, sa_kubeconfig, "get", "secrets", "--all-namespaces")
        assert rc != 0 and "forbidden" in err.lower(), err

        await lab.kubectl("delete", "polecat", polecat_name, "-n", ns, "--wait=false")

        async def gone() -> bool:
            return not await _exists(lab, "polecat", polecat_name, "-n", ns)

        await wait_for(timeout=60, interval=0.2, what=f"Polecat {polecat_name} deleted", check=gone)
    finally:
        await manager.stop()
        await api.close()
    await release.uninstall()
