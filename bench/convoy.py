"""A Convoy of 1,000 beads (parallelism 100) against the same work as 1,000 plain Polecats.

One lab, one operator process (as the chart runs it, webhook off), one run: first the
Convoy in its own namespace, then 1,000 plain Polecats in another. kwok plays the
kubelet; a stand-in for the agents ends every agent Pod as soon as it is Running (exit
0 with the runner's report), so the work itself takes no time and what is measured is
the operator's and the apiserver's share.

Figures per variant:

* ``time_to_all_done_s``: from the create request (the Convoy, or the first Polecat) to
  the last Polecat's Done watch event;
* ``requests_per_bead``: apiserver requests (its ``apiserver_request_total``) from just
  before the create until requests stop, per bead, by verb and resource: Polecats,
  Pods, Events, bindings and Convoys; the stand-in's one Pod PATCH per bead and the
  bench's own creates are in them, the same in both variants except that the plain
  variant POSTs 1,000 Polecats where the Convoy variant POSTs one Convoy;
* ``operator_cpu_s`` and ``lab_cpu_s``: CPU seconds over the same span;
* ``peak_unfinished``: the most Polecats unfinished at once, from the watch (the
  Convoy's must be at most its parallelism).

``python -m bench convoy [--quick]`` (quick: 200 beads, parallelism 20).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.floor import GC_DISCOVERY_WAIT, QUIET_FOR, RequestKey, _free_node, apiserver_counts, count_delta
from bench.harness import (
    POLECATS_PATH,
    Api,
    OperatorProcess,
    kubernetes_polecat,
    lab_cpu_seconds,
    lab_with_crd,
    namespace_with_watches,
    write_result,
)
from bench.kubernetes_mode import TERMINATION_MESSAGE
from gastown.devcluster.lab import Lab

RESOURCES = frozenset({"polecats", "pods", "events", "bindings", "convoys"})
CONVOYS_PATH = "/apis/gastown.gastown.io/v1alpha1"
AGENTS = 16
"""Concurrent Pod PATCHes of the agents' stand-in."""
TERMINAL = frozenset({"Done", "Failed", "Terminated"})


class Run:
    """What one variant's watches saw."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.phase: dict[str, str] = {}
        self.done_at: dict[str, float] = {}
        self.unfinished: set[str] = set()
        self.peak = 0
        self.pods_seen: dict[str, int] = {}
        self.to_end: asyncio.Queue[str] = asyncio.Queue()
        self.ended: set[str] = set()

    def on_polecat(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase", "")
        if kind == "DELETED":
            self.unfinished.discard(name)
            return False
        self.phase[name] = phase
        if phase in TERMINAL:
            self.unfinished.discard(name)
        else:
            self.unfinished.add(name)
        self.peak = max(self.peak, len(self.unfinished))
        if phase == "Done":
            self.done_at.setdefault(name, at)
        return False

    def on_pod(self, kind: str, obj: dict[str, Any], at: float) -> bool:
        name = obj["metadata"]["name"]
        if kind == "ADDED":
            self.pods_seen[name] = self.pods_seen.get(name, 0) + 1
        if (obj.get("status") or {}).get("phase") == "Running" and name not in self.ended:
            self.ended.add(name)
            self.to_end.put_nowait(name)
        return False


async def _agents(api: Api, ns: str, run: Run) -> None:
    """Stand in for the agents: end each Running Pod at once (exit 0, pushed)."""
    annotations = {"lab.gastown.io/exit-code": "0", "lab.gastown.io/termination-message": TERMINATION_MESSAGE}

    async def worker() -> None:
        while True:
            pod = await run.to_end.get()
            await api.request(
                "PATCH",
                f"/api/v1/namespaces/{ns}/pods/{pod}",
                {"metadata": {"annotations": annotations}},
                content_type="application/merge-patch+json",
            )

    await asyncio.gather(*(worker() for _ in range(AGENTS)))


def _total(counts: dict[RequestKey, float]) -> float:
    return sum(v for (_, resource, _), v in counts.items() if resource in RESOURCES)


async def _settled(api: Api, timeout: float) -> dict[RequestKey, float]:
    """apiserver request counts once requests to the measured resources stopped."""
    last, changed = -1.0, time.monotonic()
    deadline = changed + timeout
    counts: dict[RequestKey, float] = {}
    while True:
        now = await apiserver_counts(api)
        total = _total(now)
        if total != last:
            last, changed, counts = total, time.monotonic(), now
        elif time.monotonic() - changed >= QUIET_FOR:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError("apiserver requests did not settle")
        await asyncio.sleep(0.25)


def _per_bead(delta: dict[RequestKey, float], n: int) -> dict[str, Any]:
    rows = {
        f"{verb} {resource}{'/' + sub if sub else ''}": round(value / n, 3)
        for (verb, resource, sub), value in delta.items()
        if resource in RESOURCES
    }
    total = round(sum(v for (_, r, _), v in delta.items() if r in RESOURCES) / n, 2)
    return {"total": total, "by_request": dict(sorted(rows.items(), key=lambda kv: -kv[1]))}


def convoy_body(name: str, n: int, parallelism: int) -> dict[str, Any]:
    template = kubernetes_polecat("template", 0)["spec"]
    template.pop("beadID")
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Convoy",
        "metadata": {"name": name},
        "spec": {"count": n, "parallelism": parallelism, "template": {"spec": template}},
    }


async def _variant(
    lab: Lab, api: Api, operator: OperatorProcess, kind: str, *, n: int, parallelism: int
) -> dict[str, Any]:
    ns = f"bench-{kind}-{n}-{int(time.time())}"
    run = Run(n)
    watches = await namespace_with_watches(api, ns, run.on_polecat, run.on_pod)
    agents = asyncio.create_task(_agents(api, ns, run))
    try:
        counts0 = await apiserver_counts(api)
        cpu0, lab0 = operator.cpu_seconds(), lab_cpu_seconds(lab)
        t0 = time.monotonic()
        if kind == "convoy":
            path = f"{CONVOYS_PATH}/namespaces/{ns}/convoys"
            await api.request("POST", path, convoy_body("cv", n, parallelism))
        else:
            gate = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with gate:
                    await api.request(
                        "POST", f"{POLECATS_PATH}/namespaces/{ns}/polecats", kubernetes_polecat(f"pc-{i}", i)
                    )

            await asyncio.gather(*(one(i) for i in range(1, n + 1)))
        deadline = time.monotonic() + 300 + n
        while len(run.done_at) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: {len(run.done_at)} of {n} Done; {operator.tail()}")
            await asyncio.sleep(0.05)
        elapsed = max(run.done_at.values()) - t0
        if kind == "convoy":  # the Convoy's own status says Complete too
            while True:
                convoy = await api.request("GET", f"{CONVOYS_PATH}/namespaces/{ns}/convoys/cv")
                conds = {c["type"]: c for c in (convoy.get("status") or {}).get("conditions") or []}
                if conds.get("Complete", {}).get("status") == "True":
                    break
                await asyncio.sleep(0.1)
        counts1 = await _settled(api, 120)
        result = {
            "n": n,
            "parallelism": parallelism if kind == "convoy" else None,
            "time_to_all_done_s": round(elapsed, 2),
            "beads_per_s": round(n / elapsed, 1),
            "peak_unfinished": run.peak,
            "pods_created_twice": sum(1 for c in run.pods_seen.values() if c > 1),
            "requests_per_bead": _per_bead(count_delta(counts0, counts1), n),
            "operator_cpu_s": round(operator.cpu_seconds() - cpu0, 2),
            "lab_cpu_s": {k: round(v - lab0.get(k, 0.0), 2) for k, v in lab_cpu_seconds(lab).items()},
        }
        if kind == "convoy":
            assert run.peak <= parallelism, f"parallelism broken: {run.peak} unfinished at once"
        return result
    finally:
        for task in (*watches, agents):
            task.cancel()
        await asyncio.gather(*watches, agents, return_exceptions=True)
        await _free_node(api, ns)  # the fake node holds about two runs' Pods


async def run(*, quick: bool = False) -> None:
    """Both variants on one lab with one operator; prints and writes results/convoy.json."""
    n, parallelism = (200, 20) if quick else (1000, 100)
    async with lab_with_crd() as lab:
        operator = OperatorProcess(lab, extra_args=["--no-webhook", "--workers=32"])
        await operator.start()
        api = Api(lab)
        try:
            await operator.wait_ready()
            # The garbage collector starts watching the new CRDs' objects at its next discovery
            # resync (30 s); until then it GETs the owner of every owned object it sees.
            await asyncio.sleep(GC_DISCOVERY_WAIT)
            convoy = await _variant(lab, api, operator, "convoy", n=n, parallelism=parallelism)
            plain = await _variant(lab, api, operator, "plain", n=n, parallelism=parallelism)
        finally:
            await api.close()
            await operator.stop()
    for label, figures in (("convoy", convoy), ("plain Polecats", plain)):
        print(
            f"{label:>15}: {figures['n']} beads, all Done in {figures['time_to_all_done_s']} s "
            f"({figures['beads_per_s']}/s), peak unfinished {figures['peak_unfinished']}, "
            f"{figures['requests_per_bead']['total']} apiserver requests per bead, "
            f"operator CPU {figures['operator_cpu_s']} s"
        )
    write_result("convoy", {"convoy": convoy, "plain": plain})
