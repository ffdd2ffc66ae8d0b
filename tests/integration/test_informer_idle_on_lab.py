"""An idle watch is not a fault: the watchdog restarts it quietly, and warns only when
the apiserver does not answer either (issue 19).

Why an idle watch is silent: the apiserver sends a watch a bookmark about every minute,
but only with a resourceVersion newer than the one the watch started from, and its
watch cache for a resource nobody changes does not move on. So a Pod watch in a
cluster without Pods hears nothing for minutes.

Real: the lab's kube-apiserver and etcd. The apiserver that does not answer is the
real one behind a TCP proxy that stops forwarding on every connection, new ones
included (``tests/support/stall_proxy.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from gastown.controller.informer import Informer, InformerOptions
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient, load_api_client
from tests.support.informers import PODS, Recorder, running
from tests.support.stall_proxy import StallProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab

LOGGER = "gastown.controller.informer"


def _informer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


async def test_an_idle_watch_is_restarted_without_a_warning(
    k8s_api: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    recorder = Recorder()
    informer = Informer(
        KubeClient(k8s_api),
        PODS,
        namespaces=[namespace],
        label_selector="gastown-test=nothing-matches",
        options=InformerOptions(watchdog=1.0),
        observer=recorder,
    )
    async with running(informer):
        await wait_until(lambda: recorder.restarts["watchdog"] >= 2, "the watchdog to restart the idle watch")
    records = _informer_records(caplog)
    assert any("idle" in r.getMessage() and r.levelno == logging.DEBUG for r in records), records
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    assert recorder.relists == 1  # each restart resumed from its resourceVersion


def _proxied_kubeconfig(lab: Lab, port: int, path: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load(lab.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_a_watch_whose_apiserver_is_silent_too_is_a_warning(
    lab: Lab, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    recorder = Recorder()
    async with StallProxy("127.0.0.1", lab.apiserver_port) as proxy:
        api = await load_api_client(_proxied_kubeconfig(lab, proxy.port, tmp_path / "proxied.kubeconfig"))
        try:
            informer = Informer(
                KubeClient(api),
                PODS,
                namespaces=[namespace],
                options=InformerOptions(watchdog=1.0, request_timeout=2.0, backoff_base=0.1, backoff_cap=0.5),
                observer=recorder,
            )
            async with running(informer):
                # The watch has been quiet once and the apiserver answered; now silence.
                await wait_until(
                    lambda: any("idle" in r.getMessage() for r in _informer_records(caplog)),
                    "an idle watch restarted quietly",
                )
                assert proxy.stall(new_connections=True) >= 1

                # The silence meets the watchdog on an open stream ("the apiserver does not
                # answer"), or a reconnect that was just under way ("watch failed"): a
                # warning either way.
                def warned() -> bool:
                    return any(r.levelno == logging.WARNING for r in _informer_records(caplog))

                await wait_until(warned, "a warning that the apiserver is silent")
        finally:
            await api.close()
    assert recorder.restarts["watchdog"] >= 1
