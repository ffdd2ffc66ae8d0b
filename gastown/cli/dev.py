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

from gastown.api.crd import build_crd
from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.api.paths import resource_path
from gastown.devcluster.lab import Lab, free_port
from gastown.devcluster.sshd import UserSshd
from gastown.kube import Fault, KubeClient, classify, retry_transient
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


CRD_PATH = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=f"{PLURAL}.{GROUP}")
WEBHOOK_PATH = resource_path(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", name=WEBHOOK_NAME
)
EXAMPLE_PATH = resource_path(GROUP, VERSION, PLURAL, namespace=EXAMPLE_NAMESPACE, name=EXAMPLE_NAME)


async def _apply(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    """Server-side apply of one object (create or update, idempotent); transient faults retried."""
    await retry_transient(
        lambda: kube.apply(path, body, field_manager="gastown-dev"), what=f"applying {path}"
    )


async def _wait_established(kube: KubeClient) -> None:
    for _ in range(300):
        crd = await kube.get(CRD_PATH)
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the Polecat CRD was not Established within 30 s")


async def _wait_phase(kube: KubeClient, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
    path = resource_path(GROUP, VERSION, PLURAL, namespace=EXAMPLE_NAMESPACE, name=name)
    deadline = asyncio.get_running_loop().time() + timeout
    obj: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        obj = await kube.get(path)
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
            kube = KubeClient(api)
            sshd = await UserSshd.launch(workdir / "sshd")
            manager: Manager | None = None
            try:
                await _apply(kube, CRD_PATH, build_crd())
                await _wait_established(kube)
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
                    await _apply(kube, WEBHOOK_PATH, _webhook_configuration(webhook_port, ca_cert))
                print(f"gastown dev: operator running (sshd for local mode on 127.0.0.1:{sshd.port})")
                if options.example:
                    example = example_polecat()
                    await _apply(kube, EXAMPLE_PATH, example)
                    obj = await _wait_phase(kube, EXAMPLE_NAME, {"Working", "Done", "Failed", "Stuck"}, 60)
                    _print_next_steps(kubeconfig, obj, sshd)
                    if options.exit_when_working:
                        return 0 if obj["status"]["phase"] == "Working" else 1
                print("gastown dev: Ctrl-C to stop and clean up")
                await _wait_for_signal()
                return 0
            finally:
                if manager is not None:
                    if options.example:
                        await _delete_example(kube)
                    await manager.stop()
                await sshd.stop()
                await api.close()


async def _delete_example(kube: KubeClient) -> None:
    """Delete the example so the operator kills its tmux session before it stops."""
    try:
        await kube.delete(EXAMPLE_PATH)
    except Exception as exc:
        if classify(exc) is not Fault.NOT_FOUND:
            print(f"gastown dev: could not delete the example Polecat: {exc}")
            return
    for _ in range(100):
        try:
            await kube.get(EXAMPLE_PATH)
        except Exception as exc:
            if classify(exc) is Fault.NOT_FOUND:
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
