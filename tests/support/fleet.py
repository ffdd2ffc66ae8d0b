"""Bursts of kubernetes-mode Polecats for the fault tests, and what they reference.

A burst is created the way many users would create it: concurrent POSTs, each retried
until the apiserver takes it. Retries are what a client does while the apiserver is
restarting; a 409 on a retry means an earlier attempt got through before its answer
was lost, which is success, not a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import GROUP, VERSION
from gastown.api.paths import resource_path
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.support.engine import polecats_path
from tests.support.watch_ledger import WatchLedger

GIT_SECRET = "git-ssh"
KNOWN_HOSTS = "git-known-hosts"
AGENT_SECRET = "agent"
AGENT_KEY = "api-key"
RESTRICTED = "pod-security.kubernetes.io/enforce"


def kubernetes_polecat(
    name: str, index: int, *, rig: str = "burst", task: str | None = None
) -> dict[str, Any]:
    """A valid kubernetes-mode Polecat referencing the objects of :func:`prepare_namespace`."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {
            "rig": rig,
            "beadID": f"gt-b{index:05d}",
            "task": task or f"burst task {index}",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "git@git.example.com:acme/burst.git",
                "gitSecretRef": {"name": GIT_SECRET},
                "knownHostsConfigMapRef": {"name": KNOWN_HOSTS},
                "agentSecretRef": {"name": AGENT_SECRET, "key": AGENT_KEY},
            },
        },
    }


async def prepare_namespace(
    lab: Lab,
    kube: KubeClient,
    namespace: str,
    *,
    agent_key: str = "sk-test-not-a-real-key",
    ssh_key: str = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n",
) -> None:
    """Pod Security ``restricted`` enforced, and the Secrets and ConfigMap the Pods use."""
    await lab.kubectl("label", "namespace", namespace, f"{RESTRICTED}=restricted", "--overwrite")
    await kube.create(
        resource_path("", "v1", "secrets", namespace=namespace),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": GIT_SECRET},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {"ssh-privatekey": ssh_key},
        },
    )
    await kube.create(
        resource_path("", "v1", "secrets", namespace=namespace),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": AGENT_SECRET},
            "stringData": {AGENT_KEY: agent_key},
        },
    )
    await kube.create(
        resource_path("", "v1", "configmaps", namespace=namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": KNOWN_HOSTS},
            "data": {"known_hosts": "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake\n"},
        },
    )


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504)
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


async def create_until_accepted(
    kube: KubeClient, path: str, body: dict[str, Any], *, timeout: float = 90
) -> None:
    """POST ``body`` until the apiserver has it (409 after a retry counts: it got through)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            await kube.create(path, body)
            return
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 409 and attempt > 1:
                return
            if not _retryable(exc) or loop.time() > deadline:
                raise
        await asyncio.sleep(0.1)


async def create_burst(
    kube: KubeClient, namespace: str, bodies: list[dict[str, Any]], *, concurrency: int = 32
) -> None:
    """Create every Polecat with bounded concurrency, each retried through faults."""
    gate = asyncio.Semaphore(concurrency)
    path = polecats_path(namespace)

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            await create_until_accepted(kube, path, body)

    await asyncio.gather(*(one(b) for b in bodies))


def unconverged(ledger: WatchLedger, names: list[str], phases: tuple[str, ...] = ("Working",)) -> list[str]:
    """Polecats of ``names`` that are not yet in one of ``phases`` with their Pod present."""
    return [n for n in names if ledger.phase(n) not in phases or f"polecat-{n}" not in ledger.pods]


async def wait_converged(
    ledger: WatchLedger, names: list[str], *, timeout: float = 120.0, phases: tuple[str, ...] = ("Working",)
) -> None:
    """Until every Polecat of ``names`` has its Pod and is in one of ``phases``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while missing := unconverged(ledger, names, phases):
        if loop.time() > deadline:
            sample = {n: ledger.polecat_phases.get(n) for n in missing[:5]}
            raise AssertionError(f"{len(missing)} Polecats did not converge in {timeout}s, e.g. {sample}")
        await asyncio.sleep(0.2)


async def assert_converged_once(
    kube: KubeClient,
    ledger: WatchLedger,
    namespace: str,
    names: list[str],
    *,
    lingering: Iterable[str] = (),
) -> None:
    """The promise, checked against a fresh LIST and the ledger kept since before the burst.

    Every Polecat is Working with exactly one Pod, owned by it, whose uid is the first
    and only one the witness ever saw under that name (no Pod created twice), and no
    Polecat's phase went backwards or got a second startTime (no second dispatch).
    ``lingering``: deleted Polecats whose Pods garbage collection may not have removed yet.
    """
    polecats = {p["metadata"]["name"]: p for p in (await kube.get(polecats_path(namespace)))["items"]}
    pods = {
        p["metadata"]["name"]: p
        for p in (await kube.get(resource_path("", "v1", "pods", namespace=namespace)))["items"]
    }
    assert sorted(polecats) == sorted(names)
    allowed = {f"polecat-{n}" for n in [*names, *lingering]}
    assert {f"polecat-{n}" for n in names} <= set(pods) <= allowed, sorted(set(pods) ^ allowed)
    for name in names:
        polecat, pod = polecats[name], pods[f"polecat-{name}"]
        assert polecat["status"]["phase"] == "Working", (name, polecat["status"])
        assert polecat["status"]["kubernetes"]["podName"] == f"polecat-{name}"
        owners = [o["uid"] for o in pod["metadata"].get("ownerReferences") or [] if o.get("controller")]
        assert owners == [polecat["metadata"]["uid"]], name
        assert ledger.pod_uids[f"polecat-{name}"] == [pod["metadata"]["uid"]], name
    assert ledger.pods_created_more_than_once(f"polecat-{n}" for n in names) == {}
    assert {n: p for n, p in ledger.polecats_going_backwards().items() if n in names} == {}
    assert {n: t for n, t in ledger.polecats_restarted().items() if n in names} == {}
