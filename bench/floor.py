"""The floor: what a burst of N Polecats costs the cluster with no operator at all.

The operator's burst figures mean little on their own on a shared 2-core VM (they move
by 10-50 % with whatever else runs). What the operator is accountable for is what it
adds on top of the work the user asked for: N Polecats and N Pods. So one lab runs
interleaved rounds (floor, operator, floor, operator, ...) and the operator's figures are
reported as ratios to the floor rounds of the same run.

* **floor round**: N Polecats POSTed with 64 in flight (as in the operator round), and
  as each POST returns, the Pod the operator would build for it (``build_pod`` with the
  chart's defaults: same template, owner reference, labels, security context), POSTed
  by 32 workers (the operator's ``--workers``). No status writes, no Events, no watch
  hop: the cheapest possible controller, in the bench process itself.
* **operator round**: the same N Polecats, and ``gastown-operator run --workers=32`` (as
  the chart runs it) watching only this round's namespace creates the Pods; the chart's
  finalizer policy (a MutatingAdmissionPolicy) is bound to that namespace, as a Helm
  install has it, so finalizers cost the apiserver an admission step, not a write.

Both rounds use a fresh namespace labelled Pod Security ``restricted`` and are measured
the same way, by the bench's own watches: per Polecat, Polecat ADDED → its Pod ADDED
(CR→Pod); "all Pods" is first Polecat ADDED → last Pod ADDED. A round ends when it is
**settled**: every Pod Running (kwok), for the operator every Polecat Working as well,
and no more Polecat/Pod/Event requests reaching the apiserver (its
``apiserver_request_total``, polled every 0.25 s, unchanged for 1.5 s), so trailing
status writes and Events are in the bill. After each round its Pods are deleted (no
grace) so the next round's fit on the fake node; the Polecats stay. Per round, the
CPU seconds of every process up to the moment requests stopped, and the apiserver's
request counts by verb and resource (delta around the round) divided by N.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench import apiserver_profile
from bench.harness import (
    POLECATS_PATH,
    Api,
    OperatorProcess,
    cpu_seconds_of,
    install_crd,
    kubernetes_polecat,
    lab_cpu_seconds,
    namespace_with_watches,
    rss_mib_of,
    summary_ms,
    write_result,
)
from gastown.api.models import Polecat
from gastown.devcluster import finalizer_policy
from gastown.devcluster.lab import Lab
from gastown.executors.kubernetes.pod import build_pod
from gastown.settings import PodDefaults

GC_DISCOVERY_WAIT = 40.0
CREATES_IN_FLIGHT = 64
WORKERS = 32
# Resources whose requests make up a burst; a round is over when none arrive any more.
BURST_RESOURCES = frozenset({"polecats", "pods", "events", "bindings"})
QUIET_FOR = 1.5
POLL = 0.25

RequestKey = tuple[str, str, str]  # verb, resource, subresource


def parse_request_counts(text: str) -> dict[RequestKey, float]:
    """``apiserver_request_total`` from the apiserver's /metrics, summed over everything but
    verb, resource and subresource (codes, scopes, components, versions)."""
    counts: dict[RequestKey, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def count_delta(before: dict[RequestKey, float], after: dict[RequestKey, float]) -> dict[RequestKey, float]:
    """Requests made between two readings (keys that did not move are left out)."""
    out = {}
    for key, value in after.items():
        moved = value - before.get(key, 0.0)
        if moved > 0:
            out[key] = moved
    return out


def per_polecat(delta: dict[RequestKey, float], n: int) -> dict[str, float]:
    """Burst requests per Polecat, keyed ``VERB resource[/subresource]``, largest first."""
    rows = {
        f"{verb} {resource}{'/' + sub if sub else ''}": round(value / n, 3)
        for (verb, resource, sub), value in delta.items()
        if resource in BURST_RESOURCES
    }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]))


class RoundTimeline:
    """What the bench's watches saw during one round, keyed by Polecat name."""

    def __init__(self) -> None:
        self.polecat_added: dict[str, float] = {}
        self.polecat_phases: dict[str, dict[str, float]] = {}
        self.pod_added: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.polecat_events = 0
        # Per Polecat, the (phase, Ready reason) states its status went through, in order.
        self.states: dict[str, list[str]] = {}

    def on_polecat(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        name = obj["metadata"]["name"]
        self.polecat_events += 1
        if kind == "ADDED":
            self.polecat_added.setdefault(name, at)
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase:
            self.polecat_phases.setdefault(name, {}).setdefault(phase, at)
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            state = f"{phase}/{ready.get('reason', '')}"
            if not self.states.get(name) or self.states[name][-1] != state:
                self.states.setdefault(name, []).append(state)
        return False

    def status_paths(self, top: int = 4) -> dict[str, int]:
        """The commonest sequences of status states (each step one status write or more)."""
        paths = Counter(" → ".join(states) for states in self.states.values())
        return dict(paths.most_common(top))

    def on_pod(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        owner = (obj["metadata"].get("labels") or {}).get("gastown.gastown.io/polecat")
        if owner is None:
            return False
        if kind == "ADDED":
            self.pod_added.setdefault(owner, at)
        if (obj.get("status") or {}).get("phase") == "Running":
            self.pod_running.setdefault(owner, at)
        return False


@dataclass
class Round:
    kind: str  # "floor" or "operator"
    n: int
    figures: dict[str, Any] = field(default_factory=dict)


async def apiserver_counts(api: Api) -> dict[RequestKey, float]:
    async with api.session.get("/metrics") as resp:
        resp.raise_for_status()
        return parse_request_counts(await resp.text())


def _burst_total(counts: dict[RequestKey, float]) -> float:
    return sum(v for (_, resource, _), v in counts.items() if resource in BURST_RESOURCES)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _settle(
    api: Api, lab: Lab, extra_pids: dict[str, int], timeout: float
) -> tuple[dict[RequestKey, float], dict[str, float]]:
    """Wait until burst requests stop; the counts and CPU readings from when they last moved."""
    last_total = -1.0
    last_change = time.monotonic()
    deadline = last_change + timeout
    counts: dict[RequestKey, float] = {}
    cpu: dict[str, float] = {}
    while True:
        now_counts = await apiserver_counts(api)
        now_cpu = _cpu(lab, extra_pids)
        total = _burst_total(now_counts)
        if total != last_total:
            last_total, last_change, counts, cpu = total, time.monotonic(), now_counts, now_cpu
        elif time.monotonic() - last_change >= QUIET_FOR:
            return counts, cpu
        if time.monotonic() > deadline:
            raise TimeoutError("apiserver requests did not settle")
        await asyncio.sleep(POLL)


async def lab_state(lab: Lab) -> dict[str, float]:
    """What the cluster holds after a round: apiserver and etcd RSS, etcd's database size.

    For the scale note: what N stored Polecats (and their Pods, before they are freed) cost
    the control plane in memory and disk, beside the CPU the round's bill has.
    """
    pids = lab.process_ids()
    out = {f"{name}_rss_mib": rss_mib_of(pids[name]) for name in ("kube-apiserver", "etcd") if name in pids}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{lab.etcd_port}/metrics") as resp,
    ):
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name in ("etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes"):
            out[family.name.removeprefix("etcd_mvcc_").replace("_in_bytes", "_mib")] = round(
                family.samples[0].value / 2**20, 1
            )
    return out


def _cpu(lab: Lab, extra_pids: dict[str, int]) -> dict[str, float]:
    out = lab_cpu_seconds(lab)
    for name, pid in extra_pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_seconds_of(pid)
    return out


async def _namespace(api: Api, ns: str, timeline: RoundTimeline) -> list[asyncio.Task[None]]:
    return await namespace_with_watches(api, ns, timeline.on_polecat, timeline.on_pod)


async def _floor_creates(api: Api, ns: str, n: int) -> None:
    """N Polecats with 64 in flight; each Pod POSTed by one of 32 workers as its Polecat returns."""
    defaults = PodDefaults(check_references=False)
    polecats_path = f"{POLECATS_PATH}/namespaces/{ns}/polecats"
    pods_path = f"/api/v1/namespaces/{ns}/pods"
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

    async def create_polecat(i: int) -> None:
        async with gate:
            stored = await api.request("POST", polecats_path, kubernetes_polecat(f"pc-{i:05d}", i))
        queue.put_nowait(stored)

    async def pod_worker() -> None:
        while (stored := await queue.get()) is not None:
            await api.request("POST", pods_path, build_pod(Polecat.from_dict(stored), defaults))

    workers = [asyncio.create_task(pod_worker()) for _ in range(WORKERS)]
    await asyncio.gather(*(create_polecat(i) for i in range(n)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)


async def _operator_creates(api: Api, ns: str, n: int) -> None:
    gate = asyncio.Semaphore(CREATES_IN_FLIGHT)
    path = f"{POLECATS_PATH}/namespaces/{ns}/polecats"

    async def one(i: int) -> None:
        async with gate:
            await api.request("POST", path, kubernetes_polecat(f"pc-{i:05d}", i))

    await asyncio.gather(*(one(i) for i in range(n)))


async def run_round(
    lab: Lab,
    api: Api,
    kind: str,
    n: int,
    index: int,
    *,
    code: str | None = None,
    profile_seconds: int = 0,
    profile_dir: Path | None = None,
) -> Round:
    """One round (see the module doc); the operator, if any, lives only for this round.

    ``kind`` is "floor" or the name of an operator variant; ``code`` a source tree whose
    ``gastown`` package that operator runs (PYTHONPATH), e.g. an export of an earlier
    commit, so before and after are measured in the same run on the same lab.
    ``profile_seconds``: also take the apiserver's CPU profile over that long from the first
    create (see :mod:`bench.apiserver_profile`), written under ``profile_dir``.
    """
    ns = f"{kind}-{index}-{n}-{int(time.time())}"
    profiling: asyncio.Task[Path] | None = None
    timeline = RoundTimeline()
    operator: OperatorProcess | None = None
    if kind != "floor":
        operator = OperatorProcess(
            lab, extra_args=["--no-webhook", f"--workers={WORKERS}", f"--namespace={ns}"]
        )
        if code is not None:
            operator.cwd = Path(code)
            operator.extra_env["PYTHONPATH"] = code
    watches = await _namespace(api, ns, timeline)
    policy: list[dict[str, Any]] = []
    try:
        extra: dict[str, int] = {}
        if operator is not None:
            # As the chart installs it: the apiserver adds the finalizer, not an operator write.
            policy = await finalizer_policy.install(lab, namespaces=[ns], suffix=f"-{ns}")
            await operator.start()
            await operator.wait_ready()
            assert operator.proc is not None
            extra["operator"] = operator.proc.pid
        await asyncio.sleep(0.5)  # let the operator's first lists settle
        counts0, cpu0 = await apiserver_counts(api), _cpu(lab, extra)
        if profile_seconds:
            out = (profile_dir or Path(".")) / f"{ns}.pprof.gz"
            profiling = asyncio.create_task(apiserver_profile.capture(api, profile_seconds, out))
        t0 = time.monotonic()
        if operator is None:
            await _floor_creates(api, ns, n)
        else:
            await _operator_creates(api, ns, n)
        created = time.monotonic() - t0
        timeout = 120 + n / 10
        await _until(lambda: len(timeline.pod_added) >= n, timeout, f"{n} Pods")
        await _until(lambda: len(timeline.pod_running) >= n, timeout, f"{n} Pods Running")
        if operator is not None:
            await _until(
                lambda: sum("Working" in p for p in timeline.polecat_phases.values()) >= n,
                timeout,
                f"{n} Polecats Working",
            )
        counts1, cpu1 = await _settle(api, lab, extra, timeout)
        names = list(timeline.polecat_added)
        first = min(timeline.polecat_added.values())
        latencies = [timeline.pod_added[x] - timeline.polecat_added[x] for x in names]
        figures: dict[str, Any] = {
            "namespace": ns,
            "create_burst_s": round(created, 3),
            "all_pods_s": round(max(timeline.pod_added.values()) - first, 3),
            "all_pods_running_s": round(max(timeline.pod_running.values()) - first, 3),
            "cr_to_pod": summary_ms(latencies),
            "cpu_s": {k: round(v - cpu0.get(k, 0.0), 2) for k, v in cpu1.items()},
            "requests_per_polecat": per_polecat(count_delta(counts0, counts1), n),
            "polecat_watch_events_per_polecat": round(timeline.polecat_events / n, 2),
            "status_paths": timeline.status_paths(),
            "lab_after": await lab_state(lab),
        }
        if operator is not None:
            working = [p["Working"] for p in timeline.polecat_phases.values() if "Working" in p]
            figures["all_working_s"] = round(max(working) - first, 3)
            figures["operator_rss_mib"] = operator.rss_mib()
            figures["operator_metrics"] = _operator_metrics(await operator.metrics())
        if profiling is not None:
            path = await profiling
            figures["apiserver_profile"] = {
                "window_s": profile_seconds,
                "file": str(path),
                **apiserver_profile.summarize(await apiserver_profile.pprof_top(path)),
            }
        return Round(kind, n, figures)
    finally:
        if profiling is not None and not profiling.done():
            profiling.cancel()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        if operator is not None:
            await operator.stop()
        if policy:
            await finalizer_policy.uninstall(lab, policy, namespace=ns)
        await _free_node(api, ns)


async def _free_node(api: Api, ns: str) -> None:
    """Remove the round's Pods at once (no grace: kwok runs nothing): the fake node's memory
    holds about two rounds of 1,000 Pods, so later rounds' Pods would stay Unschedulable."""
    pods = f"/api/v1/namespaces/{ns}/pods"
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
    for _ in range(20):
        try:
            await api.request("DELETE", pods, options)
        except RuntimeError as exc:
            # Thousands of Pods outlast the apiserver's 60 s request timeout (HTTP 504);
            # what was deleted stays deleted, so ask again for the rest.
            if "HTTP 504" not in str(exc):
                raise
            continue
        break
    for _ in range(3000):
        listed = await api.request("GET", pods, params={"limit": "1"})
        if not listed["items"]:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the Pods of {ns} were not removed")


def _operator_metrics(text: str) -> dict[str, float]:
    """The operator's own tallies that explain its requests (Events sent/dropped, reconciles)."""
    wanted = {"gastown_events_sent", "gastown_events_dropped", "gastown_reconcile"}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                key = sample.name + (f"{{{label}}}" if label else "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def ratios(rounds: list[Round], variant: str = "operator") -> dict[str, Any]:
    """A variant's rounds against the floor rounds: mean against mean, and pair by pair."""
    floors = [r.figures for r in rounds if r.kind == "floor"]
    ops = [r.figures for r in rounds if r.kind == variant]

    def mean(rows: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
        return sum(get(r) for r in rows) / len(rows)

    metrics: dict[str, Callable[[dict[str, Any]], float]] = {
        "all_pods": lambda r: r["all_pods_s"],
        "cr_to_pod_p50": lambda r: r["cr_to_pod"]["p50_ms"],
        "cr_to_pod_p99": lambda r: r["cr_to_pod"]["p99_ms"],
        "apiserver_cpu": lambda r: r["cpu_s"]["kube-apiserver"],
        "etcd_cpu": lambda r: r["cpu_s"].get("etcd", 0.0),
        "all_pods_running": lambda r: r["all_pods_running_s"],
    }
    out: dict[str, Any] = {}
    for name, get in metrics.items():
        floor = mean(floors, get)
        out[name] = {
            "floor": round(floor, 3),
            "operator": round(mean(ops, get), 3),
            "ratio": round(mean(ops, get) / floor, 3) if floor else None,
            "ratio_per_pair": [
                round(get(o) / get(f), 3) if get(f) else None for f, o in zip(floors, ops, strict=False)
            ],
        }
    return out


TARGETS = {"all_pods": 1.15, "apiserver_cpu": 1.3, "cr_to_pod_p99": 1.2}


def profile_stages(rounds: list[Round]) -> dict[str, dict[str, float]]:
    """Per round kind, the mean apiserver CPU seconds sampled and per stage (profiled runs)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in rounds:
        if "apiserver_profile" in r.figures:
            by_kind.setdefault(r.kind, []).append(r.figures["apiserver_profile"])
    out: dict[str, dict[str, float]] = {}
    for kind, profiles in by_kind.items():
        rows = [{"sampled": p["sampled_s"], **p["stages_s"]} for p in profiles]
        out[kind] = {k: round(sum(row[k] for row in rows) / len(rows), 2) for k in rows[0]}
    return out


def print_report(n: int, rounds: list[Round], tables: dict[str, dict[str, Any]]) -> None:
    print(f"\n== floor vs operator, N = {n}, rounds: {' '.join(r.kind for r in rounds)}")
    for r in rounds:
        f = r.figures
        cpu = f["cpu_s"]
        print(
            f"  {r.kind:8s} all Pods {f['all_pods_s']:6.2f} s  CR→Pod p50 {f['cr_to_pod']['p50_ms']:7.0f} ms"
            f" p99 {f['cr_to_pod']['p99_ms']:7.0f} ms  apiserver CPU {cpu['kube-apiserver']:5.1f} s"
            f"  etcd {cpu.get('etcd', 0):4.1f} s  operator {cpu.get('operator', 0):4.1f} s"
        )
    for variant, table in tables.items():
        print(f"  ratio {variant} / floor (means; per pair):")
        for name, row in table.items():
            target = TARGETS.get(name)
            verdict = "met" if row["ratio"] <= (target or 0) else "MISSED"
            mark = "" if target is None else f"  target ≤ {target}  {verdict}"
            print(f"    {name:18s} {row['ratio']:.3f}  {row['ratio_per_pair']}{mark}")
    kinds = ["floor", *tables]
    counts = [next(r for r in rounds if r.kind == k).figures["requests_per_polecat"] for k in kinds]
    print(f"  apiserver requests per Polecat, first round of each ({' | '.join(kinds)}):")
    for key in sorted(set().union(*counts), key=lambda k: -max(c.get(k, 0) for c in counts)):
        print(f"    {key:28s} " + " | ".join(f"{c.get(key, 0):6.3f}" for c in counts))
    print(f"    {'total':28s} " + " | ".join(f"{sum(c.values()):6.3f}" for c in counts))
    stages = profile_stages(rounds)
    if stages:
        print(f"  apiserver CPU profile, mean s per round ({' | '.join(stages)}):")
        for stage in next(iter(stages.values())):
            print(f"    {stage:40s} " + " | ".join(f"{row[stage]:6.2f}" for row in stages.values()))


# Who GETs Polecats one by one? Not the operator (it reads its cache) nor the floor; the
# apiserver's audit log names the client (user agent) of every such GET, and nothing else.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  verbs: ["get"]
  resources: [{group: "gastown.gastown.io", resources: ["polecats"]}]
- level: None
"""


class AuditedLab(Lab):
    """The lab, with kube-apiserver's audit log on for single-Polecat GETs only."""

    def _apiserver_argv(self) -> list[str]:
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [
            *super()._apiserver_argv(),
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.workdir / 'logs' / 'audit.log'}",
        ]


class ProfiledLab(AuditedLab):
    """The audited lab with kube-apiserver's /debug/pprof on (the last flag wins)."""

    def _apiserver_argv(self) -> list[str]:
        return [*super()._apiserver_argv(), "--profiling=true"]


def polecat_gets_by_client(lab: Lab) -> dict[str, int]:
    """GET polecats/NAME per client (user agent, cut at the first space) so far."""
    path = lab.workdir / "logs" / "audit.log"
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("stage") == "ResponseComplete":
                counts[str(entry.get("userAgent", "")).split(" ")[0]] += 1
    return dict(counts)


async def run(
    *,
    quick: bool = False,
    n: int | None = None,
    pairs: int = 2,
    name: str = "floor",
    variants: dict[str, str | None] | None = None,
    profile: int = 0,
) -> dict[str, Any]:
    """Interleaved rounds on one lab (floor, then each operator variant, ``pairs`` times);
    ratios to the floor printed and written. ``variants``: name → source tree (None: this one).
    ``profile``: seconds of apiserver CPU profile per round (0: none)."""
    n = n or (200 if quick else 1000)
    variants = variants or {"operator": None}
    rounds: list[Round] = []
    lab = await (ProfiledLab if profile else AuditedLab).start()
    profile_dir = lab.workdir.parent / f"{name}-profiles"
    try:
        await install_crd(lab)
        # kube-controller-manager's garbage collector starts watching a new CRD's objects at
        # its next discovery resync (30 s); until then every Pod owned by a Polecat makes it
        # GET that Polecat, a few times. Wait that out so no round pays for it.
        await asyncio.sleep(GC_DISCOVERY_WAIT)
        api = Api(lab)
        try:
            for i in range(pairs):
                for kind, code in [("floor", None), *variants.items()]:
                    before = polecat_gets_by_client(lab)
                    done = await run_round(
                        lab, api, kind, n, i, code=code, profile_seconds=profile, profile_dir=profile_dir
                    )
                    after = polecat_gets_by_client(lab)
                    done.figures["polecat_gets_by_client"] = {
                        k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)
                    }
                    rounds.append(done)
                    await asyncio.sleep(2)
        finally:
            await api.close()
    finally:
        await lab.stop()
    tables = {variant: ratios(rounds, variant) for variant in variants}
    print_report(n, rounds, tables)
    result = {
        "n": n,
        "creates_in_flight": CREATES_IN_FLIGHT,
        "workers": WORKERS,
        "variants": {k: v or "this tree" for k, v in variants.items()},
        "ratios": tables,
        "targets": TARGETS,
        "apiserver_profile_stages_s": profile_stages(rounds),
        "rounds": [{"kind": r.kind, **r.figures} for r in rounds],
    }
    write_result(name, result)
    return result
