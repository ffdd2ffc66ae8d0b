"""The HTTPS webhook server on 127.0.0.1: real TLS, real sockets, no cluster.

Covers what does not need an apiserver: serving reviews, refusing bad bodies with 4xx,
and certificate rotation by replacing the files while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from gastown.settings import Settings, SSHSettings
from gastown.webhook import certs
from gastown.webhook.server import PATH, WebhookServer
from tests.unit.webhook.samples import envelope, k8s_polecat, local_polecat


@dataclass
class LocalCA:
    """A CA and a serving pair for 127.0.0.1 written to a directory."""

    directory: Path
    ca_cert: bytes
    ca_key: bytes

    def issue(self) -> bytes:
        cert, key = certs.issue_serving_cert(
            self.ca_cert, self.ca_key, ["localhost"], ip_addresses=["127.0.0.1"]
        )
        certs.write_pair(self.directory, cert, key)
        return cert

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_cert.decode())


def make_local_ca(directory: Path) -> LocalCA:
    ca_cert, ca_key = certs.generate_ca("test-webhook-ca")
    local = LocalCA(directory, ca_cert, ca_key)
    local.issue()
    return local


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[WebhookServer, LocalCA]]:
    ca = make_local_ca(tmp_path / "certs")
    settings = Settings(
        ssh=SSHSettings(host="127.0.0.1"),
        webhook_host="127.0.0.1",
        webhook_port=0,
        webhook_cert_dir=tmp_path / "certs",
    )
    server = WebhookServer(settings, None, cert_poll_interval=0.05)
    await server.start()
    running = asyncio.create_task(server.run())  # the reloader; the manager supervises it in production
    try:
        yield server, ca
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await server.stop()


async def _post(server: WebhookServer, ca: LocalCA, body: bytes) -> tuple[int, dict[str, object]]:
    url = f"https://127.0.0.1:{server.port}{PATH}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=body, ssl=ca.client_context(), headers={"Content-Type": "application/json"}
        ) as resp,
    ):
        return resp.status, json.loads(await resp.read())


async def _served_serial(server: WebhookServer, ca: LocalCA) -> int:
    """The serial number of the certificate a NEW TLS connection gets."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ca.client_context())
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


async def test_allows_and_denies_over_https(served: tuple[WebhookServer, LocalCA]) -> None:
    server, ca = served
    assert server.port > 0
    status, body = await _post(server, ca, envelope(local_polecat(), uid="u-ok"))
    assert status == 200
    assert body["response"] == {"uid": "u-ok", "allowed": True}
    status, body = await _post(server, ca, envelope(k8s_polecat(image="BAD IMAGE"), uid="u-bad"))
    assert status == 200
    response = body["response"]
    assert isinstance(response, dict)
    assert response["uid"] == "u-bad" and response["allowed"] is False
    assert "spec.kubernetes.image" in response["status"]["message"]


async def test_bad_requests_are_4xx_never_5xx(served: tuple[WebhookServer, LocalCA]) -> None:
    server, ca = served
    assert (await _post(server, ca, b"not json"))[0] == 400
    assert (await _post(server, ca, b"{}"))[0] == 400
    assert (await _post(server, ca, b" " * (7 * 1024 * 1024)))[0] == 413
    url = f"https://127.0.0.1:{server.port}{PATH}"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ca.client_context()) as resp:
        assert resp.status == 405


async def test_many_concurrent_reviews(served: tuple[WebhookServer, LocalCA]) -> None:
    server, ca = served
    bodies = [envelope(k8s_polecat(), uid=f"u-{i}") for i in range(200)]
    url = f"https://127.0.0.1:{server.port}{PATH}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:

        async def one(body: bytes) -> str:
            async with session.post(url, data=body, ssl=ca.client_context()) as resp:
                assert resp.status == 200
                return str((await resp.json())["response"]["uid"])

        uids = await asyncio.gather(*(one(b) for b in bodies))
    assert uids == [f"u-{i}" for i in range(200)]


async def _wait_for_serial(server: WebhookServer, ca: LocalCA, serial: int) -> None:
    for _ in range(400):
        if await _served_serial(server, ca) == serial:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the new certificate was never served")


async def test_replaced_cert_files_are_served_without_restart(served: tuple[WebhookServer, LocalCA]) -> None:
    server, ca = served
    first = await _served_serial(server, ca)
    # A connection opened before the rotation keeps working after it.
    url = f"https://127.0.0.1:{server.port}{PATH}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=envelope(local_polecat()), ssl=ca.client_context()) as resp:
            assert resp.status == 200
        new_pem = ca.issue()
        new_serial = x509.load_pem_x509_certificate(new_pem).serial_number
        assert new_serial != first
        await _wait_for_serial(server, ca, new_serial)
        async with session.post(url, data=envelope(local_polecat()), ssl=ca.client_context()) as resp:
            assert resp.status == 200
    assert server.reloader is not None and server.reloader.reloads >= 1


async def test_a_broken_new_pair_keeps_the_old_one(served: tuple[WebhookServer, LocalCA]) -> None:
    server, ca = served
    reloader = server.reloader
    assert reloader is not None
    serial = await _served_serial(server, ca)
    # A key that does not match the certificate (e.g. only one file updated so far).
    _, other_key = certs.issue_serving_cert(ca.ca_cert, ca.ca_key, ["localhost"])
    (ca.directory / "tls.key").write_bytes(other_key)
    assert await reloader.check() is False
    assert await _served_serial(server, ca) == serial
    (ca.directory / "tls.crt").write_bytes(b"garbage")
    assert await reloader.check() is False
    assert await _served_serial(server, ca) == serial
    # A good pair afterwards is picked up.
    new_serial = x509.load_pem_x509_certificate(ca.issue()).serial_number
    await _wait_for_serial(server, ca, new_serial)


async def test_symlink_swap_like_a_mounted_secret(tmp_path: Path) -> None:
    """Kubernetes updates a mounted Secret by pointing the ..data symlink elsewhere."""
    ca_cert, ca_key = certs.generate_ca("swap-ca")
    for version in ("v1", "v2"):
        cert, key = certs.issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
        certs.write_pair(tmp_path / version, cert, key)
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "..data").symlink_to(tmp_path / "v1")
    (mount / "tls.crt").symlink_to("..data/tls.crt")
    (mount / "tls.key").symlink_to("..data/tls.key")
    settings = Settings(webhook_host="127.0.0.1", webhook_port=0, webhook_cert_dir=mount)
    server = WebhookServer(settings, cert_poll_interval=0.05)
    await server.start()
    running = asyncio.create_task(server.run())
    try:
        local = LocalCA(mount, ca_cert, ca_key)
        v2 = x509.load_pem_x509_certificate((tmp_path / "v2" / "tls.crt").read_bytes()).serial_number
        assert await _served_serial(server, local) != v2
        tmp_link = mount / "..data_tmp"
        tmp_link.symlink_to(tmp_path / "v2")
        tmp_link.replace(mount / "..data")
        await _wait_for_serial(server, local, v2)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await server.stop()


async def test_start_without_certificates_is_refused() -> None:
    server = WebhookServer(Settings(webhook_host="127.0.0.1", webhook_port=0), None)
    with pytest.raises(ValueError, match="webhook_cert_dir"):
        await server.start()
    await server.stop()


async def test_cancelling_run_stops_its_tasks(tmp_path: Path) -> None:
    make_local_ca(tmp_path)
    server = WebhookServer(Settings(webhook_host="127.0.0.1", webhook_port=0, webhook_cert_dir=tmp_path))
    await server.start()
    running = asyncio.create_task(server.run())
    for _ in range(100):  # wait until the reloader task is up
        reloaders = [t for t in asyncio.all_tasks() if t.get_name() == "webhook-cert-reload"]
        if reloaders:
            break
        await asyncio.sleep(0.01)
    assert reloaders and not reloaders[0].done()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert reloaders[0].done()
    await server.stop()
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_metrics_count_reviews_denials_and_bad_bodies(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from gastown.metrics import ServingMetrics  # noqa: PLC0415

    ca = make_local_ca(tmp_path / "certs")
    settings = Settings(
        ssh=SSHSettings(host="127.0.0.1"),
        webhook_host="127.0.0.1",
        webhook_port=0,
        webhook_cert_dir=tmp_path / "certs",
    )
    registry = CollectorRegistry()
    server = WebhookServer(settings, None, metrics=ServingMetrics(registry).webhook)
    await server.start()
    try:
        _, allowed = await _post(server, ca, envelope(k8s_polecat()))
        _, denied = await _post(server, ca, envelope(k8s_polecat(image="BAD IMAGE")))
        assert allowed["response"]["allowed"] is True  # type: ignore[index]
        assert denied["response"]["allowed"] is False  # type: ignore[index]
        assert (await _post(server, ca, b"{not json"))[0] == 400
    finally:
        await server.stop()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("gastown_webhook_requests_total", operation="CREATE", code="200") == 2
    assert value("gastown_webhook_requests_total", operation="UNKNOWN", code="400") == 1
    assert value("gastown_webhook_request_duration_seconds_count", operation="CREATE") == 2
    denials = [s for s in registry.collect() if s.name == "gastown_webhook_denials"]
    assert sum(sample.value for m in denials for sample in m.samples if sample.name.endswith("_total")) >= 1
    assert value("gastown_webhook_requests_in_flight") == 0
