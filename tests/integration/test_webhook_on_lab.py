"""The admission webhook, called by a real kube-apiserver (the lab).

The WebhookServer runs in this test process on 127.0.0.1 (port 0) with a CA made here.
Each test registers a ValidatingWebhookConfiguration built from the shipped
``webhooks/validatingwebhookconfiguration.yaml`` with ``clientConfig.url`` pointing at it
and a namespaceSelector on the test's own namespace, and deletes it afterwards, so other
tests sharing the lab are never affected.

Shows: each webhook example is rejected BY THE WEBHOOK with its message; good examples
pass; warnings reach kubectl's output; the served certificate rotates without a restart
while the apiserver keeps calling; and self-managed certificates land in a Secret and in
caBundle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes_asyncio import client

from gastown.api.paths import resource_path
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from gastown.settings import PodDefaults, Settings, SSHSettings
from gastown.webhook import certs
from gastown.webhook.server import WebhookServer
from tests.support.admission import DENIED_BY, VWC_FILE, apply_example, webhook_registered
from tests.support.crd import install_crd
from tests.support.waiting import wait_for
from tests.unit.webhook.invalid_examples import EXAMPLES, InvalidExample, all_examples

pytestmark = pytest.mark.lab

WEBHOOK_EXAMPLES = [e for e in all_examples() if e.rejected_by == "webhook"]


@dataclass
class ServedWebhook:
    """A running WebhookServer and the CA that signed its certificate."""

    server: WebhookServer
    cert_dir: Path
    ca_cert: bytes
    ca_key: bytes
    registered: list[str] = field(default_factory=list)
    running: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Cancel the server's certificate tasks (the manager's job in production) and stop it."""
        if self.running is not None:
            self.running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.running
        await self.server.stop()

    def rotate(self) -> int:
        """Write a new serving pair from the same CA; return its serial number."""
        cert, key = certs.issue_serving_cert(
            self.ca_cert, self.ca_key, ["localhost"], ip_addresses=["127.0.0.1"]
        )
        certs.write_pair(self.cert_dir, cert, key)
        return x509.load_pem_x509_certificate(cert).serial_number

    async def served_serial(self) -> int:
        ctx = ssl.create_default_context(cadata=self.ca_cert.decode())
        _, writer = await asyncio.open_connection("127.0.0.1", self.server.port, ssl=ctx)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number
        finally:
            writer.close()
            await writer.wait_closed()


async def start_webhook(
    tmp: Path, api: client.ApiClient, *, local_mode: bool = True, pod: PodDefaults | None = None
) -> ServedWebhook:
    ca_cert, ca_key = certs.generate_ca("lab-webhook-ca")
    served = ServedWebhook(WebhookServer.__new__(WebhookServer), tmp, ca_cert, ca_key)
    served.rotate()
    settings = Settings(
        ssh=SSHSettings(host="127.0.0.1" if local_mode else None),
        webhook_host="127.0.0.1",
        webhook_port=0,
        webhook_cert_dir=tmp,
        pod=pod or PodDefaults(),
    )
    served.server = WebhookServer(settings, KubeClient(api), cert_poll_interval=0.1)
    await served.server.start()
    served.running = asyncio.create_task(served.server.run())  # reloads the rotated pair
    return served


@contextlib.asynccontextmanager
async def registered(lab: Lab, served: ServedWebhook, namespace: str) -> AsyncIterator[None]:
    """Register the webhook for one namespace; wait until the apiserver calls it; remove it."""
    async with webhook_registered(lab, namespace, served.server.port, served.ca_cert):
        yield


@pytest.fixture
async def webhook(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> AsyncIterator[ServedWebhook]:
    await install_crd(lab)
    served = await start_webhook(tmp_path / "certs", k8s_api)
    try:
        async with registered(lab, served, namespace):
            yield served
    finally:
        await served.close()


@pytest.mark.parametrize("example", WEBHOOK_EXAMPLES, ids=lambda e: e.id)
async def test_webhook_rejects_each_bad_example(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path, example: InvalidExample
) -> None:
    await install_crd(lab)
    served = await start_webhook(tmp_path / "certs", k8s_api, local_mode=not example.local_mode_disabled)
    try:
        async with registered(lab, served, namespace):
            rc, output = await apply_example(lab, namespace, example)
    finally:
        await served.close()
    assert rc != 0, output
    assert DENIED_BY in output, output
    assert example.message in output, output


async def test_good_examples_pass_the_webhook(lab: Lab, namespace: str, webhook: ServedWebhook) -> None:
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "kubernetes"))
    assert rc == 0, err
    assert "polecat.gastown.gastown.io/add-rate-limit created" in out
    assert "Warning" not in err  # Secrets and ConfigMap exist with the right keys and types
    rc, _, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local"))
    assert rc == 0, err
    # An update the rules allow goes through too (the bead may change before dispatch).
    rc, _, err = await lab.kubectl(
        "-n", namespace, "patch", "polecat", "fix-login-bug", "--type=merge",
        "-p", json.dumps({"spec": {"beadID": "gt-abc13", "desiredState": "Terminated"}}), check=False,
    )  # fmt: skip
    assert rc == 0, err


async def test_warnings_appear_in_kubectl_output(lab: Lab, namespace: str, webhook: ServedWebhook) -> None:
    obj = yaml.safe_load((EXAMPLES / "kubernetes" / "polecat.yaml").read_text())
    obj["spec"]["kubernetes"]["image"] = "busybox"
    obj["spec"]["kubernetes"]["activeDeadlineSeconds"] = 3 * 24 * 3600
    # A git Secret of the wrong type, and no known_hosts ConfigMap or agent Secret at all.
    await lab.kubectl(
        "-n", namespace, "create", "secret", "generic", "repo-deploy-key", "--from-literal=other=x"
    )  # fmt: skip
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))
    assert rc == 0, err
    assert "polecat.gastown.gastown.io/add-rate-limit created" in out
    expected = [
        "Warning: spec.kubernetes.image: has no tag or uses 'latest'",
        "Warning: spec.kubernetes.activeDeadlineSeconds: 259200s is over 24 hours",
        f"Warning: spec.kubernetes.knownHostsConfigMapRef: ConfigMap 'git-known-hosts' was not found "
        f"in namespace '{namespace}'",
        "Warning: spec.kubernetes.agentSecretRef: Secret 'agent-api-key' was not found "
        f"in namespace '{namespace}'",
    ]
    for warning in expected:
        assert warning in err, err
    # Secrets are read as metadata only: their type and keys are not the webhook's to see.
    assert "repo-deploy-key" not in err, err


async def test_all_problems_are_reported_at_once(lab: Lab, namespace: str, webhook: ServedWebhook) -> None:
    obj = yaml.safe_load((EXAMPLES / "kubernetes" / "polecat.yaml").read_text())
    obj["spec"]["kubernetes"]["gitRepository"] = "http://example.com/x.git"
    obj["spec"]["kubernetes"]["image"] = "Bad Image"
    del obj["spec"]["kubernetes"]["agentSecretRef"]
    rc, _, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj), check=False)
    assert rc != 0
    assert f"Polecat '{namespace}/add-rate-limit' has 3 problems:" in err
    for field_name in ("gitRepository", "agentSecretRef", "image"):
        assert f"- spec.kubernetes.{field_name}: " in err


async def test_certificate_rotation_while_the_apiserver_calls(
    lab: Lab, namespace: str, webhook: ServedWebhook
) -> None:
    first = await webhook.served_serial()
    new_serial = webhook.rotate()
    assert new_serial != first

    async def rotated() -> bool:
        return await webhook.served_serial() == new_serial

    await wait_for(rotated, timeout=10, what="the rotated certificate to be served")
    # Same CA, so the apiserver keeps trusting it: still validated, no restart needed.
    example = next(e for e in WEBHOOK_EXAMPLES if e.id == "webhook-image-invalid")
    rc, output = await apply_example(lab, namespace, example)
    assert rc != 0 and DENIED_BY in output and example.message in output
    rc, _, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local"), check=False)
    assert rc == 0, err
    assert webhook.server.reloader is not None and webhook.server.reloader.reloads >= 1


# --- self-managed certificates ------------------------------------------------------------------
@contextlib.asynccontextmanager
async def inert_configuration(lab: Lab, name: str) -> AsyncIterator[None]:
    """A configuration that points at a Service and matches no namespace: only caBundle matters."""
    vwc: dict[str, Any] = yaml.safe_load(VWC_FILE.read_text())
    vwc["metadata"]["name"] = name
    vwc["webhooks"][0]["namespaceSelector"] = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["no-such-ns"]}
        ]
    }
    second = json.loads(json.dumps(vwc["webhooks"][0]))
    second["name"] = "second.polecats.gastown.gastown.io"
    vwc["webhooks"].append(second)
    await lab.kubectl("apply", "-f", "-", input=json.dumps(vwc))
    try:
        yield
    finally:
        await lab.kubectl(
            "delete", "validatingwebhookconfiguration", name, "--ignore-not-found", "--wait=false"
        )


async def _ca_bundles(api: client.ApiClient, name: str) -> list[str]:
    path = resource_path("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", name=name)
    vwc = await KubeClient(api).get(path)
    return [(w.get("clientConfig") or {}).get("caBundle") or "" for w in vwc.get("webhooks") or []]


async def test_self_managed_certificates(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    config_name = f"gastown-test-certs-{namespace}"
    settings = Settings(
        operator_namespace=namespace,
        webhook_config_name=config_name,
        webhook_host="127.0.0.1",
        webhook_port=0,
    )
    kube = KubeClient(k8s_api)
    secret_path = resource_path("", "v1", "secrets", namespace=namespace, name=settings.webhook_secret_name)
    async with inert_configuration(lab, config_name):
        # Two replicas starting at once agree on one Secret.
        one = certs.CertManager(KubeClient(k8s_api), settings, tmp_path / "a")
        two = certs.CertManager(KubeClient(k8s_api), settings, tmp_path / "b")
        first, second = await asyncio.gather(one.ensure(), two.ensure())
        assert first == second
        secret = await kube.get(secret_path)
        assert secret["type"] == "kubernetes.io/tls"
        assert base64.b64decode(secret["data"]["tls.crt"]) == first.cert
        assert (tmp_path / "a" / "tls.crt").read_bytes() == first.cert
        wanted = base64.b64encode(first.ca_bundle).decode()
        assert await _ca_bundles(k8s_api, config_name) == [wanted, wanted]

        # Nothing to do on the next round: the Secret is not rewritten.
        version = secret["metadata"]["resourceVersion"]
        await one.ensure()
        again = await kube.get(secret_path)
        assert again["metadata"]["resourceVersion"] == version

        # Someone resets caBundle (e.g. a re-apply of the manifest): the next round repairs it.
        await lab.kubectl(
            "patch", "validatingwebhookconfiguration", config_name, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]),
        )  # fmt: skip
        await one.ensure()
        assert await _ca_bundles(k8s_api, config_name) == [wanted, wanted]

        # The operator's server serves it for the Service's DNS names.
        server = WebhookServer(settings, KubeClient(k8s_api))
        await server.start()
        try:
            ctx = ssl.create_default_context(cadata=first.ca_bundle.decode())
            _, writer = await asyncio.open_connection(
                "127.0.0.1",
                server.port,
                ssl=ctx,
                server_hostname=f"{settings.webhook_service_name}.{namespace}.svc",
            )
            writer.close()
            await writer.wait_closed()
        finally:
            await server.stop()

        # Time passes: the serving cert is renewed from the same CA, so caBundle stays.
        later = certs.CertManager(
            KubeClient(k8s_api),
            settings,
            tmp_path / "a",
            clock=lambda: datetime.now(UTC) + timedelta(days=300),
        )
        renewed = await later.ensure()
        assert renewed.cert != first.cert
        assert renewed.ca_cert == first.ca_cert
        assert await _ca_bundles(k8s_api, config_name) == [wanted, wanted]


class RecordingClient(KubeClient):
    """The real client, keeping what each GET returned (to see what reached the operator)."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.got: list[tuple[str, dict[str, Any]]] = []

    async def get(self, path: str, **kwargs: Any) -> Any:
        obj = await super().get(path, **kwargs)
        self.got.append((path, obj))
        return obj


async def test_the_webhook_reads_secrets_as_metadata_only(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    await install_crd(lab)
    await lab.kubectl(
        "-n", namespace, "create", "secret", "generic", "agent-api-key",
        "--from-literal=api-key=sk-very-secret",
    )  # fmt: skip
    served = await start_webhook(tmp_path / "certs", k8s_api)
    recording = RecordingClient(k8s_api)
    served.server._client = recording  # the same server, observed
    try:
        async with registered(lab, served, namespace):
            obj = yaml.safe_load((EXAMPLES / "kubernetes" / "polecat.yaml").read_text())
            rc, _, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))
    finally:
        await served.close()
    assert rc == 0, err
    secrets = [(path, got) for path, got in recording.got if "/secrets/" in path]
    assert any(path.endswith("/secrets/agent-api-key") for path, _ in secrets), recording.got
    for path, got in secrets:
        assert got.get("kind") == "PartialObjectMetadata", (path, got)
        assert "data" not in got and "stringData" not in got and "type" not in got, (path, got)
    assert "sk-very-secret" not in json.dumps(recording.got)
    assert "agent-api-key" not in err  # it exists: no warning
