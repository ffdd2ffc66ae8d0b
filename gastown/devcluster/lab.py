"""The test lab: a real Kubernetes control plane on 127.0.0.1, started in seconds.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as child
processes of whoever starts the lab (a pytest session, ``gastown-operator dev``, a
benchmark). Nothing is faked at the API: admission (webhooks, Pod Security), RBAC,
resourceVersions, watches, bookmarks, 410s and garbage collection are the real
thing. Only the kubelet and the container runtime are missing; kwok stands in for
them by playing stages (see ``kwok-stages.yaml``) on a fake node.

Every start makes a fresh PKI and data directory and picks free ports, so two labs
can run side by side. Children get SIGKILL if the starting process dies (Linux
PR_SET_PDEATHSIG), so a killed test run leaves no apiserver behind. Each child runs
in a session of its own: a terminal's Ctrl-C (SIGINT to the whole foreground process
group) or hangup reaches only the process that started the lab, which then stops the
lab in order (dependents first) instead of etcd and the apiserver dying at once under
a client that is still talking to them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml

from gastown.devcluster import binaries, pki, processes
from gastown.devcluster.network import GATEWAY
from gastown.devcluster.pdeathsig import die_with_parent

STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
FAKE_NODE = "kwok-node-0"


class LabError(RuntimeError):
    """A lab component failed to start or stopped unexpectedly; the message has its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Child:
    """One lab process and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL), and SIGKILL after ``timeout``; returns once it has exited.

        The process stays known until it has exited, so :meth:`kill_now` still reaches
        it while this waits.
        """
        proc = self.proc
        if proc is None:
            return
        await processes.terminate(proc, timeout=timeout, first=signal.SIGKILL if kill else signal.SIGTERM)
        if self.proc is proc:
            self.proc = None

    def kill_now(self) -> None:
        """SIGKILL at once, without waiting (the caller's :meth:`stop` reaps it)."""
        processes.kill_now(self.proc)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Lab:
    """A running control plane. Use ``async with Lab.start() as lab`` or start()/stop()."""

    bin_dir: Path
    workdir: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    with_kwok: bool = True
    # Set up for a real node (gastown.devcluster.node): the apiserver also serves on the
    # Pod bridge's gateway, routes to webhook Services by their endpoints and holds a
    # client certificate for the kubelet; the node lifecycle controller runs.
    real_node: bool = False
    _children: dict[str, _Child] = field(default_factory=dict)
    _owns_workdir: bool = False

    # -- paths -------------------------------------------------------------------
    @property
    def server(self) -> str:
        """The apiserver URL."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """An admin (system:masters) kubeconfig for this lab."""
        return self.workdir / "admin.kubeconfig"

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def process_ids(self) -> dict[str, int]:
        """The pid of each running lab process by name (for benchmarks' CPU accounting)."""
        return {
            name: child.proc.pid
            for name, child in self._children.items()
            if child.proc is not None and child.proc.returncode is None
        }

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        *,
        workdir: Path | None = None,
        bin_dir: Path | None = None,
        with_kwok: bool = True,
        real_node: bool = False,
    ) -> Lab:
        """Start a fresh lab and return when the apiserver is ready and the fake node is up.

        ``real_node=True`` prepares the lab for :class:`gastown.devcluster.node.RealNode`
        (see ``real_node`` on the class); combine it with ``with_kwok=False``.
        """
        lab = cls.create(workdir=workdir, bin_dir=bin_dir, with_kwok=with_kwok, real_node=real_node)
        try:
            await lab.boot()
        except BaseException:
            await lab.stop()
            raise
        return lab

    @classmethod
    def create(
        cls,
        *,
        workdir: Path | None = None,
        bin_dir: Path | None = None,
        with_kwok: bool = True,
        real_node: bool = False,
    ) -> Lab:
        """A lab not started yet: the caller holds it before :meth:`boot`, so it can stop
        (or :meth:`kill_now`) whatever part of it is already running if booting is
        interrupted, e.g. by Ctrl-C."""
        owns = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="gastown-lab-"))
        return cls(
            bin_dir=bin_dir or binaries.bin_dir(),
            workdir=workdir,
            with_kwok=with_kwok,
            real_node=real_node,
            _owns_workdir=owns,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
    """Dependents first: nothing is left talking to a component that is already gone."""

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop every process in :data:`STOP_ORDER`, each SIGKILLed after ``grace`` s; remove files."""
        for name in self.STOP_ORDER:
            child = self._children.get(name)
            if child is not None:
                await child.stop(timeout=grace)
                self._children.pop(name, None)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill_now(self) -> None:
        """SIGKILL every lab process at once (a second Ctrl-C); a running :meth:`stop` then ends fast."""
        for child in self._children.values():
            child.kill_now()

    async def restart_apiserver(self, *, down_for: float = 0.0) -> None:
        """Kill kube-apiserver (SIGKILL, like a crash), wait, and start it on the same port."""
        child = self._children["kube-apiserver"]
        await child.stop(kill=True)
        if down_for:
            await asyncio.sleep(down_for)
        await child.start()
        await self._wait_apiserver_ready(child)

    async def boot(self) -> None:
        """Start etcd, the apiserver, the controllers and kwok; return when all are ready."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        etcd = self._child("etcd", self._etcd_argv())
        await etcd.start()
        await self._wait_http(etcd, f"http://127.0.0.1:{self.etcd_port}/health", ssl_context=None)
        apiserver = self._child("kube-apiserver", self._apiserver_argv())
        await apiserver.start()
        await self._wait_apiserver_ready(apiserver)
        for name, argv in (
            ("kube-controller-manager", self._controller_manager_argv()),
            ("kube-scheduler", self._scheduler_argv()),
        ):
            await self._child(name, argv).start()
        if self.with_kwok:
            await self.kubectl("apply", "-f", "-", input=yaml.safe_dump(_fake_node()))
            await self._child("kwok", self._kwok_argv()).start()
            await self._wait_node_ready()
        for child in self._children.values():
            if not child.alive():
                raise LabError(f"{child.name} exited during start:\n{child.tail()}")

    def _child(self, name: str, argv: list[str]) -> _Child:
        child = _Child(name, argv, self.logs_dir / f"{name}.log")
        self._children[name] = child
        return child

    # -- PKI and config files ----------------------------------------------------
    def _write_pki(self) -> None:
        ca = pki.make_ca()
        pki.write(ca, self.pki_dir, "ca")
        serving = pki.issue(
            ca,
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.96.0.1", *((GATEWAY,) if self.real_node else ())),
            server=True,
        )
        pki.write(serving, self.pki_dir, "apiserver")
        # The apiserver's identity towards kubelets (kubectl logs, exec, attach).
        kubelet_client = pki.issue(
            ca, "kube-apiserver-kubelet-client", organization="system:masters", client=True
        )
        pki.write(kubelet_client, self.pki_dir, "apiserver-kubelet-client")
        admin = pki.issue(ca, "lab-admin", organization="system:masters", client=True)
        pki.write(admin, self.pki_dir, "admin")
        pki.write(pki.service_account_keys(), self.pki_dir, "service-account")
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig_dict(admin)))
        self.kubeconfig.chmod(0o600)
        (self.workdir / "scheduler.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.kubeconfig),
                        "qps": 1000,
                        "burst": 2000,
                    },
                    "leaderElection": {"leaderElect": False},
                }
            )
        )

    def _kubeconfig_dict(self, user: pki.KeyPair) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "gastown-lab",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.ca_file.read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": "lab-admin",
                    "user": {
                        "client-certificate-data": _b64(user.cert_pem),
                        "client-key-data": _b64(user.key_pem),
                    },
                }
            ],
            "contexts": [{"name": "gastown-lab", "context": {"cluster": "gastown-lab", "user": "lab-admin"}}],
            "current-context": "gastown-lab",
        }

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            self._bin("etcd"),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # a lab's data is thrown away; fsync only slows it
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        p = self.pki_dir
        if self.real_node:
            node_flags = [
                # Pods reach the apiserver on the bridge gateway (no kube-proxy for the
                # kubernetes Service); 0.0.0.0 because the bridge may come after the apiserver.
                "--bind-address=0.0.0.0",
                f"--advertise-address={GATEWAY}",
                # No kube-proxy either for webhook Services: call their endpoints directly.
                "--enable-aggregator-routing=true",
                "--kubelet-preferred-address-types=Hostname,InternalIP",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
                "DefaultTolerationSeconds,ResourceQuota,PodSecurity,MutatingAdmissionWebhook,"
                "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,TaintNodesByCondition",
            ]
        else:
            node_flags = [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
                "DefaultTolerationSeconds,ResourceQuota,PodSecurity,MutatingAdmissionWebhook,"
                "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
                # The node lifecycle controller is off (no kubelets), so nothing would ever
                # lift the not-ready taint this plugin puts on new nodes.
                "--disable-admission-plugins=TaintNodesByCondition",
            ]
        return [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            *node_flags,
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-key-file={p / 'service-account.crt'}",
            f"--service-account-signing-key-file={p / 'service-account.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            # A lab on two cores serves one operator under test: queueing by flow
            # (API Priority and Fairness) would measure the lab, not the operator.
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=3000",
            "--max-mutating-requests-inflight=1500",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_argv(self) -> list[str]:
        p = self.pki_dir
        if self.real_node:
            # A real kubelet: node lifecycle marks a silent node (and its Pods) NotReady,
            # after 20 s rather than the default 50 s so a lost node shows quickly.
            node_flags = [
                "--controllers=*,-nodeipam,-bootstrapsigner,-tokencleaner",
                "--node-monitor-period=2s",
                "--node-monitor-grace-period=20s",
            ]
        else:
            # No kubelets: node lifecycle would taint the fake node NotReady and evict.
            node_flags = ["--controllers=*,-nodelifecycle,-nodeipam,-bootstrapsigner,-tokencleaner"]
        return [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            *node_flags,
            f"--service-account-private-key-file={p / 'service-account.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--v=1",
        ]

    def _scheduler_argv(self) -> list[str]:
        return [
            self._bin("kube-scheduler"),
            f"--config={self.workdir / 'scheduler.yaml'}",
            "--secure-port=0",
            "--v=1",
        ]

    def _kwok_argv(self) -> list[str]:
        return [
            self._bin("kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={STAGES_FILE}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=10.0.0.1",
            "--cidr=10.244.0.0/16",
        ]

    # -- readiness -----------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """TLS to the apiserver as the lab admin."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    async def _wait_http(
        self, child: _Child, url: str, *, ssl_context: ssl.SSLContext | None, timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if not child.alive():
                    raise LabError(f"{child.name} exited while starting:\n{child.tail()}")
                try:
                    async with session.get(
                        url, ssl=ssl_context or False, timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}: {(await resp.text())[-300:]}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise LabError(f"{child.name} not ready after {timeout:.0f}s ({last}):\n{child.tail()}")

    async def _wait_apiserver_ready(self, child: _Child) -> None:
        await self._wait_http(child, f"{self.server}/readyz", ssl_context=self.ssl_context())

    async def _wait_node_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc, out, _ = await self.kubectl(
                "get",
                "node",
                FAKE_NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            if rc == 0 and out.strip() == "True":
                return
            await asyncio.sleep(0.2)
        raise LabError(f"kwok did not make {FAKE_NODE} Ready:\n{self._children['kwok'].tail()}")

    # -- conveniences ----------------------------------------------------------------
    async def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> tuple[int, str, str]:
        """Run the lab's kubectl against this lab; returns (rc, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            str(self.kubectl_path),
            f"--kubeconfig={self.kubeconfig}",
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
        rc = proc.returncode if proc.returncode is not None else -1
        if check and rc != 0:
            raise LabError(f"kubectl {' '.join(args)} failed ({rc}): {err.decode(errors='replace')}")
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def env(self) -> dict[str, str]:
        """Environment for child processes that should talk to this lab."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fake_node() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": FAKE_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": FAKE_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {},
    }
