"""The lab's certificates: a CA, the apiserver's serving cert, an admin client cert,
and the service-account signing key.

EC P-256 throughout (built by :mod:`gastown.certificates`, as the operator's own webhook
certificates are): generating it takes milliseconds, so every lab start makes a fresh PKI
and no key outlives its lab. The admin identity is in ``system:masters``, which RBAC lets
do anything; tests that check least privilege use ServiceAccount tokens instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gastown.certificates import generate_ca, issue_certificate, new_private_key, private_key_pem

_VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate (or public key) and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def make_ca(common_name: str = "gastown-lab-ca") -> KeyPair:
    """A self-signed CA that can sign serving and client certificates."""
    return KeyPair(*generate_ca(common_name, valid_for=_VALIDITY))


def issue(
    ca: KeyPair,
    common_name: str,
    *,
    organization: str | None = None,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
) -> KeyPair:
    """A leaf certificate signed by ``ca`` for a server, a client, or both."""
    return KeyPair(
        *issue_certificate(
            ca.cert_pem,
            ca.key_pem,
            common_name,
            valid_for=_VALIDITY,
            organization=organization,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            server=server,
            client=client,
        )
    )


def service_account_keys() -> KeyPair:
    """The key pair the apiserver signs ServiceAccount tokens with (cert_pem is the public key)."""
    key = new_private_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, private_key_pem(key))


def write(pair: KeyPair, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.crt`` and ``<stem>.key`` (0600) and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(pair.cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(pair.key_pem)
    return crt, key
