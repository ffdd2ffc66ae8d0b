"""``gastown-operator dev``: the whole thing on one machine, in one command.

With no cluster at hand it starts the test lab (a real control plane on 127.0.0.1),
installs the CRD and the admission webhook (reached by ``url:``, its CA in
``caBundle``), starts a user-level sshd on a free port as the local-mode target and
a git server for kubernetes mode, runs the operator in this process, applies one
example Polecat of each mode (:mod:`gastown.cli.dev_examples`) and prints one line
to ``source`` in another terminal (:mod:`gastown.cli.dev_env`) and what to try;
``--shell`` also opens a shell with that environment in this terminal
(:mod:`gastown.cli.dev_shell`), and leaving it stops everything. With
``--kubeconfig`` it uses that cluster instead of a lab (CRD installed if missing;
no webhook, since the cluster cannot reach this machine; only the local example,
since Pods there cannot reach this machine's git server either).

Stopping (the part a terminal makes hard). A terminal's Ctrl-C sends SIGINT to its
whole foreground process group. The lab's processes, the sshds and the tmux servers
therefore run in sessions of their own: only this process hears Ctrl-C, SIGTERM or
SIGHUP (:mod:`gastown.cli.dev_signals`), and it stops them itself, in dependency
order: the operator (so nothing talks to the apiserver any more), kwok, the
scheduler, the controller-manager, the apiserver, etcd, the sshds, then the tmux
servers started through the dev sshd, and removes its temporary directory. Each
step is bounded; a second signal, or the whole stop taking longer than
:data:`STOP_BUDGET`, SIGKILLs whatever still runs. If this process is killed
outright, the kernel kills the lab and the sshds (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gastown.api import convoy as convoy_api
from gastown.api import rig as rig_api
from gastown.api.crd import CRD_NAMES, build_crds
from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.api.paths import resource_path
from gastown.cli import dev_examples as examples
from gastown.cli.dev_env import DevEnv, scripts_dir, write_env_file
from gastown.cli.dev_shell import DevShell
from gastown.cli.dev_signals import StopSignals, say
from gastown.devcluster import tmux_servers
from gastown.devcluster.gitserver import GitServer
from gastown.devcluster.lab import Lab, free_port
from gastown.devcluster.sshd import UserSshd
from gastown.kube import KubeClient, retry_transient
from gastown.settings import Settings, SSHSettings
from gastown.webhook.certs import generate_ca, issue_serving_cert

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from gastown.controller.manager import Manager

WEBHOOK_NAME = "gastown-operator-dev"
STOP_BUDGET = 8.0
"""Seconds the graceful stop may take before everything left is SIGKILLed."""
STEP_GRACE = 3.0
"""Seconds one lab process or sshd gets between SIGTERM and SIGKILL."""
OPERATOR_GRACE = 2.0
"""The operator's shutdown grace in dev (in-flight reconciles; production: 20 s)."""
READY_PHASES = {"Working", "Done", "Failed", "Stuck"}


@dataclass
class DevOptions:
    """What ``gastown-operator dev`` was asked for."""

    kubeconfig: Path | None = None
    example: bool = True
    workdir: Path | None = None
    exit_when_working: bool = False
    shell: bool = False


def _webhook_configuration(port: int, ca_bundle: bytes) -> dict[str, Any]:
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
                        "resources": [PLURAL, rig_api.PLURAL, convoy_api.PLURAL],
                        "scope": "Namespaced",
                    }
                ],
            }
        ],
    }


_RESOURCES = {
    "CustomResourceDefinition": ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    "ValidatingWebhookConfiguration": (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
    ),
    "Polecat": (GROUP, VERSION, PLURAL),
    "Secret": ("", "v1", "secrets"),
    "ConfigMap": ("", "v1", "configmaps"),
}


def _object_path(body: dict[str, Any]) -> str:
    """REST path of one of the objects dev applies (CRD, webhook config, core, Polecat)."""
    kind, meta = body["kind"], body["metadata"]
    group, version, plural = _RESOURCES[kind]
    return resource_path(group, version, plural, namespace=meta.get("namespace"), name=meta["name"])


async def _apply(kube: KubeClient, body: dict[str, Any]) -> None:
    """Server-side apply of one object (create or update, idempotent); transient faults retried."""
    path = _object_path(body)
    await retry_transient(
        lambda: kube.apply(path, body, field_manager="gastown-dev"), what=f"applying {path}"
    )


def _polecat_path(name: str) -> str:
    return resource_path(GROUP, VERSION, PLURAL, namespace=examples.NAMESPACE, name=name)


async def _wait_established(kube: KubeClient) -> None:
    for name in CRD_NAMES:
        path = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=name)
        for _ in range(300):
            crd = await kube.get(path)
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"the CRD {name} was not Established within 30 s")


async def _wait_phase(kube: KubeClient, name: str, timeout: float) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    obj: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        obj = await kube.get(_polecat_path(name))
        if (obj.get("status") or {}).get("phase") in READY_PHASES:
            return obj
        await asyncio.sleep(0.2)
    status = obj.get("status") or {}
    raise RuntimeError(f"{name} did not reach {sorted(READY_PHASES)} in {timeout:.0f} s; status: {status}")


@dataclass
class _Step:
    """One teardown step: a graceful stop, and how to kill it at once if time runs out."""

    name: str
    stop: Callable[[], Awaitable[None]]
    kill_now: Callable[[], None] | None = None


class DevSession:
    """Everything one ``dev`` run started; :meth:`stop` takes it down in order."""

    def __init__(self, options: DevOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.tmux_tmpdir = workdir / "tmux"
        self.env_file = workdir / "env.sh"
        self.lab: Lab | None = None
        self.api: ApiClient | None = None
        self.kube: KubeClient | None = None
        self.sshd: UserSshd | None = None
        self.git: GitServer | None = None
        self.manager: Manager | None = None
        self.shell: DevShell | None = None
        self.example_names: list[str] = []

    # -- start -----------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, print what to do next, and serve until cancelled."""
        from gastown.kube import load_api_client  # noqa: PLC0415

        kubeconfig = await self._start_cluster()
        self.api = await load_api_client(kubeconfig, user_agent="gastown-dev")
        self.kube = KubeClient(self.api)
        self.tmux_tmpdir.mkdir(mode=0o700, exist_ok=True)
        self.sshd = await UserSshd.launch(
            self.workdir / "sshd",
            home=self.workdir / "home",
            env={"TMUX_TMPDIR": str(self.tmux_tmpdir)},
        )
        for crd_obj in build_crds():
            await _apply(self.kube, crd_obj)
        await _wait_established(self.kube)
        await self._start_operator(kubeconfig)
        say(f"gastown dev: operator running; local mode: tmux over sshd on 127.0.0.1:{self.sshd.port}")
        env = self._write_env(kubeconfig)
        if self.options.example:
            polecats = await self._apply_examples()
            say()
            say("$ gastown list")
            await self._print_list(polecats)
            if self.options.exit_when_working:
                return 0 if all(p["status"]["phase"] == "Working" for p in polecats) else 1
        self._print_next_steps(env)
        if self.options.shell:
            self.shell = await DevShell.start(env.environ(os.environ.get("PATH", "")))
            await self.shell.wait()
            say("gastown dev: the shell exited")
            return 0
        await asyncio.Event().wait()  # until cancelled by a stop signal
        return 0

    async def _start_cluster(self) -> Path:
        if self.options.kubeconfig is not None:
            return self.options.kubeconfig
        say(
            "gastown dev: starting the test lab (etcd, kube-apiserver, kube-controller-manager, "
            f"kube-scheduler, kwok) in {self.workdir}"
        )
        started = time.monotonic()
        self.lab = Lab.create(workdir=self.workdir / "lab")
        await self.lab.boot()
        say(f"gastown dev: lab ready at {self.lab.server} in {time.monotonic() - started:.1f} s")
        return self.lab.kubeconfig

    async def _start_operator(self, kubeconfig: Path) -> None:
        from gastown.controller.manager import Manager  # noqa: PLC0415

        assert self.api is not None and self.kube is not None and self.sshd is not None
        cert_dir = self.workdir / "webhook-certs"
        cert_dir.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = generate_ca("gastown-dev-webhook-ca")
        cert, key = issue_serving_cert(ca_cert, ca_key, ["localhost"], ip_addresses=["127.0.0.1"])
        (cert_dir / "tls.crt").write_bytes(cert)
        (cert_dir / "tls.key").write_bytes(key)
        webhook_port = free_port()
        settings = Settings(
            kubeconfig=kubeconfig,
            leader_election=False,
            webhook_enabled=self.lab is not None,
            webhook_host="127.0.0.1",
            webhook_port=webhook_port,
            webhook_cert_dir=cert_dir,
            metrics_port=free_port(),
            health_port=free_port(),
            local_poll_interval=1.0,
            shutdown_grace=OPERATOR_GRACE,
            ssh=SSHSettings(
                host="127.0.0.1",
                port=self.sshd.port,
                user=self.sshd.user,
                key_file=self.sshd.client_key_file,
                known_hosts_file=self.sshd.known_hosts_file,
            ),
        )
        self.manager = Manager(settings, api=self.api)
        await self.manager.start()
        if self.lab is not None:
            await _apply(self.kube, _webhook_configuration(webhook_port, ca_cert))

    async def _apply_examples(self) -> list[dict[str, Any]]:
        kube = self.kube
        assert kube is not None
        bodies = [examples.local_polecat()]
        if self.lab is not None:
            target = examples.kubernetes_target()
            self.git = await GitServer.launch(self.workdir / "git", host=target.git_host)
            say(f"gastown dev: git server for kubernetes mode: {self.git.url}")
            for body in (
                examples.git_secret(self.git.private_key),
                examples.known_hosts_configmap(self.git.known_hosts),
                examples.agent_secret(),
            ):
                await _apply(kube, body)
            say(
                f"gastown dev: made Secret {examples.GIT_SECRET} (its key), ConfigMap "
                f"{examples.KNOWN_HOSTS_CONFIGMAP} (its host key), Secret {examples.AGENT_SECRET} "
                "(placeholder API key)"
            )
            bodies.append(examples.kubernetes_polecat(self.git.url))
        else:
            say("gastown dev: no kubernetes-mode example: that cluster's Pods cannot reach a git server here")
        for body in bodies:
            await _apply(kube, body)
            self.example_names.append(body["metadata"]["name"])
        say(f"gastown dev: applied {', '.join(self.example_names)}; waiting for them to work")
        polecats = [await _wait_phase(kube, name, 60) for name in self.example_names]
        if self.lab is not None:
            say(f"gastown dev: {examples.KUBERNETES_NAME}: {examples.kubernetes_target().description}")
        return polecats

    async def _print_list(self, polecats: list[dict[str, Any]]) -> None:
        from gastown.cli import render  # noqa: PLC0415

        for line in render.list_table(polecats, now=datetime.now(UTC)):
            say(line)

    def _write_env(self, kubeconfig: Path) -> DevEnv:
        assert self.sshd is not None
        dirs = [scripts_dir()]
        if self.lab is not None:
            dirs.append(self.lab.bin_dir)
        env = DevEnv(
            kubeconfig=kubeconfig.resolve(),
            path_dirs=tuple(dirs),
            ssh_host="127.0.0.1",
            ssh_port=self.sshd.port,
            ssh_user=self.sshd.user,
            ssh_key_file=self.sshd.client_key_file,
            ssh_known_hosts_file=self.sshd.known_hosts_file,
        )
        write_env_file(env, self.env_file)
        return env

    def _print_next_steps(self, env: DevEnv) -> None:
        del env  # everything is in the file
        say()
        if self.options.shell:
            say("A shell with PATH, KUBECONFIG and GASTOWN_SSH_* set follows; in another terminal:")
        else:
            say("Next, in a new terminal, paste this one line (PATH, KUBECONFIG and GASTOWN_SSH_*):")
        say()
        say(f"  source {self.env_file}")
        say()
        say("then try:")
        steps = [
            ("gastown list", "one Polecat of each mode"),
            ("kubectl get pcat -w", "watch them (pcat: Polecat)"),
        ]
        if self.options.example:
            name = examples.LOCAL_NAME
            steps += [
                (f"gastown describe {name}", "status, conditions, events"),
                (f"gastown logs -f {name}", "follow its tmux pane"),
                (f"gastown attach {name}", "attach to its tmux session over ssh (detach: C-b d)"),
            ]
            if examples.KUBERNETES_NAME in self.example_names:
                steps += [
                    (f"gastown describe {examples.KUBERNETES_NAME}", "its Pod, git Secret and known_hosts"),
                    ("kubectl get pods -o wide", "the Pod (on kwok-node-0: simulated)"),
                ]
        width = max(len(cmd) for cmd, _ in steps) + 2
        for cmd, why in steps:
            say(f"  {cmd.ljust(width)}# {why}")
        say()
        if self.options.shell:
            say(f"gastown dev: leaving the shell (exit) stops everything and removes {self.workdir}")
        else:
            say(f"gastown dev: Ctrl-C stops everything and removes {self.workdir}")

    # -- stop ------------------------------------------------------------------------

    def _steps(self) -> list[_Step]:
        """Teardown in dependency order (see the module doc)."""
        steps: list[_Step] = []
        if self.shell is not None:
            steps.append(_Step("shell", self.shell.hang_up))
        if self.manager is not None:
            steps.append(_Step("operator", self._stop_operator))
        if self.api is not None:
            steps.append(_Step("API client", self._close_api))
        # A real kubelet node (issue 15), once dev starts one, stops here: after the
        # operator, before the lab (Lab.STOP_ORDER: kwok, scheduler, controller-manager,
        # apiserver, etcd).
        if self.lab is not None:
            lab = self.lab
            steps.append(_Step("lab", lambda: lab.stop(grace=STEP_GRACE), lab.kill_now))
        if self.sshd is not None:
            sshd = self.sshd
            steps.append(_Step("sshd", lambda: sshd.stop(timeout=STEP_GRACE), sshd.kill_now))
        if self.git is not None:
            git = self.git
            steps.append(_Step("git server", lambda: git.stop(timeout=STEP_GRACE), git.kill_now))
        tmux_dir = self.tmux_tmpdir
        steps.append(
            _Step(
                "tmux servers",
                lambda: tmux_servers.stop(tmux_dir, grace=STEP_GRACE),
                lambda: tmux_servers.kill_now(tmux_dir),
            )
        )
        return steps

    async def _stop_operator(self) -> None:
        assert self.manager is not None
        if self.lab is None and self.kube is not None:
            # A real cluster outlives this process: remove the examples from it.
            for name in self.example_names:
                with contextlib.suppress(Exception):
                    await self.kube.delete(_polecat_path(name), request_timeout=5)
        await self.manager.stop()

    async def _close_api(self) -> None:
        assert self.api is not None
        await self.api.close()

    async def stop(self, hurry: asyncio.Event) -> None:
        """Stop everything in order; SIGKILL what is left on ``hurry`` or after STOP_BUDGET."""
        steps = self._steps()
        loop = asyncio.get_running_loop()
        budget = loop.call_later(STOP_BUDGET, hurry.set)

        async def kill_on_hurry() -> None:
            await hurry.wait()
            for step in steps:
                if step.kill_now is not None:
                    step.kill_now()

        killer = asyncio.create_task(kill_on_hurry(), name="dev-kill-on-hurry")
        try:
            for step in steps:
                try:
                    await step.stop()
                except Exception as exc:  # keep going: the next steps still need to run
                    say(f"gastown dev: stopping the {step.name} failed: {exc}")
                    if step.kill_now is not None:
                        step.kill_now()
        finally:
            budget.cancel()
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer


async def run_dev(options: DevOptions) -> int:
    """Run the dev environment until a stop signal (or until Working, with exit_when_working)."""
    signals = StopSignals()
    signals.install()
    owns_workdir = options.workdir is None
    workdir = (options.workdir or Path(tempfile.mkdtemp(prefix="gastown-dev-"))).resolve()
    session = DevSession(options, workdir)
    try:
        return await _serve(session, signals)
    finally:
        started = time.monotonic()
        try:
            await session.stop(signals.hurry)
        finally:
            if owns_workdir:
                await _remove(workdir)
        removed = f"; removed {workdir}" if owns_workdir else ""
        say(f"gastown dev: stopped in {time.monotonic() - started:.1f} s{removed}")


async def _remove(workdir: Path) -> None:
    """Remove the dev directory; again if a process killed a moment ago was still writing."""
    for _ in range(20):
        await asyncio.to_thread(shutil.rmtree, workdir, True)
        if not workdir.exists():
            return
        await asyncio.sleep(0.05)
    say(f"gastown dev: could not remove {workdir} completely")


async def _serve(session: DevSession, signals: StopSignals) -> int:
    """Run the session until it returns or the first stop signal; cancel it on the signal."""
    runner = asyncio.create_task(session.run(), name="gastown-dev")
    stop = asyncio.create_task(signals.requested.wait(), name="gastown-dev-signals")
    try:
        await asyncio.wait({runner, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not runner.done():
            runner.cancel()
            say(
                f"\ngastown dev: {signals.reason}: stopping the operator, the lab, the sshds and "
                "the tmux servers (Ctrl-C again to kill them at once)"
            )
            await asyncio.gather(runner, return_exceptions=True)
    if runner.cancelled():
        return 0  # a stop signal ends dev normally, whatever startup was doing
    return runner.result()
