"""A real node for a lab: containerd, runc, a CNI bridge and a kubelet, on this machine.

kwok plays the kubelet for scale; this is the kubelet for behaviour. Containers
really run (restricted, as the agent Pods ask), the runner really clones and pushes,
the kernel really OOM-kills, the kubelet really enforces ``activeDeadlineSeconds``
and sends SIGTERM on delete.

The node joins a lab started with ``Lab.start(real_node=True)``: no kwok, the node
lifecycle controller on (a stopped kubelet shows as a NotReady node and NotReady
Pods), the apiserver also serving on the bridge gateway (Pods reach it there:
there is no kube-proxy, so the ``kubernetes`` Service's ClusterIP goes nowhere), with
endpoint routing for webhook Services, and a client certificate for ``kubectl
logs/exec``. The traps this works around (each found on a machine like this one):

* containerd runs with its own config, root, state and socket (Debian's service
  never starts), ``restrict_oom_score_adj`` (this VM lacks CAP_SYS_RESOURCE) and
  cgroupfs; the kubelet with ``failCgroupV1: false`` and ``failSwapOn: false``.
* The node's name is the machine's hostname (the apiserver reaches the kubelet by it).
* The node authenticates with a lab-CA certificate (``system:node:<name>``,
  ``system:nodes``), bound to the ``system:node`` ClusterRole (the lab has no Node
  authorizer).
* The CNI bridge :data:`BRIDGE` is made before the first Pod so a git host can
  listen on its gateway :data:`GATEWAY`; those addresses exist only on this machine.
* Some host paths are shared whatever the config says, so only one real node runs
  per machine. Teardown goes Pods first (the kubelet unmounts their volumes and runs
  CNI DEL), then the kubelet, the containers, containerd, and whatever is still
  mounted under the work directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gastown.devcluster import node_binaries, pki
from gastown.devcluster.lab import Lab, LabError, _Child, free_port
from gastown.devcluster.network import BRIDGE, GATEWAY, POD_SUBNET, PREFIX_LENGTH

NODE_ROLE_BINDING = "gastown-lab-node"
_K8S_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin keeps its images in


class NodeError(LabError):
    """The real node failed to start or stop; the message has the failing log's tail."""


async def _run(*argv: str, check: bool = True, timeout: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    rc = proc.returncode if proc.returncode is not None else -1
    if check and rc != 0:
        raise NodeError(f"{' '.join(argv)} failed ({rc}): {text.strip()[-1500:]}")
    return rc, text


async def ensure_bridge() -> None:
    """Make the Pods' bridge with the gateway address, if it is not there yet.

    The CNI bridge plugin would make it at the first Pod; making it first lets a host
    service (the tests' git sshd) listen on :data:`GATEWAY` before any Pod exists.
    """
    rc, _ = await _run("ip", "link", "show", BRIDGE, check=False)
    if rc != 0:
        await _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _, addrs = await _run("ip", "-4", "addr", "show", "dev", BRIDGE)
    if f"inet {GATEWAY}/" not in addrs:
        await _run("ip", "addr", "add", f"{GATEWAY}/{PREFIX_LENGTH}", "dev", BRIDGE)
    await _run("ip", "link", "set", BRIDGE, "up")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root``, deepest first (so they can be unmounted in order)."""
    prefix = str(root)
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


@dataclass
class RealNode:
    """containerd + kubelet registered with ``lab`` as node :attr:`name`."""

    lab: Lab
    workdir: Path
    binaries: node_binaries.NodeBinaries
    name: str = field(default_factory=socket.gethostname)
    kubelet_port: int = field(default_factory=free_port)
    healthz_port: int = field(default_factory=free_port)
    _containerd: _Child | None = None
    _kubelet: _Child | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # -- paths -----------------------------------------------------------------------
    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    async def start(cls, lab: Lab, *, workdir: Path | None = None, images: tuple[Path, ...] = ()) -> RealNode:
        """Start containerd and the kubelet against ``lab``; return when the Node is Ready.

        ``images`` are OCI archives imported into the node's containerd (Pods use them
        with ``imagePullPolicy: Never``); the pause image always is.
        """
        if not lab.real_node:
            raise NodeError(
                "the lab was not started for a real node: Lab.start(real_node=True, with_kwok=False)"
            )
        reason = node_binaries.why_not_available()
        if reason is not None:
            raise NodeError(reason)
        built = node_binaries.find()
        assert built is not None
        node = cls(
            lab=lab,
            workdir=workdir or Path(tempfile.mkdtemp(prefix="gastown-node-")),
            binaries=built,
        )
        try:
            await node._boot(images)
        except BaseException:
            await node.stop()
            raise
        return node

    async def _boot(self, images: tuple[Path, ...]) -> None:
        began = time.monotonic()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        await _check_hostname(self.name)
        await ensure_bridge()
        await asyncio.to_thread(self._write_files)
        self._containerd = _Child(
            "containerd",
            ["containerd", "--config", str(self.workdir / "containerd.toml")],
            self.logs_dir / "containerd.log",
        )
        await self._containerd.start()
        await self._wait_socket()
        self.timings["containerd"] = time.monotonic() - began
        for archive in (self.binaries.pause_archive, *images):
            await self.import_image(archive)
        self.timings["images"] = time.monotonic() - began
        await self._authorize()
        self._kubelet = _Child("kubelet", self._kubelet_argv(), self.logs_dir / "kubelet.log")
        await self._kubelet.start()
        await self._wait_ready()
        self.timings["ready"] = time.monotonic() - began

    async def import_image(self, archive: Path) -> None:
        """Import an OCI (or docker) archive into the CRI plugin's image store."""
        await self.ctr("images", "import", "--no-unpack=false", str(archive))

    async def ctr(self, *args: str, check: bool = True) -> str:
        """containerd's own CLI against this node's containerd, in the CRI namespace."""
        _, out = await _run(
            "ctr", "--address", str(self.containerd_socket), "-n", _K8S_NAMESPACE, *args, check=check
        )
        return out

    async def stop_kubelet(self) -> None:
        """Stop the kubelet only (its containers keep running): the node is lost to the cluster."""
        if self._kubelet is not None:
            await self._kubelet.stop()

    async def start_kubelet(self) -> None:
        """Start the kubelet again after :meth:`stop_kubelet`."""
        if self._kubelet is not None and not self._kubelet.alive():
            await self._kubelet.start()
            await self._wait_ready()

    async def stop(self) -> None:
        """Tear everything down: Pods, kubelet, containers, containerd, mounts, files."""
        if self._kubelet is not None and self._kubelet.alive():
            await self._delete_all_pods()
        if self._kubelet is not None:
            await self._kubelet.stop()
        if self._containerd is not None and self._containerd.alive():
            await self._kill_containers()
        if self._containerd is not None:
            await self._containerd.stop()
        for point in _mounts_under(self.workdir):
            await _run("umount", "-l", point, check=False)
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    # -- steps ---------------------------------------------------------------------------
    async def _wait_socket(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assert self._containerd is not None
        while time.monotonic() < deadline:
            if not self._containerd.alive():
                raise NodeError(f"containerd exited while starting:\n{self._containerd.tail()}")
            if self.containerd_socket.exists():
                rc, _ = await _run("ctr", "--address", str(self.containerd_socket), "version", check=False)
                if rc == 0:
                    return
            await asyncio.sleep(0.1)
        raise NodeError(f"containerd did not answer on {self.containerd_socket}:\n{self._containerd.tail()}")

    async def _authorize(self) -> None:
        """Bind the node's user to the ``system:node`` ClusterRole (no Node authorizer here)."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NODE_ROLE_BINDING},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:node",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{self.name}"}
            ],
        }
        await self.lab.kubectl("apply", "-f", "-", input=json.dumps(binding))

    async def _wait_ready(self, timeout: float = 60.0) -> None:
        assert self._kubelet is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._kubelet.alive():
                raise NodeError(f"the kubelet exited while starting:\n{self._kubelet.tail(40)}")
            if await self.ready():
                return
            await asyncio.sleep(0.2)
        raise NodeError(f"node {self.name} not Ready after {timeout:.0f}s:\n{self._kubelet.tail(40)}")

    async def ready(self) -> bool:
        """Whether the Node object says Ready=True right now."""
        rc, out, _ = await self.lab.kubectl(
            "get",
            "node",
            self.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return rc == 0 and out.strip() == "True"

    async def _delete_all_pods(self) -> None:
        """Delete every Pod on this node and wait (bounded) for the kubelet to finish them."""
        selector = f"spec.nodeName={self.name}"
        await self.lab.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            "--field-selector",
            selector,
            "--wait=false",
            "--grace-period=5",
            check=False,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rc, out, _ = await self.lab.kubectl(
                "get", "pods", "--all-namespaces", "--field-selector", selector, "-o", "name", check=False
            )
            if rc != 0 or not out.strip():
                return
            await asyncio.sleep(0.5)

    async def _kill_containers(self) -> None:
        """SIGKILL whatever containers are left (the kubelet is already gone) and remove them."""
        out = await self.ctr("tasks", "list", "-q", check=False)
        for task in out.split():
            await self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        for task in out.split():
            for _ in range(50):
                rc, _ = await _run(
                    "ctr",
                    "--address",
                    str(self.containerd_socket),
                    "-n",
                    _K8S_NAMESPACE,
                    "tasks",
                    "delete",
                    task,
                    check=False,
                )
                if rc == 0:
                    break
                await asyncio.sleep(0.1)
        out = await self.ctr("containers", "list", "-q", check=False)
        for container in out.split():
            await self.ctr("containers", "delete", container, check=False)

    # -- configuration files ---------------------------------------------------------------
    def _write_files(self) -> None:
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-gastown-lab.conflist").write_text(json.dumps(self._cni_config(cni), indent=2))
        (self.workdir / "containerd.toml").write_text(self._containerd_config(cni))
        ca = pki.KeyPair(self.lab.ca_file.read_bytes(), (self.lab.pki_dir / "ca.key").read_bytes())
        creds = pki.issue(ca, f"system:node:{self.name}", organization="system:nodes", client=True)
        pki.write(creds, self.workdir / "pki", "node")
        kubeconfig = self.lab._kubeconfig_dict(creds)
        (self.workdir / "kubelet.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (self.workdir / "kubelet.kubeconfig").chmod(0o600)
        (self.workdir / "kubelet.yaml").write_text(yaml.safe_dump(self._kubelet_config()))
        self.kubelet_root.mkdir(exist_ok=True)

    def _cni_config(self, cni: Path) -> dict[str, Any]:
        return {
            "cniVersion": "0.4.0",
            "name": "gastown-lab",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(cni / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }

    def _containerd_config(self, cni: Path) -> str:
        c = self.workdir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{c / "root"}"',
                f'state = "{c / "state"}"',
                "[grpc]",
                f'  address = "{self.containerd_socket}"',
                "[ttrpc]",
                f'  address = "{self.containerd_socket}.ttrpc"',
                '[plugins."io.containerd.internal.v1.opt"]',
                f'  path = "{c / "opt"}"',
                f"[{cri}]",
                f'  sandbox_image = "{node_binaries.PAUSE_IMAGE}"',
                # This VM's root lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails otherwise.
                "  restrict_oom_score_adj = true",
                "  enable_selinux = false",
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.containerd.runtimes.runc.options]",
                "  SystemdCgroup = false",
                f"[{cri}.cni]",
                f'  bin_dir = "{node_binaries.CNI_BIN_DIR}"',
                f'  conf_dir = "{cni / "net.d"}"',
                "",
            ]
        )

    def _kubelet_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.lab.ca_file)},
            },
            # Only the lab's CA-signed clients (the apiserver, for logs and exec) get in.
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",  # systemd is not PID 1 here
            "failCgroupV1": False,  # this machine has cgroup v1 controllers
            "failSwapOn": False,
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            # Images come from archives; nothing could pull one back after a GC.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "nodeStatusUpdateFrequency": "4s",
            "nodeStatusReportFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "registerNode": True,
            "maxPods": 60,
        }

    def _kubelet_argv(self) -> list[str]:
        return [
            str(self.binaries.kubelet),
            f"--config={self.workdir / 'kubelet.yaml'}",
            f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.workdir / 'kubelet-pki'}",
            f"--hostname-override={self.name}",
            "--v=1",
        ]

    def tail(self, lines: int = 40) -> str:
        """The last lines of containerd's and the kubelet's logs (for failure messages)."""
        parts = []
        for child in (self._containerd, self._kubelet):
            if child is not None:
                parts.append(f"--- {child.name}\n{child.tail(lines)}")
        return "\n".join(parts)


async def _check_hostname(name: str) -> None:
    """The apiserver reaches the kubelet by the node's name: it must resolve here."""
    try:
        await asyncio.get_running_loop().getaddrinfo(name, None)
    except OSError as exc:
        raise NodeError(
            f"this machine's hostname {name!r} does not resolve ({exc}): the apiserver reaches the kubelet "
            f"by it; add it to /etc/hosts (127.0.0.1 {name})"
        ) from None
