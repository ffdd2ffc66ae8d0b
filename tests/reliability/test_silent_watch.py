"""A watch that goes silent is detected by the informer's watchdog and restarted.

The operator reaches the lab's kube-apiserver through a TCP proxy
(tests/support/stall_proxy.py) that, on command, stops forwarding on every connection
open at that moment while keeping them open: no FIN, no RST, no error, just silence —
a NAT entry or load balancer that forgot the connection, a half-open link after a
partition. Nothing but a watchdog can notice that. New connections go through.

Real parts: kube-apiserver, etcd, scheduler and kwok (the kubelet's stand-in), the
operator's manager with the real kubernetes executor (in this process, so the
watchdog can be set to seconds instead of the production 70 s: ``InformerOptions``
is not a command-line setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

import gastown.kube
from gastown.controller.informer import InformerOptions
from gastown.controller.manager import Manager
from gastown.controller.reconciler import ReconcilerOptions
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient, load_api_client
from tests.support.engine import engine_settings
from tests.support.fleet import create_burst, kubernetes_polecat, prepare_namespace, wait_converged
from tests.support.stall_proxy import StallProxy
from tests.support.watch_ledger import witnessed

pytestmark = [pytest.mark.reliability, pytest.mark.lab]

WATCHDOG = 2.0
# Requests caught on a stalled pooled connection give up after this (the production
# bounds are 15-60 s; shortened so that the test is about the watches, not the pool).
REQUEST_TIMEOUT = 3.0


def _samples(mgr: Manager, name: str, **labels: str) -> float:
    total = 0.0
    for family in mgr.registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _proxied_kubeconfig(lab: Lab, port: int, path: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load(lab.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_stalled_watch_is_restarted_by_the_watchdog(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kube: KubeClient,
) -> None:
    await prepare_namespace(lab, kube, namespace)
    # Every request of the operator's client (the Pod creates included) gets the short bound.
    monkeypatch.setattr(gastown.kube, "REQUEST_TIMEOUT", REQUEST_TIMEOUT)
    before = [f"before-{i}" for i in range(5)]
    after = [f"after-{i}" for i in range(5)]
    async with StallProxy("127.0.0.1", lab.apiserver_port) as proxy, witnessed(lab, namespace) as ledger:
        api = await load_api_client(_proxied_kubeconfig(lab, proxy.port, tmp_path / "proxied.kubeconfig"))
        mgr = Manager(
            engine_settings(namespace),
            api=api,
            informer_options=InformerOptions(watchdog=WATCHDOG, backoff_base=0.1, backoff_cap=1.0),
            reconciler_options=ReconcilerOptions(request_timeout=REQUEST_TIMEOUT),
        )
        try:
            await mgr.start()
            await mgr.wait_synced()
            await create_burst(kube, namespace, [kubernetes_polecat(n, i) for i, n in enumerate(before)])
            await wait_converged(ledger, before, timeout=60)
            relists = _samples(mgr, "gastown_informer_relists_total")

            assert proxy.stall() >= 2  # at least the Polecat and the Pod watches
            await create_burst(kube, namespace, [kubernetes_polecat(n, 10 + i) for i, n in enumerate(after)])
            # The stalled watches would otherwise end only at their server-side timeout
            # (5-10 minutes); the work must get done long before that.
            await wait_converged(ledger, after, timeout=90)

            for informer in ("polecats", "pods"):
                restarts = _samples(mgr, "gastown_watch_restarts_total", informer=informer, reason="watchdog")
                assert restarts >= 1, f"the {informer} watch was not restarted by the watchdog"
            # Resumed from its resourceVersion: nothing was lost, so nothing needed a relist.
            assert _samples(mgr, "gastown_informer_relists_total") == relists
            assert proxy.accepted > 2  # the restarted watches came through new connections
        finally:
            await mgr.stop()
            await api.close()
