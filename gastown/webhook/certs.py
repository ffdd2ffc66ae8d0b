"""Self-managed webhook certificates: a CA and a serving certificate kept in a Secret.

When no certificate files are mounted (no cert-manager), the operator makes its own:

* an EC P-256 CA (10 years) and a serving certificate for the webhook Service's DNS
  names signed by it (1 year), stored together in one Secret of the operator namespace,
  so every replica serves the same pair;
* the serving certificate is re-issued from the same CA when a third of its life is
  left, so ``caBundle`` does not change; the CA itself is replaced when a third of *its*
  life is left, and the old CA stays in the bundle until it expires, so webhook calls
  keep working during the switch;
* the ``caBundle`` of every webhook in the named ValidatingWebhookConfiguration is
  patched to match, and re-checked periodically (a ``helm upgrade`` or a kubectl apply
  may reset it).

Several replicas may race: the Secret is created with create (AlreadyExists: read the
winner's) and replaced with its resourceVersion (Conflict: read again), so all replicas
end up serving what the Secret holds. The files the server loads are written atomically
into a private directory, where :class:`gastown.webhook.tls.CertReloader` picks them up.

Pure helpers (generation, renewal decisions) are separate from the cluster I/O so they
can be unit-tested.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from kubernetes_asyncio.client.exceptions import ApiException

from gastown import certificates
from gastown.api.paths import resource_path
from gastown.kube import STRATEGIC_MERGE_PATCH, Fault, KubeClient, classify, retry_transient
from gastown.settings import Settings

log = logging.getLogger(__name__)

CA_VALIDITY: Final = timedelta(days=3650)
CERT_VALIDITY: Final = timedelta(days=365)
RENEW_FRACTION: Final = 1 / 3  # renew when this fraction of the lifetime is left
REQUEST_TIMEOUT: Final = 15.0

KEY_CERT: Final = "tls.crt"
KEY_KEY: Final = "tls.key"
KEY_CA: Final = "ca.crt"
KEY_CA_KEY: Final = "ca.key"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "gastown-operator"}


@dataclass(frozen=True)
class CertBundle:
    """Everything the Secret holds. ``ca_bundle`` is what clients trust (PEM, 1-2 CAs)."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    ca_bundle: bytes


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------
def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the apiserver may use to reach a Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def generate_ca(
    common_name: str = "gastown-operator-webhook-ca",
    *,
    now: datetime | None = None,
    valid_for: timedelta = CA_VALIDITY,
) -> tuple[bytes, bytes]:
    """A new self-signed EC P-256 CA: ``(cert_pem, key_pem)``."""
    return certificates.generate_ca(common_name, valid_for=valid_for, now=now)


def issue_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: list[str],
    *,
    ip_addresses: list[str] | None = None,
    now: datetime | None = None,
    valid_for: timedelta = CERT_VALIDITY,
) -> tuple[bytes, bytes]:
    """A serving certificate for ``dns_names`` (and IPs) signed by the CA: ``(cert_pem, key_pem)``."""
    return certificates.issue_certificate(
        ca_cert_pem,
        ca_key_pem,
        dns_names[0],
        valid_for=valid_for,
        dns_names=dns_names,
        ip_addresses=ip_addresses or (),
        server=True,
        now=now,
    )


def _due(cert: x509.Certificate, now: datetime) -> bool:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < lifetime * RENEW_FRACTION


def renewal_time(cert_pem: bytes) -> datetime:
    """When a certificate becomes due for renewal."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - lifetime * RENEW_FRACTION


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value.get_values_for_type(x509.DNSName))


def plan(
    current: CertBundle | None,
    dns_names: list[str],
    *,
    now: datetime,
    ca_validity: timedelta = CA_VALIDITY,
    cert_validity: timedelta = CERT_VALIDITY,
) -> CertBundle | None:
    """The bundle to store, or None when ``current`` is still good.

    A new CA when there is none, it does not parse, or it is due; a new serving
    certificate when the CA changed, it is due, it does not match its key or CA, or its
    names differ. During a CA change the old CA stays in ``ca_bundle`` while valid.
    """
    ca_cert_pem = ca_key_pem = None
    old_ca: x509.Certificate | None = None
    if current is not None:
        try:
            old_ca = x509.load_pem_x509_certificate(current.ca_cert)
            old_ca_key = serialization.load_pem_private_key(current.ca_key, password=None)
            if not _due(old_ca, now) and old_ca_key.public_key() == old_ca.public_key():
                ca_cert_pem, ca_key_pem = current.ca_cert, current.ca_key
        except (ValueError, TypeError):
            old_ca = None
    new_ca = ca_cert_pem is None
    if new_ca:
        ca_cert_pem, ca_key_pem = generate_ca(now=now, valid_for=ca_validity)
    assert ca_cert_pem is not None and ca_key_pem is not None

    if not new_ca and current is not None:
        try:
            leaf = x509.load_pem_x509_certificate(current.cert)
            key = serialization.load_pem_private_key(current.key, password=None)
            ca = x509.load_pem_x509_certificate(ca_cert_pem)
            leaf_ok = (
                not _due(leaf, now)
                and _signed_by(leaf, ca)
                and _sans(leaf) == set(dns_names)
                and leaf.public_key() == key.public_key()
            )
        except (ValueError, TypeError):
            leaf_ok = False
        bundle = _trusted_bundle(ca_cert_pem, current.ca_bundle, now)
        if leaf_ok and bundle == current.ca_bundle:
            return None
        if leaf_ok:
            return CertBundle(ca_cert_pem, ca_key_pem, current.cert, current.key, bundle)

    cert_pem, key_pem = issue_serving_cert(
        ca_cert_pem, ca_key_pem, dns_names, now=now, valid_for=cert_validity
    )
    previous = current.ca_bundle if current is not None and old_ca is not None else b""
    return CertBundle(ca_cert_pem, ca_key_pem, cert_pem, key_pem, _trusted_bundle(ca_cert_pem, previous, now))


def _trusted_bundle(ca_cert_pem: bytes, previous_bundle: bytes, now: datetime) -> bytes:
    """The current CA first, then still-valid CAs from the previous bundle."""
    out = [ca_cert_pem.strip() + b"\n"]
    current = x509.load_pem_x509_certificate(ca_cert_pem)
    try:
        previous = x509.load_pem_x509_certificates(previous_bundle) if previous_bundle.strip() else []
    except ValueError:
        previous = []
    for cert in previous:
        if cert == current or cert.not_valid_after_utc <= now:
            continue
        out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def write_pair(directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Write tls.crt/tls.key atomically (the reloader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data, mode in ((KEY_KEY, key_pem, 0o600), (KEY_CERT, cert_pem, 0o644)):
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, directory / name)


# --------------------------------------------------------------------------------------
# Cluster I/O
# --------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bundle_from_secret(secret: dict[str, Any]) -> CertBundle | None:
    data = secret.get("data") or {}
    try:
        values = {k: base64.b64decode(data[k]) for k in (KEY_CERT, KEY_KEY, KEY_CA, KEY_CA_KEY)}
    except (KeyError, ValueError, TypeError):
        return None
    try:
        # ca.crt is the trusted bundle; its first certificate is the CA that signs now.
        ca_cert = x509.load_pem_x509_certificates(values[KEY_CA])[0].public_bytes(serialization.Encoding.PEM)
    except (ValueError, IndexError):
        return None
    return CertBundle(
        ca_cert=ca_cert,
        ca_key=values[KEY_CA_KEY],
        cert=values[KEY_CERT],
        key=values[KEY_KEY],
        ca_bundle=values[KEY_CA],
    )


class CertManager:
    """Keeps the Secret, the served files and the webhook ``caBundle`` in step.

    ``ensure()`` does one round and returns the bundle being served; ``run()`` repeats it
    every ``check_interval`` seconds (sooner when a renewal is due) until cancelled.
    """

    def __init__(
        self,
        client: KubeClient,
        settings: Settings,
        cert_dir: Path,
        *,
        check_interval: float = 60.0,
        ca_validity: timedelta = CA_VALIDITY,
        cert_validity: timedelta = CERT_VALIDITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._namespace = settings.operator_namespace
        self._secret_name = settings.webhook_secret_name
        self._config_name = settings.webhook_config_name
        self._secrets = resource_path("", "v1", "secrets", namespace=self._namespace)
        self._secret = resource_path("", "v1", "secrets", namespace=self._namespace, name=self._secret_name)
        self._config = resource_path(
            "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", name=self._config_name
        )
        self._dns_names = service_dns_names(settings.webhook_service_name, settings.operator_namespace)
        self.cert_dir = cert_dir
        self.check_interval = check_interval
        self._ca_validity = ca_validity
        self._cert_validity = cert_validity
        self._clock = clock
        self._written: CertBundle | None = None
        self.bundle: CertBundle | None = None

    @property
    def cert_file(self) -> Path:
        return self.cert_dir / KEY_CERT

    @property
    def key_file(self) -> Path:
        return self.cert_dir / KEY_KEY

    async def ensure(self) -> CertBundle:
        """One round: settle the Secret, write the files, patch caBundle.

        Transient apiserver faults are retried a few times (the first round runs at
        startup, where giving up means the process exits).
        """
        bundle = await retry_transient(self._settle_secret, what="settling the webhook certificate Secret")
        if bundle != self._written:
            await asyncio.to_thread(write_pair, self.cert_dir, bundle.cert, bundle.key)
            self._written = bundle
        self.bundle = bundle
        await retry_transient(lambda: self._patch_ca_bundle(bundle.ca_bundle), what="patching caBundle")
        return bundle

    async def run(self) -> None:
        """Repeat :meth:`ensure` until cancelled; failures are logged and retried."""
        delay = self.check_interval
        while True:
            if self.bundle is not None:
                until_renewal = (renewal_time(self.bundle.cert) - self._clock()).total_seconds()
                delay = max(1.0, min(self.check_interval, until_renewal))
            await asyncio.sleep(delay)
            try:
                await self.ensure()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("managing the webhook certificate failed; retrying")

    async def _read(self) -> dict[str, Any] | None:
        try:
            secret: dict[str, Any] = await self._client.get(self._secret, request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if classify(exc) is Fault.NOT_FOUND:
                return None
            raise
        return secret

    async def _settle_secret(self) -> CertBundle:
        for _ in range(5):
            secret = await self._read()
            current = _bundle_from_secret(secret) if secret is not None else None
            wanted = plan(
                current,
                self._dns_names,
                now=self._clock(),
                ca_validity=self._ca_validity,
                cert_validity=self._cert_validity,
            )
            if wanted is None:
                assert current is not None
                return current
            metadata: dict[str, Any] = {
                "name": self._secret_name,
                "namespace": self._namespace,
                "labels": MANAGED_BY,
            }
            if secret is not None:
                metadata["resourceVersion"] = (secret.get("metadata") or {}).get("resourceVersion")
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "kubernetes.io/tls",
                "data": {
                    KEY_CERT: _b64(wanted.cert),
                    KEY_KEY: _b64(wanted.key),
                    KEY_CA: _b64(wanted.ca_bundle),
                    KEY_CA_KEY: _b64(wanted.ca_key),
                },
            }
            try:
                if secret is None:
                    await self._client.create(self._secrets, body, request_timeout=REQUEST_TIMEOUT)
                    log.info("created webhook certificate Secret %s/%s", self._namespace, self._secret_name)
                else:
                    await self._client.replace(self._secret, body, request_timeout=REQUEST_TIMEOUT)
                    log.info(
                        "renewed webhook certificate in Secret %s/%s", self._namespace, self._secret_name
                    )
            except ApiException as exc:
                if classify(exc) is Fault.CONFLICT:  # another replica got there first: use theirs
                    continue
                raise
            return wanted
        raise RuntimeError(
            f"Secret {self._namespace}/{self._secret_name} kept changing; giving up this round"
        )

    async def _patch_ca_bundle(self, ca_bundle: bytes) -> None:
        try:
            config = await self._client.get(self._config, request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if classify(exc) is Fault.NOT_FOUND:
                log.warning(
                    "ValidatingWebhookConfiguration %s not found; caBundle not set (will retry)",
                    self._config_name,
                )
                return
            raise
        wanted = _b64(ca_bundle)
        webhooks = config.get("webhooks") or []
        stale = [
            w.get("name") for w in webhooks if ((w.get("clientConfig") or {}).get("caBundle") or "") != wanted
        ]
        if not stale:
            return
        # A strategic merge patch: webhooks merge by name, so only caBundle of these changes.
        patch = {"webhooks": [{"name": name, "clientConfig": {"caBundle": wanted}} for name in stale]}
        await self._client.request(
            "PATCH",
            self._config,
            body=patch,
            content_type=STRATEGIC_MERGE_PATCH,
            request_timeout=REQUEST_TIMEOUT,
        )
        log.info("patched caBundle of %s (%s)", self._config_name, ", ".join(stale))
