"""The operator as users run it: ``gastown-operator run`` in a process of its own.

Fault tests need what an in-process manager cannot give: a SIGKILL that really ends
everything at an arbitrary instruction (no ``finally``, no lease release, no Event
flush), a SIGSTOP that freezes the whole process (a long GC pause, a frozen VM), and
logs written by the real logging setup to a file the test can grep afterwards.

Mirrors ``bench.harness.OperatorProcess`` (which is tied to the benchmarks' fixed
flags) with what the fault tests need on top: leader election, an identity, a log
level, kill/pause/resume, restarts appending to the same log, metrics parsed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gastown.devcluster.lab import Lab, free_port


@dataclass
class OperatorProcess:
    """One operator replica against the lab, watching ``namespace`` only.

    ``namespace`` is also the operator namespace (its Lease lives there), so each
    test's replicas compete only with each other. The webhook is off unless
    ``webhook_cert_dir`` is given.
    """

    lab: Lab
    namespace: str
    log_dir: Path
    identity: str = "replica"
    leader_elect: bool = False
    log_level: str = "INFO"
    webhook_cert_dir: Path | None = None
    """Serve the admission webhook with the pair in this directory (off when None)."""
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        """Every run of this replica appends its JSON log lines here."""
        return self.log_dir / f"operator-{self.identity}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gastown.cli.operator",
            "run",
            f"--kubeconfig={self.lab.kubeconfig}",
            "--leader-elect" if self.leader_elect else "--no-leader-elect",
            f"--identity={self.identity}",
            f"--namespace={self.namespace}",
            f"--operator-namespace={self.namespace}",
            *(
                [
                    "--webhook",
                    f"--webhook-port={self.webhook_port}",
                    f"--webhook-cert-dir={self.webhook_cert_dir}",
                ]
                if self.webhook_cert_dir is not None
                else ["--no-webhook"]
            ),
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            "--log-format=json",
            f"--log-level={self.log_level}",
            *self.extra_args,
        ]

    async def start(self) -> None:
        """Start (or restart, after a kill) the process; returns at once."""
        assert not self.running, "already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GASTOWN_") and k != "KUBECONFIG"}
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        self.starts += 1

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz answers 200 (caches synced, or standing by for the Lease)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if not self.running:
                    raise AssertionError(f"operator {self.identity} exited:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{self.health_port}/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"operator {self.identity} not ready after {timeout}s:\n{self.tail()}")

    async def kill(self) -> None:
        """SIGKILL: a crash, an OOM kill, a node lost. Nothing of ours runs after it."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-flight (its sockets stay open)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s); a no-op when not running."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The /metrics samples: (sample name, sorted labels) -> value."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=aiohttp.ClientTimeout(total=10)
            ) as resp,
        ):
            text = await resp.text()
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in (await self.metrics()).items()
            if sample == name and wanted <= set(sample_labels)
        )

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines of every run so far (anything else, e.g. a traceback, skipped)."""
        records = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def entered(self, phase: str) -> collections.Counter[str]:
        """How often each Polecat key was logged moving into ``phase`` (status written).

        The reconciler logs every phase transition it wrote; a second move into
        Dispatching for one key would be a second dispatch.
        """
        return collections.Counter(
            str(r["key"])
            for r in self.log_records()
            if r.get("phase") == phase and str(r.get("message", "")).startswith("phase ")
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
