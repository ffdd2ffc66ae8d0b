"""charts/gastown-operator rendered by the real Helm CLI, with every feature switch.

``helm lint --strict`` and ``helm template`` run for each scenario below; every rendered
document is parsed and checked: Pod templates against Pod Security "restricted", RBAC
for least privilege, the webhook configuration's fields, and the operator's
environment against ``gastown.settings.Settings`` (the names must be ones the operator
reads, and the files they point at must be mounted). The installed behaviour (real
RBAC decisions, real PodSecurity admission) is tested on the lab in
tests/e2e/test_helm_install_on_lab.py.
"""

from __future__ import annotations

import base64
import re
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from gastown.api import policy
from gastown.api.models import GROUP, PLURAL, ExecutionMode, finalizer_for
from gastown.settings import PodDefaults, Settings, SSHSettings
from gastown.webhook.rules import validate_object
from tests.support.helm import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    render,
    require_helm,
    run_helm,
    values_file,
)
from tests.support.operator_env import POD_NAME, deployment_env, settings_from_env
from tests.support.pod_security import restricted_violations

DEV_URL = "https://192.168.1.10:9443/validate-polecat"
CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "local-mode": {
        "ssh": {
            "host": "agents.internal",
            "port": 2222,
            "user": "polecat",
            "keySecret": {"name": "polecat-ssh", "key": "id_ed25519"},
            "knownHosts": {"configMap": "polecat-known-hosts"},
        },
        "local": {
            "townRoot": "/srv/town",
            "tmuxSocket": "agents",
            "pollInterval": 2.5,
            "hostUnreachableTimeout": 90,
        },
    },
    "known-hosts-secret": {
        "ssh": {"host": "10.0.0.9", "knownHosts": {"secret": "known-hosts", "key": "hosts"}},
    },
    "pod-defaults": {
        "podDefaults": {
            "agentImage": "registry.local/agent:1.2",
            "cloneImage": "registry.local/clone:1.2",
            "imagePullPolicy": "Always",
            "agentCommand": ["/bin/agent", "--json"],
            "runAsUser": 4242,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": 4, "memory": "8Gi"}},
        }
    },
    "policy": {
        "podDefaults": {
            "allowedImages": ["registry.example.com/agents/*", "ghcr.io/gastown/polecat-agent@sha256:*"],
            "allowedServiceAccounts": ["agent-reader"],
        }
    },
    "check-references": {"podDefaults": {"checkReferences": True}},
    "check-references-namespaced": {"podDefaults": {"checkReferences": True}, "watchNamespaces": ["team-a"]},
    "replicas": {"replicaCount": 3},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {
        "webhook": {
            "certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}
        }
    },
    "dev-mode": {"devMode": {"externalWebhookURL": DEV_URL, "caBundle": CA_BUNDLE}},
    "dev-mode-self-managed": {"devMode": {"externalWebhookURL": DEV_URL}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }
    },
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "webhook-off": {"webhook": {"enabled": False}},
    "finalizer-policy-off": {"finalizerPolicy": {"enabled": False}},
    "everything": {
        "replicaCount": 2,
        "watchNamespaces": ["agents"],
        "ssh": {
            "host": "h",
            "keySecret": {"name": "k", "key": "ssh-privatekey"},
            "knownHosts": {"secret": "kh"},
        },
        "webhook": {"certManager": {"enabled": True}},
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}

CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicyBinding",
    "CustomResourceDefinition",
}
FINALIZER_POLICY = {"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"}
DISPATCH_POLICY = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Fields of Settings whose env var names hold nested settings (their own prefixes).
NESTED: dict[str, type[BaseSettings]] = {"ssh": SSHSettings, "pod": PodDefaults}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[dict[str, Any]]]:
    """Every scenario rendered once (helm template takes ~0.1 s)."""
    return {name: render(helm, values) for name, values in SCENARIOS.items()}


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "Deployment")


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return deployment_env(_deployment(docs))


def _in_cluster(name: str) -> bool:
    return not SCENARIOS[name].get("devMode", {}).get("externalWebhookURL")


# ------------------------------------------------------------------------------------
# Lint and render
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_is_clean(helm: Path, scenario: str, tmp_path: Path) -> None:
    values = values_file(SCENARIOS[scenario], tmp_path)
    result = run_helm(helm, "lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE, "-f", str(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_document_is_a_named_object_in_the_right_namespace(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    docs = rendered[scenario]
    assert docs
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        meta = doc["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]), meta["name"]
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{doc['kind']}/{meta['name']} is cluster-scoped"
        elif doc["kind"] not in {"Role", "RoleBinding"}:
            assert meta["namespace"] == NAMESPACE, f"{doc['kind']}/{meta['name']}"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_expected_objects_per_switch(rendered: dict[str, list[dict[str, Any]]]) -> None:
    def kinds(name: str) -> set[str]:
        return {d["kind"] for d in rendered[name]}

    base = {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    }
    assert kinds("defaults") == {*base, "ValidatingWebhookConfiguration", *FINALIZER_POLICY, *DISPATCH_POLICY}
    assert kinds("finalizer-policy-off") == {*base, "ValidatingWebhookConfiguration", *DISPATCH_POLICY}
    assert "PodDisruptionBudget" in kinds("replicas") and "PodDisruptionBudget" not in kinds("defaults")
    assert "NetworkPolicy" in kinds("network-policy") and "NetworkPolicy" not in kinds("defaults")
    assert "ServiceMonitor" in kinds("service-monitor") and "ServiceMonitor" not in kinds("defaults")
    assert {"Certificate", "Issuer"} <= kinds("cert-manager")
    assert "Certificate" in kinds("cert-manager-issuer") and "Issuer" not in kinds("cert-manager-issuer")
    assert "ValidatingWebhookConfiguration" not in kinds("webhook-off")
    assert [s["metadata"]["name"] for s in _of_kind(rendered["webhook-off"], "Service")] == [
        f"{RELEASE}-metrics"
    ]
    for dev in ("dev-mode", "dev-mode-self-managed"):
        assert kinds(dev).isdisjoint({"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}), dev
        assert {"ServiceAccount", "ValidatingWebhookConfiguration"} <= kinds(dev)


def test_pdb_keeps_one_replica_of_the_operator(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["replicas"]
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == _deployment(docs)["spec"]["selector"]["matchLabels"]
    assert _deployment(docs)["spec"]["replicas"] == 3


# ------------------------------------------------------------------------------------
# Pod Security "restricted"
# ------------------------------------------------------------------------------------
def _pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in POD_TEMPLATE_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_template_meets_pod_security_restricted(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    templates = list(_pod_templates(rendered[scenario]))
    assert len(templates) == (1 if _in_cluster(scenario) else 0)
    for where, spec in templates:
        assert restricted_violations(spec) == [], where
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert (
            isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
        )
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_restricted_check_catches_each_violation() -> None:
    """The checker itself: a Pod that breaks every rule gets a message for each."""
    bad = {
        "hostNetwork": True,
        "hostPID": True,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "nfs", "nfs": {"server": "x"}}],
        "containers": [
            {
                "name": "c",
                "ports": [{"name": "p", "containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "privileged": True,
                    "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
                    "runAsNonRoot": False,
                },
            }
        ],
        "initContainers": [{"name": "i", "securityContext": {"allowPrivilegeEscalation": False}}],
    }
    problems = "\n".join(restricted_violations(bad))
    for expected in (
        "spec.hostNetwork",
        "spec.hostPID",
        "spec.securityContext.runAsUser",
        "spec.securityContext.seccompProfile.type: 'Unconfined'",
        "volumes[root]: hostPath",
        "volumes[nfs]: type 'nfs'",
        "containers[c].securityContext.privileged",
        "containers[c].securityContext.allowPrivilegeEscalation",
        "containers[c].securityContext.capabilities.drop",
        "containers[c].securityContext.capabilities.add: ['SYS_ADMIN']",
        "containers[c].securityContext.runAsNonRoot",
        "containers[c].ports[p].hostPort",
        "initContainers[i].securityContext.runAsNonRoot",
        "initContainers[i].securityContext.capabilities.drop",
    ):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"
    # NET_BIND_SERVICE alone is allowed; container-level settings may stand in for Pod ones.
    good = {
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                },
            }
        ],
        "volumes": [{"name": "t", "emptyDir": {}}, {"name": "p", "projected": {"sources": []}}],
    }
    assert restricted_violations(good) == []


# ------------------------------------------------------------------------------------
# RBAC
# ------------------------------------------------------------------------------------
def _rules(docs: list[dict[str, Any]], kind: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in _of_kind(docs, kind):
        for rule in doc.get("rules") or []:
            yield doc, rule


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_is_least_privilege(rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    for kind in ("ClusterRole", "Role"):
        for doc, rule in _rules(docs, kind):
            where = f"{kind}/{doc['metadata']['name']}"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in (rule.get(field) or []), f"{where}: wildcard in {field}"
            assert "nonResourceURLs" not in rule, where
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where
            if "secrets" in rule["resources"] and rule["verbs"] == ["get"] and "resourceNames" not in rule:
                # podDefaults.checkReferences: metadata GETs of the Secrets a Pod names; never list.
                assert SCENARIOS[scenario].get("podDefaults", {}).get("checkReferences"), where
                continue
            if "secrets" in rule["resources"]:
                assert kind == "Role" and doc["metadata"]["namespace"] == NAMESPACE, (
                    f"{where}: Secrets only in the release namespace"
                )
                assert not {"list", "watch", "delete", "patch"} & set(rule["verbs"]), where
                if set(rule["verbs"]) != {"create"}:  # RBAC cannot limit create by name
                    assert rule.get("resourceNames") == [f"{RELEASE}-webhook-tls"], where
            if "validatingwebhookconfigurations" in rule["resources"]:
                assert rule.get("resourceNames") == [RELEASE], f"{where}: only the chart's own webhook"
    # Bindings point at the chart's ServiceAccount only.
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in _of_kind(docs, kind):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
            ]


def _verbs(docs: list[dict[str, Any]], kind: str, resource: str, namespace: str | None = None) -> set[str]:
    verbs: set[str] = set()
    for doc, rule in _rules(docs, kind):
        if namespace is not None and doc["metadata"].get("namespace") != namespace:
            continue
        if resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_rbac_grants_what_the_operator_needs_cluster_wide(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    assert _verbs(docs, "ClusterRole", "polecats") == {
        "get", "list", "watch", "create", "update", "patch", "delete",
    }  # fmt: skip
    assert _verbs(docs, "ClusterRole", "polecats/status") == {"get", "update", "patch"}
    assert _verbs(docs, "ClusterRole", "polecats/finalizers") == {"update"}
    assert _verbs(docs, "ClusterRole", "rigs") == {"get", "list", "watch"}
    assert _verbs(docs, "ClusterRole", "rigs/status") == {"get", "update", "patch"}
    assert _verbs(docs, "ClusterRole", "convoys") == {"get", "list", "watch", "update", "patch"}
    assert _verbs(docs, "ClusterRole", "convoys/status") == {"get", "update", "patch"}
    assert _verbs(docs, "ClusterRole", "convoys/finalizers") == {"update"}
    assert _verbs(docs, "ClusterRole", "pods") == {"create", "get", "list", "watch", "delete", "patch"}
    assert _verbs(docs, "ClusterRole", "pods/log") == {"get"}
    assert _verbs(docs, "ClusterRole", "events") == {"create", "patch"}
    assert _verbs(docs, "ClusterRole", "validatingwebhookconfigurations") == {"get", "patch"}
    assert _verbs(docs, "ClusterRole", "secrets") == set()
    assert _verbs(docs, "Role", "leases", NAMESPACE) == {"create", "get", "update"}
    assert _verbs(docs, "Role", "secrets", NAMESPACE) == {"create", "get", "update"}


def test_rbac_with_watch_namespaces_uses_roles_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced"]
    for doc, _rule in _rules(docs, "ClusterRole"):
        assert doc["metadata"]["name"] == f"{RELEASE}-webhook-ca", "only the webhook caBundle is cluster-wide"
    for ns in ("team-a", "team-b"):
        assert _verbs(docs, "Role", "pods", ns) == {"create", "get", "list", "watch", "delete", "patch"}
        assert _verbs(docs, "Role", "polecats", ns) == {
            "get", "list", "watch", "create", "update", "patch", "delete",
        }  # fmt: skip
        assert _verbs(docs, "Role", "rigs", ns) == {"get", "list", "watch"}
        bindings = [b for b in _of_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert len(bindings) == 1 and bindings[0]["roleRef"]["kind"] == "Role"


@pytest.mark.parametrize("scenario", ["cert-manager", "dev-mode", "webhook-off"])
def test_no_secret_access_when_the_operator_does_not_manage_certificates(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    docs = rendered[scenario]
    assert _verbs(docs, "Role", "secrets") == set()
    assert _verbs(docs, "ClusterRole", "validatingwebhookconfigurations") == set()


# ------------------------------------------------------------------------------------
# Webhook
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "webhook-off"])
def test_webhook_configuration(rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    config = _one(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["name"] == RELEASE
    [hook] = config["webhooks"]
    assert hook["name"] == "polecats.gastown.gastown.io"
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["timeoutSeconds"] == 5
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"] == [
        {
            "apiGroups": ["gastown.gastown.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["polecats", "rigs", "convoys"],
            "scope": "Namespaced",
        }
    ]
    client = hook["clientConfig"]
    if _in_cluster(scenario):
        service = client["service"]
        assert service == {
            "name": f"{RELEASE}-webhook",
            "namespace": NAMESPACE,
            "path": "/validate-polecat",
            "port": 443,
        }
        [svc] = [s for s in _of_kind(docs, "Service") if s["metadata"]["name"] == service["name"]]
        [port] = svc["spec"]["ports"]
        assert port["port"] == 443 and port["targetPort"] == "webhook"
        assert svc["spec"]["selector"] == _deployment(docs)["spec"]["selector"]["matchLabels"]
        named = {p["name"]: p["containerPort"] for p in _container(docs)["ports"]}
        assert named == {"webhook": 9443, "metrics": 8080, "health": 8081}
        assert "url" not in client
    else:
        assert client["url"] == DEV_URL and "service" not in client
    if scenario == "dev-mode":
        assert client["caBundle"] == CA_BUNDLE
    else:
        assert "caBundle" not in client, "the operator or cert-manager fills it in"
    annotations = config["metadata"].get("annotations") or {}
    if SCENARIOS[scenario].get("webhook", {}).get("certManager", {}).get("enabled"):
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-webhook"
    else:
        assert "cert-manager.io/inject-ca-from" not in annotations
    namespaces = SCENARIOS[scenario].get("watchNamespaces")
    if namespaces:
        [expr] = hook["namespaceSelector"]["matchExpressions"]
        assert expr == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
    else:
        assert "namespaceSelector" not in hook


def test_cert_manager_certificate_matches_service_and_mount(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["cert-manager"]
    cert = _one(docs, "Certificate")
    assert cert["metadata"]["name"] == f"{RELEASE}-webhook"
    assert f"{RELEASE}-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    issuer = _one(docs, "Issuer")
    assert cert["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    env = _env(docs)
    settings = settings_from_env(env)
    assert settings.webhook_cert_dir is not None
    _assert_mounted(docs, settings.webhook_cert_dir / "tls.crt", secret=cert["spec"]["secretName"])
    issuer_ref = _one(rendered["cert-manager-issuer"], "Certificate")["spec"]["issuerRef"]
    assert issuer_ref == {"name": "corp-ca", "kind": "ClusterIssuer"}


# ------------------------------------------------------------------------------------
# The operator's settings, as the operator would read them
# ------------------------------------------------------------------------------------
def _known_env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields:
        if field in NESTED:
            prefix = str(NESTED[field].model_config.get("env_prefix", ""))
            names |= {f"{prefix}{sub}".upper() for sub in NESTED[field].model_fields}
        else:
            names.add(f"GASTOWN_{field}".upper())
    return names


def _assert_mounted(
    docs: list[dict[str, Any]], file: Path, *, secret: str = "", config_map: str = ""
) -> None:
    """``file`` is inside a read-only mount of the named Secret or ConfigMap, with that key."""
    container = _container(docs)
    spec = _deployment(docs)["spec"]["template"]["spec"]
    path = PurePosixPath(file)
    [mount] = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent]
    assert mount["readOnly"] is True
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    if secret:
        assert volume["secret"]["secretName"] == secret
        source = volume["secret"]
    else:
        assert volume["configMap"]["name"] == config_map
        source = volume["configMap"]
    if "items" in source:
        assert {"key": path.name, "path": path.name} in source["items"]
    else:
        assert path.name in {"tls.crt", "tls.key"}


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if _in_cluster(s)])
def test_operator_env_names_are_settings_the_operator_reads(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    """pydantic-settings silently ignores unknown GASTOWN_* variables: a typo would be lost."""
    gastown = {name for name in _env(rendered[scenario]) if name.startswith("GASTOWN_")}
    assert gastown - _known_env_names() == set()


def test_default_settings_match_the_chart(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    settings = settings_from_env(_env(docs))
    assert settings.operator_namespace == NAMESPACE
    assert settings.namespaces == []
    assert settings.identity == POD_NAME
    assert settings.log_format == "json"
    assert settings.webhook_enabled is True
    assert settings.webhook_cert_dir is None  # self-managed certificates
    assert settings.webhook_service_name == f"{RELEASE}-webhook"
    assert settings.webhook_secret_name == f"{RELEASE}-webhook-tls"
    assert settings.webhook_config_name == RELEASE
    assert settings.lease_name == RELEASE
    assert settings.leader_election is True
    assert settings.local_mode_enabled is False
    assert settings.ssh.key_file is None and settings.ssh.known_hosts_file is None
    # The Role's resourceNames are the names the operator will use.
    role = next(r for r in _of_kind(docs, "Role") if r["metadata"]["namespace"] == NAMESPACE)
    named = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert named == {settings.lease_name, settings.webhook_secret_name}
    # Ports and probes line up with the settings.
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "webhook": settings.webhook_port,
        "metrics": settings.metrics_port,
        "health": settings.health_port,
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    grace = _deployment(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown_grace


def test_local_mode_settings_and_mounts(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["local-mode"]
    settings = settings_from_env(_env(docs))
    assert settings.local_mode_enabled
    assert (settings.ssh.host, settings.ssh.port, settings.ssh.user) == ("agents.internal", 2222, "polecat")
    assert settings.town_root == "/srv/town"
    assert settings.tmux_socket == "agents" and settings.local_poll_interval == 2.5
    assert settings.host_unreachable_timeout == 90
    assert settings.ssh.key_file is not None and settings.ssh.known_hosts_file is not None
    _assert_mounted(docs, settings.ssh.key_file, secret="polecat-ssh")
    _assert_mounted(docs, settings.ssh.known_hosts_file, config_map="polecat-known-hosts")

    other = rendered["known-hosts-secret"]
    settings = settings_from_env(_env(other))
    assert settings.ssh.known_hosts_file is not None and settings.ssh.key_file is None
    _assert_mounted(other, settings.ssh.known_hosts_file, secret="known-hosts")


def test_pod_default_settings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = settings_from_env(_env(rendered["pod-defaults"])).pod
    assert pod.agent_image == "registry.local/agent:1.2"
    assert pod.clone_image == "registry.local/clone:1.2"
    assert pod.image_pull_policy == "Always"
    assert pod.agent_command == ["/bin/agent", "--json"]
    assert pod.run_as_user == 4242
    assert (pod.cpu_request, pod.memory_request, pod.cpu_limit, pod.memory_limit) == ("1", "1Gi", "4", "8Gi")
    defaults = settings_from_env(_env(rendered["defaults"])).pod
    assert defaults.clone_image is None
    # The chart's defaults are the operator's, except the reference check, which needs Secret
    # access the chart does not grant unless asked (podDefaults.checkReferences).
    assert defaults.check_references is False
    assert defaults == PodDefaults().model_copy(update={"check_references": False})
    assert settings_from_env(_env(rendered["check-references"])).pod.check_references is True


def test_policy_values_reach_the_operator_and_its_webhook(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """podDefaults.allowedImages/allowedServiceAccounts become the settings the webhook enforces."""
    settings = settings_from_env(_env(rendered["policy"]))
    assert settings.pod.allowed_images == [
        "registry.example.com/agents/*",
        "ghcr.io/gastown/polecat-agent@sha256:*",
    ]
    assert settings.pod.allowed_service_accounts == ["agent-reader"]
    polecat = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p1", "namespace": "team-a"},
        "spec": {
            "rig": "r",
            "beadID": "gt-1",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "https://example.com/r.git",
                "agentSecretRef": {"name": "k"},
                "image": "docker.io/evil/miner:1.0",
                "serviceAccountName": "agent-reader",
            },
        },
    }
    errors = validate_object(polecat, settings).errors
    assert [e.split(":")[0] for e in errors] == ["spec.kubernetes.image"]
    defaults = settings_from_env(_env(rendered["defaults"])).pod
    assert (defaults.allowed_images, defaults.allowed_service_accounts) == ([], [])


@pytest.mark.parametrize(
    ("scenario", "kind", "namespace"),
    [("check-references", "ClusterRole", None), ("check-references-namespaced", "Role", "team-a")],
)
def test_check_references_grants_get_on_secrets_and_configmaps_only(
    rendered: dict[str, list[dict[str, Any]]], scenario: str, kind: str, namespace: str | None
) -> None:
    docs = rendered[scenario]
    assert _verbs(docs, kind, "secrets", namespace) == {"get"}
    assert _verbs(docs, kind, "configmaps", namespace) == {"get"}
    assert _verbs(rendered["defaults"], "ClusterRole", "configmaps") == set()


def test_watch_namespaces_reach_the_operator(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert settings_from_env(_env(rendered["namespaced"])).namespaces == ["team-a", "team-b"]


# ------------------------------------------------------------------------------------
# CRD, schema, NOTES
# ------------------------------------------------------------------------------------
def test_finalizer_policy_adds_each_modes_finalizer_on_create_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """What the policy adds must be what the operator looks for (the lab test shows it applied)."""
    policy = _one(rendered["defaults"], "MutatingAdmissionPolicy")
    binding = _one(rendered["defaults"], "MutatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert "matchResources" not in binding["spec"]  # every namespace, like the webhook
    assert policy["spec"]["failurePolicy"] == "Ignore"  # the operator adds it itself otherwise
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE"]
    assert rule["resources"] == [PLURAL] and rule["apiGroups"] == [GROUP]
    (mutation,) = policy["spec"]["mutations"]
    expression = mutation["applyConfiguration"]["expression"]
    for mode in ExecutionMode:
        assert f"'{finalizer_for(mode)}'" in expression
    namespaced = _one(rendered["everything"], "MutatingAdmissionPolicyBinding")
    selector = namespaced["spec"]["matchResources"]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["agents"]


def test_dispatch_policy_sees_polecat_updates_only_with_the_generated_rules(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Never status writes (polecats/status is another resource): that is the point of it."""
    vap = _one(rendered["defaults"], "ValidatingAdmissionPolicy")
    binding = _one(rendered["defaults"], "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}
    (rule,) = vap["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["UPDATE"] and rule["resources"] == [PLURAL]
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert vap["spec"]["validations"] == policy.validations()
    namespaced = _one(rendered["everything"], "ValidatingAdmissionPolicyBinding")
    selector = namespaced["spec"]["matchResources"]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["agents"]


def test_dispatch_policy_can_be_turned_off(helm: Path) -> None:
    docs = render(helm, {"dispatchPolicy": {"enabled": False}})
    assert DISPATCH_POLICY.isdisjoint(d["kind"] for d in docs)


def test_kubectl_install_dispatch_policy_is_the_charts(helm: Path) -> None:
    docs = render(
        helm, {}, release="gastown-operator", extra_args=["--show-only", "templates/dispatchpolicy.yaml"]
    )
    for doc in docs:
        doc["metadata"].pop("labels")
    kubectl_install = [d for d in yaml.safe_load_all(policy.KUBECTL_POLICY.read_text()) if d]
    assert kubectl_install == docs


def test_finalizer_policy_is_left_out_before_kubernetes_1_36(helm: Path) -> None:
    docs = render(helm, {}, extra_args=["--kube-version", "1.35.4"])
    assert FINALIZER_POLICY.isdisjoint(d["kind"] for d in docs)


def test_kubectl_install_finalizer_policy_is_the_charts(helm: Path) -> None:
    docs = render(
        helm, {}, release="gastown-operator", extra_args=["--show-only", "templates/finalizerpolicy.yaml"]
    )
    for doc in docs:
        doc["metadata"].pop("labels")
    kubectl_install = [
        d for d in yaml.safe_load_all((REPO_ROOT / "webhooks" / "finalizerpolicy.yaml").read_text()) if d
    ]
    assert kubectl_install == docs


def test_chart_crds_are_the_repo_crds_byte_for_byte(helm: Path) -> None:
    repo_crds = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    assert [p.name for p in repo_crds] == sorted(
        [
            "gastown.gastown.io_polecats.yaml",
            "gastown.gastown.io_rigs.yaml",
            "gastown.gastown.io_convoys.yaml",
        ]
    )
    assert sorted(p.name for p in (CHART_DIR / "crds").iterdir()) == [p.name for p in repo_crds]
    for repo_crd in repo_crds:
        assert (CHART_DIR / "crds" / repo_crd.name).read_bytes() == repo_crd.read_bytes()
    docs = render(helm, {}, extra_args=["--include-crds"])
    rendered = sorted(
        (d for d in docs if d["kind"] == "CustomResourceDefinition"), key=lambda d: str(d["metadata"]["name"])
    )
    expected = sorted(
        (yaml.safe_load(p.read_text()) for p in repo_crds), key=lambda d: str(d["metadata"]["name"])
    )
    assert rendered == expected


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"devMode": {"externalWebhookURL": "http://insecure:9443/validate-polecat"}}, "externalWebhookURL"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"ssh": {"port": 70000}}, "port"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"webhok": {"enabled": False}}, "webhok"),
        ({"podDefaults": {"runAsUser": 0}}, "runAsUser"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Path, values: dict[str, Any], field: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = values_file(values, Path(tmp))
        result = run_helm(helm, "template", RELEASE, str(CHART_DIR), "-f", str(path), check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "schema" in result.stderr and field in result.stderr, result.stderr


def _notes(helm: Path, values: dict[str, Any]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = values_file(values, Path(tmp))
        result = run_helm(
            helm, "install", RELEASE, str(CHART_DIR), "-n", NAMESPACE, "--dry-run=client", "-f", str(path)
        )
    return result.stdout.split("NOTES:", 1)[1]


@pytest.mark.parametrize("scenario", ["defaults", "local-mode", "dev-mode"])
def test_notes_example_polecat_passes_the_webhook_rules(
    helm: Path, rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    """NOTES.txt tells the user what to apply next; it must be a Polecat the webhook admits."""
    notes = _notes(helm, SCENARIOS[scenario])
    match = re.search(r"<<'YAML'\n(.*?)\n\s*YAML\n", notes, re.DOTALL)
    assert match, notes
    polecat = yaml.safe_load(textwrap.dedent(match.group(1)))
    assert polecat["kind"] == "Polecat"
    # In dev mode the operator runs outside with its own settings: judge by the defaults.
    env = _env(rendered[scenario]) if _in_cluster(scenario) else {}
    verdict = validate_object(polecat, settings_from_env(env))
    assert verdict.allowed, verdict.errors
    assert verdict.warnings == (), verdict.warnings
    assert "get polecats -w" in notes
    if _in_cluster(scenario):
        assert f"rollout status deployment/{RELEASE}" in notes
    else:
        assert DEV_URL in notes and "gastown-operator run" in notes
