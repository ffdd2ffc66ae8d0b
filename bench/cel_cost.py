"""What the dispatch freeze's CEL costs the apiserver on the operator's own writes.

The floor benchmark after issue 18 put the apiserver's CPU for a burst at 1.85x the
floor's, up from 1.54x, and the change in between added the dispatch freeze as CRD root
rules (they read ``oldSelf.status``, so they could not sit on ``spec``). A root rule runs
on **every** write of the object, status writes included. This bench measures that on one
lab with the same writes under interleaved variants (rounds rules, none, rules, none...):

* ``root-rules``: the freeze as CRD root rules (how issue 18 shipped it);
* ``policy``: the CRD as committed (no root rules) plus the dispatch freeze as the chart's
  ValidatingAdmissionPolicy, which matches ``polecats`` UPDATEs, never ``polecats/status``;
* ``no-rules``: no CEL at all (the floor of what a write costs);
* ``folded``/``guarded``: the root rules folded into one expression (and guarded by
  ``oldSelf.spec == self.spec``): the cheaper root rules tried before the policy.

A round, in a fresh namespace: N kubernetes-mode Polecats POSTed (64 in flight), then,
per Polecat, the two status writes a Polecat costs in a burst (``Working`` with the Pod's
details, then ``Done`` with the result) as JSON merge patches to the status subresource,
32 in flight (the operator's workers). Per round: the apiserver's CPU seconds, wall
time, and p50/p99 latency of the creates and of the status writes.

Switching variants is a CRD update (and applying or deleting the policy); the apiserver
picks both up in the background, so each round first waits until a probe shows the
variant is in force: a spec change to a dispatched Polecat is refused with a freeze and
accepted without.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from bench.harness import POLECATS_PATH, Api, cpu_seconds_of, kubernetes_polecat, summary_ms, write_result
from gastown.api import crd, policy
from gastown.devcluster.lab import Lab

CREATES_IN_FLIGHT = 64
WRITES_IN_FLIGHT = 32
VARIANTS = ("root-rules", "policy", "no-rules", "folded", "guarded")
FROZEN_BY = frozenset({"root-rules", "policy", "folded", "guarded"})


def without_rules(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a CRD with every ``x-kubernetes-validations`` removed, at any depth."""
    out = copy.deepcopy(obj)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            for child in node.values():
                strip(child)
        elif isinstance(node, list):
            for child in node:
                strip(child)

    strip(out["spec"]["versions"][0]["schema"])
    return out


def folded(obj: dict[str, Any], *, guard: bool = False) -> dict[str, Any]:
    """A copy whose root rules are folded into one: the same checks, one CEL program.

    The message is the first failing rule's (a chain of conditionals, evaluated only on a
    denial). ``guard`` puts ``oldSelf.spec == self.spec ||`` in front, so a status or
    metadata write costs one comparison of the spec instead of every check.
    """
    out = copy.deepcopy(obj)
    schema = out["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema.pop("x-kubernetes-validations", [])
    if not rules:
        return out

    def message(rule: dict[str, str]) -> str:
        if "messageExpression" in rule:
            return str(rule["messageExpression"])
        return "'" + str(rule["message"]).replace("\\", "\\\\").replace("'", "\\'") + "'"

    body = " && ".join(f"({r['rule']})" for r in rules)
    chain = ""
    for r in rules[:-1]:
        chain += f"!({r['rule']}) ? {message(r)} : "
    chain += message(rules[-1])
    schema["x-kubernetes-validations"] = [
        {
            "rule": f"oldSelf.spec == self.spec || ({body})" if guard else body,
            "messageExpression": chain,
            "reason": "FieldValueInvalid",
        }
    ]
    return out


def with_root_rules(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of the committed CRD with the dispatch freeze back as root rules (issue 18's)."""
    out = copy.deepcopy(obj)
    out["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = list(
        crd.OBJECT_VALIDATIONS
    )
    return out


def variant_crd(variant: str, committed: dict[str, Any]) -> dict[str, Any]:
    """The CRD a variant runs with."""
    if variant == "policy":
        return committed
    if variant == "no-rules":
        return without_rules(committed)
    rooted = with_root_rules(committed)
    if variant == "root-rules":
        return rooted
    return folded(rooted, guard=variant == "guarded")


async def _set_policy(lab: Lab, present: bool) -> None:
    verb = ("apply", "--server-side", "--force-conflicts") if present else ("delete", "--ignore-not-found")
    await lab.kubectl(*verb, "-f", str(policy.KUBECTL_POLICY))


def _status_working(name: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "phase": "Working",
            "observedGeneration": 1,
            "startTime": now,
            "kubernetes": {"podName": f"polecat-{name}", "podPhase": "Running", "nodeName": "fake"},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Working", "message": "the agent is working",
                 "lastTransitionTime": now, "observedGeneration": 1},
                {"type": "Dispatched", "status": "True", "reason": "PodCreated",
                 "message": f"Pod polecat-{name}", "lastTransitionTime": now, "observedGeneration": 1},
            ],
        }
    }  # fmt: skip


def _status_done(name: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "phase": "Done",
            "completionTime": now,
            "kubernetes": {"podPhase": "Succeeded"},
            "result": {"branch": f"polecat/{name}", "commit": "0" * 40, "pushed": True, "message": "done"},
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Done", "message": "the work is done",
                 "lastTransitionTime": now, "observedGeneration": 1},
            ],
        }
    }  # fmt: skip


async def _apply_crd(lab: Lab, obj: dict[str, Any], index: int) -> None:
    path = lab.workdir / f"celcost-crd-{index}.yaml"
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    await lab.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


async def _variant_in_force(api: Api, ns: str, variant: str) -> None:
    """Wait until a frozen-field change to a dispatched probe is refused (rules) or accepted (none)."""
    path = f"{POLECATS_PATH}/namespaces/{ns}/polecats"
    probe = kubernetes_polecat("probe", 0)
    await api.request("POST", path, probe)
    await api.request(
        "PATCH", f"{path}/probe/status", _status_working("probe"), content_type="application/merge-patch+json"
    )
    attempt = 0

    async def matches() -> bool:
        nonlocal attempt
        attempt += 1
        patch = {"spec": {"task": f"changed {attempt}"}}
        try:
            await api.request("PATCH", f"{path}/probe", patch, content_type="application/merge-patch+json")
        except RuntimeError as exc:
            if "HTTP 422" not in str(exc):
                raise
            return variant in FROZEN_BY
        return variant not in FROZEN_BY

    await _until(matches, f"the CRD variant {variant!r} to be in force")


async def _timed(latencies: list[float], call: Awaitable[Any]) -> None:
    started = time.monotonic()
    await call
    latencies.append(time.monotonic() - started)


async def run_round(lab: Lab, api: Api, variant: str, n: int, index: int) -> dict[str, Any]:
    """One round of N creates and 2N status writes under one CRD variant."""
    ns = f"celcost-{index}-{variant}"
    await api.create_namespace(ns)
    await _until(lambda: _served(api, ns), "polecats to be served in the new namespace")
    await _variant_in_force(api, ns, variant)
    path = f"{POLECATS_PATH}/namespaces/{ns}/polecats"
    names = [f"p{i:05d}" for i in range(n)]
    apiserver = lab.process_ids()["kube-apiserver"]
    cpu0, t0 = cpu_seconds_of(apiserver), time.monotonic()

    create_lat: list[float] = []
    gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

    async def create(i: int, name: str) -> None:
        async with gate:
            await _timed(create_lat, api.request("POST", path, kubernetes_polecat(name, i)))

    await asyncio.gather(*(create(i, name) for i, name in enumerate(names)))
    cpu_created, t_created = cpu_seconds_of(apiserver), time.monotonic()

    write_lat: list[float] = []
    writes = asyncio.Semaphore(WRITES_IN_FLIGHT)

    async def status_writes(name: str) -> None:
        for body in (_status_working(name), _status_done(name)):
            async with writes:
                call = api.request(
                    "PATCH", f"{path}/{name}/status", body, content_type="application/merge-patch+json"
                )
                await _timed(write_lat, call)

    await asyncio.gather(*(status_writes(name) for name in names))
    cpu1, t1 = cpu_seconds_of(apiserver), time.monotonic()
    return {
        "variant": variant,
        "index": index,
        "n": n,
        "apiserver_cpu_s": {
            "creates": round(cpu_created - cpu0, 2),
            "status_writes": round(cpu1 - cpu_created, 2),
            "total": round(cpu1 - cpu0, 2),
        },
        "wall_s": {"creates": round(t_created - t0, 2), "status_writes": round(t1 - t_created, 2)},
        "create_latency": summary_ms(create_lat),
        "status_write_latency": summary_ms(write_lat),
    }


async def _served(api: Api, ns: str) -> bool:
    try:
        await api.request("GET", f"{POLECATS_PATH}/namespaces/{ns}/polecats")
    except RuntimeError as exc:
        if "HTTP 429" in str(exc):
            return False
        raise
    return True


def _mean(rounds: list[dict[str, Any]], variant: str, get: Callable[[dict[str, Any]], float]) -> float:
    values = [get(r) for r in rounds if r["variant"] == variant]
    return sum(values) / len(values)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean apiserver CPU per variant and phase, and each variant's ratio to no rules at all."""
    out: dict[str, Any] = {}
    ran = [v for v in VARIANTS if any(r["variant"] == v for r in rounds)]
    for phase in ("creates", "status_writes", "total"):
        means = {v: _mean(rounds, v, lambda r, p=phase: r["apiserver_cpu_s"][p]) for v in ran}
        base = means.get("no-rules")
        out[phase] = {
            "cpu_s": {v: round(m, 2) for v, m in means.items()},
            "over_no_rules": {v: round(m / base, 3) for v, m in means.items()} if base else None,
        }
    out["status_write_p99_ms"] = {
        v: round(_mean(rounds, v, lambda r: r["status_write_latency"]["p99_ms"]), 1) for v in ran
    }
    return out


async def run(
    n: int = 1000,
    pairs: int = 2,
    tag: str = "",
    variants: tuple[str, ...] = ("root-rules", "policy", "no-rules"),
) -> None:
    """``python -m bench celcost``: interleaved rounds on one fresh lab; writes bench/results."""
    lab = await Lab.start()
    api = Api(lab)
    try:
        full = crd.build_crd()
        rounds: list[dict[str, Any]] = []
        index = 0
        for _ in range(pairs):
            for variant in variants:
                await _apply_crd(lab, variant_crd(variant, full), index)
                await _set_policy(lab, variant == "policy")
                await _until(lambda: _established(lab), "the Polecat CRD to be Established")
                result = await run_round(lab, api, variant, n, index)
                print(
                    f"round {index} {variant:8s}: apiserver CPU {result['apiserver_cpu_s']['total']:6.2f} s "
                    f"(creates {result['apiserver_cpu_s']['creates']:.2f}, status writes "
                    f"{result['apiserver_cpu_s']['status_writes']:.2f}); status write p99 "
                    f"{result['status_write_latency']['p99_ms']:.1f} ms",
                    flush=True,
                )
                rounds.append(result)
                index += 1
        summary = summarize(rounds)
        name = f"celcost-{tag}" if tag else "celcost"
        write_result(name, {"n": n, "pairs": pairs, "summary": summary, "rounds": rounds})
    finally:
        await api.close()
        await lab.stop()


async def _established(lab: Lab) -> bool:
    rc, out, _ = await lab.kubectl(
        "get",
        f"crd/{crd.CRD_NAME}",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Established")].status}',
        check=False,
    )
    return rc == 0 and out.strip() == "True"
