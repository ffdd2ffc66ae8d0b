"""No secret value ever leaves its Secret: a canary in the agent and the git Secrets is
searched for everywhere the operator writes.

The operator runs as users run it (``gastown-operator run``, its own process) at DEBUG
log level, with its admission webhook registered for the namespace (the webhook looks
the referenced Secrets up to warn about missing keys). Polecats go through every path
that writes something: admitted with warnings, dispatched, Working, Done and Failed
(kwok ends their Pods with an exit code and a termination message, standing in for
the container), stopped on request, and refused a Pod for a missing Secret. Then the
canary (raw, and base64 as in a Secret's ``data``) is searched for in: every operator
log line, every Event, every Polecat (status included), every Pod (args, env,
annotations: all of it), /metrics, and what kubectl printed to the user.

Real parts: kube-apiserver (admission webhook calls, Pod Security restricted), etcd,
scheduler, kwok; the operator process with the real kubernetes executor and webhook.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import Phase
from gastown.api.paths import resource_path
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from gastown.webhook import certs
from tests.support.admission import DENIED_BY, PROBE, webhook_registered
from tests.support.engine import list_events, polecats_path, wait_phase
from tests.support.fleet import AGENT_SECRET, kubernetes_polecat, prepare_namespace
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.lab]

TERMINATION_MESSAGE = json.dumps(
    {"branch": "polecat/x", "commit": "0" * 40, "pushed": True, "agentExitCode": 0, "message": "ok"}
)


def _forms(value: str) -> list[str]:
    """The canary as written, and as it sits base64-encoded in a Secret's data."""
    return [value, base64.b64encode(value.encode()).decode()]


async def _end_pod(kube: KubeClient, namespace: str, name: str, code: int, message: str) -> None:
    annotations = {"lab.gastown.io/exit-code": str(code), "lab.gastown.io/termination-message": message}
    await kube.merge_patch(
        resource_path("", "v1", "pods", namespace=namespace, name=f"polecat-{name}"),
        {"metadata": {"annotations": annotations}},
    )


async def test_secret_values_never_appear_in_logs_events_status_or_pods(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, tmp_path: Path, kube: KubeClient
) -> None:
    agent_canary = f"sk-canary-agent-{uuid.uuid4().hex}"
    ssh_canary = f"canary-ssh-key-{uuid.uuid4().hex}"
    await prepare_namespace(
        lab,
        kube,
        namespace,
        agent_key=agent_canary,
        ssh_key=f"-----BEGIN OPENSSH PRIVATE KEY-----\n{ssh_canary}\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    ca_cert, ca_key = certs.generate_ca("canary-webhook-ca")
    cert, key = certs.issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
    certs.write_pair(tmp_path / "tls", cert, key)
    operator = OperatorProcess(lab, namespace, tmp_path, log_level="DEBUG", webhook_cert_dir=tmp_path / "tls")
    printed: list[str] = []
    await operator.start()
    try:
        await operator.wait_ready()
        async with webhook_registered(
            lab, namespace, operator.webhook_port, ca_cert, probe=PROBE, until=DENIED_BY
        ):
            names = ["working", "done", "failed", "stopped"]
            bodies = [kubernetes_polecat(n, i) for i, n in enumerate(names)]
            missing = kubernetes_polecat("missing", 9)
            missing["spec"]["kubernetes"]["agentSecretRef"] = {"name": "no-such-secret"}
            for body in [*bodies, missing]:
                _, out, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))
                printed += [out, err]
            await _wait_for_lookup_warning(lab, namespace, missing, printed)

            for name in names:
                await wait_phase(kube, namespace, name, Phase.WORKING, timeout=60)
            await _end_pod(kube, namespace, "done", 0, TERMINATION_MESSAGE)
            await _end_pod(kube, namespace, "failed", 3, "agent crashed: out of ideas")
            await kube.merge_patch(
                polecats_path(namespace, "stopped"), {"spec": {"desiredState": "Terminated"}}
            )
            await wait_phase(kube, namespace, "done", Phase.DONE, timeout=60)
            await wait_phase(kube, namespace, "failed", Phase.FAILED, timeout=60)
            await wait_phase(kube, namespace, "stopped", Phase.TERMINATED, timeout=60)

            async def missing_reported() -> bool:
                obj = await kube.get(polecats_path(namespace, "missing"))
                ready = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
                return bool(ready) and ready[0]["reason"] == "SecretNotFound"

            await wait_for(missing_reported, what="the missing Secret to be reported", timeout=30)
            # Events are sent in the background: wait for those of the last transitions, so
            # that the search below covers them.
            await _wait_events(kube, namespace, {"done": "Completed", "stopped": "Terminated"})
            await _wait_events(kube, namespace, {"missing": "SecretNotFound"})
            await wait_for(
                lambda: _warned(kube, namespace, "failed"), what="the Warning Event of the failed Polecat"
            )
            metrics = await _metrics_text(operator)
    finally:
        await operator.stop()

    pods = await kube.get(resource_path("", "v1", "pods", namespace=namespace))
    working = next(p for p in pods["items"] if p["metadata"]["name"] == "polecat-working")
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in working["spec"]["containers"]
        for e in c.get("env") or []
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    ]
    assert AGENT_SECRET in refs  # the Pod does use the Secret: by reference
    places: dict[str, Any] = {
        "operator log": operator.log_text(),
        "events": await kube.get(resource_path("events.k8s.io", "v1", "events", namespace=namespace)),
        "core events": await kube.get(resource_path("", "v1", "events", namespace=namespace)),
        "polecats": await kube.get(polecats_path(namespace)),
        "pods": pods,
        "metrics": metrics,
        "kubectl output": printed,
    }
    assert '"DEBUG"' in operator.log_text()  # DEBUG records really were written
    for place, content in places.items():
        text = content if isinstance(content, str) else json.dumps(content)
        for canary in [*_forms(agent_canary), *_forms(ssh_canary)]:
            assert canary not in text, f"a secret value leaked into the {place}"


async def _wait_events(kube: KubeClient, namespace: str, reasons: dict[str, str]) -> None:
    """Until each named Polecat has an Event with the given reason."""
    for name, reason in reasons.items():

        async def recorded(name: str = name, reason: str = reason) -> bool:
            return any(e["reason"] == reason for e in await list_events(kube, namespace, name))

        await wait_for(recorded, what=f"the {reason} Event of {name}", timeout=30)


async def _warned(kube: KubeClient, namespace: str, name: str) -> bool:
    return any(e["type"] == "Warning" for e in await list_events(kube, namespace, name))


async def _wait_for_lookup_warning(
    lab: Lab, namespace: str, body: dict[str, Any], printed: list[str]
) -> None:
    """Until kubectl prints the webhook's warning about the missing Secret: proof that the
    webhook looks Secrets up (so it had the canary in hand). Its lookups give up after
    1.5 s and then warn nothing, so on a loaded machine the first apply may come back
    without it; server-side dry runs of a copy ask again."""
    probe = {**body, "metadata": {"name": "missing-dry-run"}}  # a create: never "unchanged"
    for _ in range(20):
        if any("no-such-secret" in text for text in printed):
            return
        _, out, err = await lab.kubectl(
            "-n", namespace, "apply", "--dry-run=server", "-f", "-", input=json.dumps(probe)
        )
        printed += [out, err]
    raise AssertionError(f"the webhook never warned about the missing Secret: {printed[-2:]}")


async def _metrics_text(operator: OperatorProcess) -> str:
    import aiohttp  # noqa: PLC0415 - only here

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{operator.metrics_port}/metrics") as resp,
    ):
        return await resp.text()
