"""What every benchmark shares: a lab, the CRD, the operator as a separate process,
a lightweight raw watch for client-side timestamps, percentiles and the JSON result.

The operator runs as its own process (``gastown-operator run``) exactly as users run
it, so its RSS and CPU are its own and the benchmark client does not share its event
loop. Timestamps are taken where a user would see them: on watch events arriving at
the client, not inside the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gastown.devcluster import dispatch_policy
from gastown.devcluster.lab import Lab, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CRD_DIR = ROOT / "crds"
POLECATS_PATH = "/apis/gastown.gastown.io/v1alpha1"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of durations given in seconds, reported in milliseconds."""
    if not values_s:
        return {}
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Print the figures and write ``bench/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    payload |= {"machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"== {name}")
    print(json.dumps(result, indent=2))
    return path


async def install_crd(lab: Lab) -> None:
    """Apply the generated CRD and wait until it is Established (polled: `kubectl wait` fails
    outright when it reads the CRD before the apiserver has given it any condition)."""
    await lab.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    for _ in range(600):
        rc, out, _ = await lab.kubectl(
            "get",
            "crd/polecats.gastown.gastown.io",
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            check=False,
        )
        if rc == 0 and out.strip() == "True":
            # As the chart installs it: the dispatch freeze is an admission policy.
            await dispatch_policy.install(lab)
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the Polecat CRD was not Established within 60 s")


class Api:
    """A thin raw-JSON client to the lab (no model deserialization: the bench must stay light)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.session = aiohttp.ClientSession(
            base_url=lab.server,
            connector=aiohttp.TCPConnector(ssl=lab.ssl_context(), limit=256),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Content-Type": kw.pop("content_type", "application/json")}
        async with self.session.request(
            method, path, data=json.dumps(body) if body is not None else None, headers=headers, **kw
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {text[:300]}")
            return json.loads(text) if text else None

    async def watch(
        self, path: str, resource_version: str, on_event: Callable[[str, dict[str, Any], float], bool]
    ) -> None:
        """Stream a watch and call ``on_event(type, obj, arrival)`` until it returns True.

        The apiserver closes a watch whose client falls behind a burst (this one shares two
        cores with the apiserver and the operator), so a closed stream is reopened from the
        last resourceVersion seen: the watch cache replays what was missed and no event is
        lost. An expired resourceVersion (410) would lose events, so it fails the run.
        """
        while True:
            params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true"}
            async with self.session.get(path, params=params) as resp:
                resp.raise_for_status()
                async for line in resp.content:
                    arrival = time.monotonic()
                    event = orjson.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise RuntimeError(f"watch {path} failed: {obj.get('message')}")
                    resource_version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK" and on_event(kind, obj, arrival):
                        return

    async def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        await self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
        for _ in range(200):  # pods need the namespace's default ServiceAccount
            sas = await self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts")
            if any(sa["metadata"]["name"] == "default" for sa in sas["items"]):
                return
            await asyncio.sleep(0.05)


async def namespace_with_watches(
    api: Api,
    ns: str,
    on_polecat: Callable[[str, dict[str, Any], float], bool],
    on_pod: Callable[[str, dict[str, Any], float], bool],
) -> list[asyncio.Task[None]]:
    """A fresh restricted namespace with a Polecat watch and a Pod watch open on it.

    Both watches start from a list's resourceVersion, so no event of the burst that follows
    is missed; the caller cancels the returned tasks.
    """
    await api.create_namespace(ns, {"pod-security.kubernetes.io/enforce": "restricted"})
    for _ in range(300):  # a fresh CRD answers 429 "storage is (re)initializing" for a moment
        try:
            pc_list = await api.request("GET", f"{POLECATS_PATH}/namespaces/{ns}/polecats")
            break
        except RuntimeError as exc:
            if "HTTP 429" not in str(exc):
                raise
            await asyncio.sleep(0.1)
    pod_list = await api.request("GET", f"/api/v1/namespaces/{ns}/pods")
    tasks = [
        asyncio.create_task(
            api.watch(
                f"{POLECATS_PATH}/namespaces/{ns}/polecats",
                pc_list["metadata"]["resourceVersion"],
                on_polecat,
            )
        ),
        asyncio.create_task(
            api.watch(f"/api/v1/namespaces/{ns}/pods", pod_list["metadata"]["resourceVersion"], on_pod)
        ),
    ]
    await asyncio.sleep(0.3)  # both watches open before the burst
    return tasks


def kubernetes_polecat(name: str, index: int) -> dict[str, Any]:
    """A valid kubernetes-mode Polecat, as a user would write it."""
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {
            "rig": "bench",
            "beadID": f"gt-b{index:05d}",
            "task": "Benchmark task: nothing to do",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": "git@git.example.com:acme/bench.git",
                "gitSecretRef": {"name": "git-ssh"},
                "knownHostsConfigMapRef": {"name": "git-known-hosts"},
                "agentSecretRef": {"name": "agent", "key": "api-key"},
            },
        },
    }


async def create_all(api: Api, path: str, objects: list[dict[str, Any]], concurrency: int = 64) -> None:
    """POST every object with bounded concurrency (a burst, as from many kubectl users)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(obj: dict[str, Any]) -> None:
        async with gate:
            await api.request("POST", path, obj)

    await asyncio.gather(*(one(o) for o in objects))


# As the Helm chart runs it: no GET of referenced Secrets/ConfigMaps before each Pod (the
# chart grants that RBAC only with podDefaults.checkReferences), and the bench makes none.
CHART_DEFAULT_ENV = {"GASTOWN_POD_CHECK_REFERENCES": "false"}


def cpu_seconds_of(pid: int) -> float:
    """User+system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib_of(pid: int) -> float:
    """Resident set size of a process, MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def lab_cpu_seconds(lab: Lab) -> dict[str, float]:
    """CPU seconds used so far by each lab process (apiserver, etcd, scheduler, kwok...)."""
    return {name: cpu_seconds_of(pid) for name, pid in lab.process_ids().items()}


@dataclass
class OperatorProcess:
    """``gastown-operator run`` against the lab, in its own process, configured as the chart does."""

    lab: Lab
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=lambda: dict(CHART_DEFAULT_ENV))
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    log_path: Path | None = None
    cwd: Path | None = None
    """Working directory (``python -m`` puts it first on sys.path: a source tree to run)."""

    async def start(self) -> None:
        self.log_path = self.lab.workdir / "logs" / f"operator-{self.health_port}.log"
        log = self.log_path.open("ab")
        env = {**os.environ, **self.extra_env}
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gastown.cli.operator",
            "run",
            f"--kubeconfig={self.lab.kubeconfig}",
            "--no-leader-elect",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            "--log-format=json",
            "--log-level=WARNING",
            *self.extra_args,
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.cwd,
        )
        log.close()

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until /readyz answers 200."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RuntimeError(f"operator exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{self.health_port}/readyz") as resp:
                        if resp.status == 200:
                            return time.monotonic() - self.started_at
                await asyncio.sleep(0.02)
        raise RuntimeError(f"operator not ready after {timeout}s: {self.tail()}")

    def rss_mib(self) -> float:
        """Resident set size of the operator process, MiB."""
        assert self.proc is not None
        return rss_mib_of(self.proc.pid)

    def cpu_seconds(self) -> float:
        """User+system CPU time the operator has used so far."""
        assert self.proc is not None
        return cpu_seconds_of(self.proc.pid)

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp,
        ):
            return await resp.text()

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def lab_with_crd() -> AsyncIterator[Lab]:
    """A fresh lab with the Polecat CRD installed."""
    lab = await Lab.start()
    try:
        await install_crd(lab)
        yield lab
    finally:
        await lab.stop()
