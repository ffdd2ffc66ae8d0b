"""``gastown-operator dev``: the whole thing on one machine, in one command.

With no cluster at hand it starts the test lab (a real control plane on 127.0.0.1),
installs the CRD and the admission webhook (reached by ``url:``, its CA in
``caBundle``), starts a user-level sshd on a free port as the local-mode target, runs
the operator in this process, applies an example local Polecat and prints how to
watch it and attach to its tmux session. Ctrl-C stops everything and removes what it
made. With ``--kubeconfig`` it uses that cluster instead of a lab (CRD installed if
missing; the webhook is not registered, since the cluster cannot reach this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from gastown.api.crd import build_crd
from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.devcluster.lab import Lab, free_port
from gastown.devcluster.sshd import UserSshd
from gastown.settings import Settings, SSHSettings
from gastown.webhook.certs import generate_ca, issue_serving_cert

WEBHOOK_NAME = "gastown-operator-dev"
EXAMPLE_NAMESPACE = "default"
EXAMPLE_NAME = "hello-polecat"

# The example's agent: a stand-in that shows the task and works for a while, so the
# user sees a Working Polecat and has time to attach. A real agent command goes here.
EXAMPLE_COMMAND = (
    'echo "Polecat at work. Task:"; cat "$GASTOWN_TASK_FILE"; '
    'for i in $(seq 1 600); do echo "step $i"; sleep 1; done'
)


@dataclass
class DevOptions:
    """What ``gastown-operator dev`` was asked for."""

    kubeconfig: Path | None = None
    example: bool = True
    workdir: Path | None = None
    exit_when_working: bool = False


def example_polecat() -> dict[str, Any]:
    """A local-mode Polecat run by the tmux dispatcher (no Gas Town install needed)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": EXAMPLE_NAME, "namespace": EXAMPLE_NAMESPACE},
        "spec": {
            "rig": "hello",
            "beadID": "gt-hello1",
            "task": "Say hello from a tmux session on this host.",
            "executionMode": "local",
            "local": {"dispatcher": "tmux", "command": EXAMPLE_COMMAND},
        },
    }


def _webhook_configuration(port: int, ca_bundle: bytes) -> dict[str, Any]:
    import base64  # noqa: PLC0415

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_NAME},
        "webhooks": [
            {
                "name": "validate.polecats.gastown.gastown.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 5,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate-polecat",
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [PLURAL],
                        "scope": "Namespaced",
                    }
                ],
            }
        ],
    }


async def _apply(api: client.ApiClient, path: str, body: dict[str, Any]) -> None:
    """Server-side apply of one object (create or update, idempotent)."""
    await api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", "gastown-dev"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=30,
    )


async def _wait_established(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for _ in range(300):
        crd = await ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        conditions = (crd.status.conditions or []) if crd.status else []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the Polecat CRD was not Established within 30 s")


async def _wait_phase(api: client.ApiClient, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    deadline = asyncio.get_running_loop().time() + timeout
    obj: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        obj = await custom.get_namespaced_custom_object(GROUP, VERSION, EXAMPLE_NAMESPACE, PLURAL, name)
        if (obj.get("status") or {}).get("phase") in phases:
            return obj
        await asyncio.sleep(0.2)
    status = obj.get("status") or {}
    raise RuntimeError(f"{name} did not reach {sorted(phases)} in {timeout:.0f} s; status: {status}")


@contextlib.asynccontextmanager
async def _cluster(options: DevOptions, workdir: Path) -> AsyncIterator[tuple[Path, Lab | None]]:
    if options.kubeconfig is not None:
        yield options.kubeconfig, None
        return
    print("gastown dev: starting the test lab (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
    lab = await Lab.start(workdir=workdir / "lab")
    try:
        yield lab.kubeconfig, lab
    finally:
        await lab.stop()


async def run_dev(options: DevOptions) -> int:
    """Run the dev environment until Ctrl-C (or until Working, with exit_when_working)."""
    from gastown.controller.manager import Manager  # noqa: PLC0415
    from gastown.kube import load_api_client  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="gastown-dev-") as tmp:
        workdir = options.workdir or Path(tmp)
        async with _cluster(options, workdir) as (kubeconfig, lab):
            api = await load_api_client(kubeconfig)
            sshd = await UserSshd.launch(workdir / "sshd")
            manager: Manager | None = None
            try:
                await _apply(
                    api,
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}",
                    build_crd(),
                )
                await _wait_established(api)
                cert_dir = workdir / "webhook-certs"
                cert_dir.mkdir(parents=True, exist_ok=True)
                ca_cert, ca_key = generate_ca("gastown-dev-webhook-ca")
                cert, key = issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
                (cert_dir / "tls.crt").write_bytes(cert)
                (cert_dir / "tls.key").write_bytes(key)
                webhook_port = free_port()
                settings = Settings(
                    kubeconfig=kubeconfig,
                    leader_election=False,
                    webhook_enabled=lab is not None,
                    webhook_host="127.0.0.1",
                    webhook_port=webhook_port,
                    webhook_cert_dir=cert_dir,
                    metrics_port=free_port(),
                    health_port=free_port(),
                    local_poll_interval=1.0,
                    ssh=SSHSettings(
                        host="127.0.0.1",
                        port=sshd.port,
                        user=sshd.user,
                        key_file=sshd.client_key_file,
                        known_hosts_file=sshd.known_hosts_file,
                    ),
                )
                manager = Manager(settings, api=api)
                await manager.start()
                if lab is not None:
                    await _apply(
                        api,
                        f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{WEBHOOK_NAME}",
                        _webhook_configuration(webhook_port, ca_cert),
                    )
                print(f"gastown dev: operator running (sshd for local mode on 127.0.0.1:{sshd.port})")
                if options.example:
                    example = example_polecat()
                    await _apply(
                        api,
                        f"/apis/{GROUP}/{VERSION}/namespaces/{EXAMPLE_NAMESPACE}/{PLURAL}/{EXAMPLE_NAME}",
                        example,
                    )
                    obj = await _wait_phase(api, EXAMPLE_NAME, {"Working", "Done", "Failed", "Stuck"}, 60)
                    _print_next_steps(kubeconfig, obj, sshd)
                    if options.exit_when_working:
                        return 0 if obj["status"]["phase"] == "Working" else 1
                print("gastown dev: Ctrl-C to stop and clean up")
                await _wait_for_signal()
                return 0
            finally:
                if manager is not None:
                    if options.example:
                        await _delete_example(api)
                    await manager.stop()
                await sshd.stop()
                await api.close()


async def _delete_example(api: client.ApiClient) -> None:
    """Delete the example so the operator kills its tmux session before it stops."""
    custom = client.CustomObjectsApi(api)
    with contextlib.suppress(client.ApiException):
        await custom.delete_namespaced_custom_object(GROUP, VERSION, EXAMPLE_NAMESPACE, PLURAL, EXAMPLE_NAME)
    for _ in range(100):
        try:
            await custom.get_namespaced_custom_object(GROUP, VERSION, EXAMPLE_NAMESPACE, PLURAL, EXAMPLE_NAME)
        except client.ApiException:
            return
        await asyncio.sleep(0.1)


def _print_next_steps(kubeconfig: Path, obj: dict[str, Any], sshd: UserSshd) -> None:
    status = obj.get("status") or {}
    local = status.get("local") or {}
    attach = [
        "ssh",
        "-t",
        "-p",
        str(sshd.port),
        "-i",
        str(sshd.client_key_file),
        "-o",
        f"UserKnownHostsFile={sshd.known_hosts_file}",
        f"{sshd.user}@127.0.0.1",
        "tmux",
        "-L",
        str(local.get("tmuxSocket", "")),
        "attach",
        "-t",
        f"={local.get('tmuxSession', '')}",
    ]
    print(
        yaml.safe_dump(
            {"polecat": obj["metadata"]["name"], "phase": status.get("phase"), "local": local},
            sort_keys=False,
        )
    )
    print("Next, in another terminal:")
    print(f"  export KUBECONFIG={shlex.quote(str(kubeconfig))}")
    print(
        f"  export GASTOWN_SSH_HOST=127.0.0.1 GASTOWN_SSH_PORT={sshd.port} GASTOWN_SSH_USER={sshd.user}"
        f" GASTOWN_SSH_KEY_FILE={shlex.quote(str(sshd.client_key_file))}"
        f" GASTOWN_SSH_KNOWN_HOSTS_FILE={shlex.quote(str(sshd.known_hosts_file))}"
    )
    print("  kubectl get pcat -w                       # watch Polecats (short name pcat)")
    print(f"  gastown describe {EXAMPLE_NAME}            # status, conditions, events")
    print(f"  gastown logs -f {EXAMPLE_NAME}             # follow its tmux pane")
    print(f"  {shlex.join(attach)}")
    print("                                            # attach to the tmux session (detach: C-b d)")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
