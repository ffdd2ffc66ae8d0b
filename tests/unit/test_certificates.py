"""The shared certificate builder: what the lab's apiserver and the webhook rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gastown.certificates import generate_ca, issue_certificate

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_client_certificate_carries_the_group_and_client_usage_only() -> None:
    ca_cert, ca_key = generate_ca("test-ca", valid_for=timedelta(days=30), now=NOW)
    pem, _ = issue_certificate(
        ca_cert,
        ca_key,
        "admin",
        valid_for=timedelta(days=7),
        organization="system:masters",
        client=True,
        now=NOW,
    )
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert))


def test_a_leaf_never_outlives_its_ca() -> None:
    ca_cert, ca_key = generate_ca("short-ca", valid_for=timedelta(days=2), now=NOW)
    pem, _ = issue_certificate(
        ca_cert, ca_key, "svc", valid_for=timedelta(days=365), dns_names=["svc"], server=True, now=NOW
    )
    leaf = x509.load_pem_x509_certificate(pem)
    assert leaf.not_valid_after_utc == x509.load_pem_x509_certificate(ca_cert).not_valid_after_utc


def test_a_certificate_for_nothing_is_refused() -> None:
    ca_cert, ca_key = generate_ca("ca", valid_for=timedelta(days=1), now=NOW)
    with pytest.raises(ValueError, match="server, a client"):
        issue_certificate(ca_cert, ca_key, "x", valid_for=timedelta(days=1))
