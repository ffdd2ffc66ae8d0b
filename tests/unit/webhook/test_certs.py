"""Self-managed certificates: what is generated, and when it is renewed (pure parts)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from gastown.webhook import certs

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NAMES = certs.service_dns_names("gastown-operator-webhook", "gastown-system")


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_service_names() -> None:
    assert NAMES == [
        "gastown-operator-webhook",
        "gastown-operator-webhook.gastown-system",
        "gastown-operator-webhook.gastown-system.svc",
        "gastown-operator-webhook.gastown-system.svc.cluster.local",
    ]


def test_generated_pair_is_a_p256_ca_and_a_server_cert(tmp_path: Path) -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    ca, leaf = _cert(bundle.ca_cert), _cert(bundle.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    leaf.verify_directly_issued_by(ca)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == NAMES
    assert leaf.not_valid_after_utc - NOW <= certs.CERT_VALIDITY
    # And it really serves TLS that verifies against the bundle.
    certs.write_pair(tmp_path, bundle.cert, bundle.key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert oct((tmp_path / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_nothing_to_do_while_valid() -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    assert certs.plan(bundle, NAMES, now=NOW + timedelta(days=200)) is None


def test_serving_cert_renewed_from_the_same_ca_when_a_third_is_left() -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    renewed = certs.plan(bundle, NAMES, now=NOW + timedelta(days=250))
    assert renewed is not None
    assert renewed.ca_cert == bundle.ca_cert
    assert renewed.ca_bundle == bundle.ca_bundle  # caBundle does not change
    assert renewed.cert != bundle.cert
    assert certs.renewal_time(bundle.cert) < NOW + timedelta(days=250)


def test_changed_service_names_reissue() -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    other = certs.service_dns_names("other", "ns")
    renewed = certs.plan(bundle, other, now=NOW)
    assert renewed is not None and renewed.ca_cert == bundle.ca_cert


def test_ca_rotation_keeps_the_old_ca_trusted_until_it_expires() -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    later = NOW + timedelta(days=3650 - 500)
    rotated = certs.plan(bundle, NAMES, now=later)
    assert rotated is not None
    assert rotated.ca_cert != bundle.ca_cert
    trusted = x509.load_pem_x509_certificates(rotated.ca_bundle)
    assert [c.subject for c in trusted] == [_cert(rotated.ca_cert).subject, _cert(bundle.ca_cert).subject]
    assert trusted[0] == _cert(rotated.ca_cert)
    _cert(rotated.cert).verify_directly_issued_by(trusted[0])
    # Once the old CA has expired it leaves the bundle.
    much_later = NOW + timedelta(days=3660)
    again = certs.plan(rotated, NAMES, now=much_later)
    assert again is not None
    assert len(x509.load_pem_x509_certificates(again.ca_bundle)) == 1


def test_garbage_is_replaced() -> None:
    bundle = certs.plan(None, NAMES, now=NOW)
    assert bundle is not None
    broken = certs.CertBundle(bundle.ca_cert, bundle.ca_key, b"junk", bundle.key, bundle.ca_bundle)
    fixed = certs.plan(broken, NAMES, now=NOW)
    assert fixed is not None and fixed.ca_cert == bundle.ca_cert
    other = certs.plan(None, NAMES, now=NOW)
    assert other is not None
    mismatched_key = certs.CertBundle(bundle.ca_cert, bundle.ca_key, bundle.cert, other.key, bundle.ca_bundle)
    assert certs.plan(mismatched_key, NAMES, now=NOW) is not None
    wrong_ca_key = certs.CertBundle(bundle.ca_cert, other.ca_key, bundle.cert, bundle.key, bundle.ca_bundle)
    replaced = certs.plan(wrong_ca_key, NAMES, now=NOW)
    assert replaced is not None and replaced.ca_cert != bundle.ca_cert


def test_ip_sans_for_local_serving() -> None:
    ca, ca_key = certs.generate_ca(now=NOW)
    pem, _ = certs.issue_serving_cert(ca, ca_key, ["localhost"], ip_addresses=["127.0.0.1"], now=NOW)
    sans = _cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
