"""How the user CLI shows Rigs and Convoys, and a Polecat's effective (Rig-resolved) values.

Pure functions from API dicts to text, with the clock passed in, in the shapes of
:mod:`gastown.cli.render` (kubectl's tables and ``Key: value`` describe sections).

A Convoy's state, as the CLI names it (``convoy list`` STATE, ``watch``'s exit code):

* ``Pending``  the operator has not written a status yet;
* ``Running``  beads are still pending or being worked on;
* ``Complete`` the Complete condition is True and every bead is Done;
* ``Failed``   the Complete condition is True and some bead is not Done (it failed, was
  terminated, or was never started because the failure policy stopped the Convoy).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gastown.cli.render import (
    NONE,
    _get,
    _labels,
    _Section,
    _when,
    age,
    condition,
    events_table,
    human_duration,
    parse_time,
    phase_of,
    table,
)

PHASES = ("Pending", "Dispatching", "Working", "Stuck", "Done", "Failed", "Terminated")
COUNT_KEYS = ("pending", "dispatching", "working", "stuck", "done", "failed", "terminated")
FINISHED = ("done", "failed", "terminated")


# --------------------------------------------------------------------------------------
# Convoys
# --------------------------------------------------------------------------------------
def total_of(obj: dict[str, Any]) -> int:
    """Beads in the Convoy: the status's count, else what the spec asks for."""
    total = _get(obj, "status", "total")
    if isinstance(total, int):
        return total
    spec = obj.get("spec") or {}
    beads = spec.get("beads")
    if isinstance(beads, list):
        return len(beads)
    count = spec.get("count")
    return count if isinstance(count, int) else 0


def counts_of(obj: dict[str, Any]) -> dict[str, int]:
    """Beads by phase (lower-case keys); before any status every bead is pending."""
    raw = _get(obj, "status", "counts")
    if not isinstance(raw, dict):
        return {key: (total_of(obj) if key == "pending" else 0) for key in COUNT_KEYS}
    return {key: int(raw.get(key) or 0) for key in COUNT_KEYS}


def finished_count(obj: dict[str, Any]) -> int:
    """Beads that have ended, well or badly."""
    counts = counts_of(obj)
    return sum(counts[key] for key in FINISHED)


def is_complete(obj: dict[str, Any]) -> bool:
    """The operator says nothing more will start or finish: the Complete condition is True."""
    complete = condition(obj, "Complete") or {}
    return complete.get("status") == "True"


def state_of(obj: dict[str, Any]) -> str:
    """Pending, Running, Complete or Failed (see the module docstring)."""
    if not obj.get("status"):
        return "Pending"
    if not is_complete(obj):
        return "Running"
    return "Complete" if counts_of(obj)["done"] == total_of(obj) else "Failed"


def counts_text(counts: dict[str, int], *, skip_zero: bool = True) -> str:
    """``3 done, 2 working, 1 failed``: the non-zero phases, in lifecycle order."""
    parts = [f"{counts[key]} {key}" for key in COUNT_KEYS if counts[key] or not skip_zero]
    return ", ".join(parts) or "0 beads"


def convoy_table(
    items: Sequence[dict[str, Any]], *, now: datetime, wide: bool = False, all_namespaces: bool = False
) -> list[str]:
    """The ``gastown convoy list`` table."""
    headers = ["NAME", "RIG", "DONE", "WORKING", "PENDING", "FAILED", "STATE", "AGE"]
    if wide:
        headers += ["PARALLELISM", "POLICY", "MODE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in items:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        counts = counts_of(obj)
        row = [
            str(meta.get("name", "")),
            str(_get(spec, "template", "spec", "rig") or NONE),
            f"{counts['done']}/{total_of(obj)}",
            str(counts["working"] + counts["dispatching"] + counts["stuck"]),
            str(counts["pending"]),
            str(counts["failed"] + counts["terminated"]),
            state_of(obj),
            age(meta.get("creationTimestamp"), now),
        ]
        if wide:
            policy = str(spec.get("failurePolicy") or "Continue")
            if policy == "Stop":
                policy += f" after {spec.get('maxFailures') or 1}"
            row += [
                str(spec.get("parallelism") or 10),
                policy,
                str(_get(spec, "template", "spec", "executionMode") or "(rig's)"),
            ]
        if all_namespaces:
            row.insert(0, str(meta.get("namespace", "")))
        rows.append(row)
    return table(headers, rows)


def bead_rows(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every bead of the Convoy, in spec order, with its status entry when there is one."""
    spec = obj.get("spec") or {}
    name = str(_get(obj, "metadata", "name") or "")
    statuses = {
        str(entry.get("beadID")): entry
        for entry in _get(obj, "status", "beads") or []
        if isinstance(entry, dict)
    }
    if isinstance(spec.get("beads"), list):
        ids = [str(b.get("beadID", "")) for b in spec["beads"] if isinstance(b, dict)]
    elif isinstance(spec.get("count"), int):
        ids = [f"{name}-{n}" for n in range(1, spec["count"] + 1)]
    else:
        ids = []
    rows = [statuses.pop(bead, {"beadID": bead}) for bead in ids]
    rows += list(statuses.values())  # status entries the spec no longer names
    return rows


def _duration(start: Any, end: Any, now: datetime) -> str | None:
    began = parse_time(start)
    if began is None:
        return None
    ended = parse_time(end) or now
    suffix = "" if parse_time(end) else " so far"
    return f"{human_duration((ended - began).total_seconds())}{suffix}"


def conditions_lines(obj: dict[str, Any], now: datetime) -> list[str]:
    """The Conditions block (same shape as a Polecat's)."""
    conditions = [c for c in _get(obj, "status", "conditions") or [] if isinstance(c, dict)]
    if not conditions:
        return ["Conditions:  <none>"]
    rows = [
        [
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason") or ""),
            age(c.get("lastTransitionTime"), now) if c.get("lastTransitionTime") else "",
            str(c.get("message") or ""),
        ]
        for c in conditions
    ]
    return [
        "Conditions:",
        *(f"  {line}" for line in table(["Type", "Status", "Reason", "Age", "Message"], rows)),
    ]


def _events_lines(events: Sequence[dict[str, Any]], now: datetime, kind: str) -> list[str]:
    lines = events_table(events, now=now, own_kind=kind)
    return ["Events:", *(f"  {line}" for line in lines)] if lines else ["Events:  <none>"]


def _head(obj: dict[str, Any], now: datetime) -> _Section:
    meta = obj.get("metadata") or {}
    head = _Section()
    head.add("Name", meta.get("name"))
    head.add("Namespace", meta.get("namespace"))
    head.add("Labels", _labels(meta.get("labels")))
    head.add("Created", _when(meta.get("creationTimestamp"), now))
    if meta.get("deletionTimestamp"):
        head.add("Deleting", f"since {_when(meta['deletionTimestamp'], now)}")
        head.add("Finalizers", ", ".join(meta.get("finalizers") or []) or NONE)
    return head


def describe_convoy(obj: dict[str, Any], events: Sequence[dict[str, Any]], *, now: datetime) -> str:
    """The ``gastown convoy describe`` text: spec, counts, times, each bead, conditions, Events."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    template = _get(spec, "template", "spec") or {}
    head = _head(obj, now)
    head.add("Rig", template.get("rig"))
    head.add("Mode", template.get("executionMode") or "(the rig's, else local)")
    head.add("Beads", f"{len(spec['beads'])} listed" if isinstance(spec.get("beads"), list) else None)
    if isinstance(spec.get("count"), int):
        head.add("Count", f"{spec['count']} runs of the template's task")
    task = template.get("task")
    head.add("Task", task.rstrip("\n") if isinstance(task, str) else "(per bead)")
    head.add("Parallelism", spec.get("parallelism") or 10)
    policy = str(spec.get("failurePolicy") or "Continue")
    if policy == "Stop":
        policy += f" after {spec.get('maxFailures') or 1} failed"
    head.add("Failure Policy", policy)
    ttl = spec.get("ttlSecondsAfterFinished")
    head.add(
        "TTL After Finished", f"{ttl}s (results stay in the Convoy's status)" if ttl is not None else "(kept)"
    )
    section = _Section(indent=2)
    counts = counts_of(obj)
    section.add("State", state_of(obj))
    section.add("Progress", f"{finished_count(obj)}/{total_of(obj)} finished: {counts_text(counts)}")
    generation = _get(obj, "metadata", "generation")
    observed = status.get("observedGeneration")
    if observed is not None and generation is not None and observed != generation:
        section.add("Observed Generation", f"{observed} (the spec is at {generation}; not yet reconciled)")
    section.add("Started", _when(status.get("startTime"), now))
    if status.get("completionTime"):
        section.add("Completed", _when(status.get("completionTime"), now))
    section.add("Duration", _duration(status.get("startTime"), status.get("completionTime"), now))
    lines = [*head.lines(), "Status:", *section.lines()]
    rows = [
        [
            str(bead.get("beadID") or ""),
            str(bead.get("polecat") or NONE),
            str(bead.get("phase") or "-"),
            str(bead.get("branch") or NONE),
            str(bead.get("reason") or ""),
        ]
        for bead in bead_rows(obj)
    ]
    if rows:
        lines += [
            "Beads:",
            *(f"  {line}" for line in table(["BEAD", "POLECAT", "PHASE", "BRANCH", "REASON"], rows)),
        ]
    else:
        lines.append("Beads:  <none>")
    lines += conditions_lines(obj, now)
    lines += _events_lines(events, now, "Convoy")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Rigs
# --------------------------------------------------------------------------------------
def rig_table(items: Sequence[dict[str, Any]], *, now: datetime, all_namespaces: bool = False) -> list[str]:
    """The ``gastown rig list`` table: NAME, MODE, MAX, ACTIVE, WAITING, AGE."""
    headers = ["NAME", "MODE", "MAX", "ACTIVE", "WAITING", "AGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in items:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        limit = spec.get("maxActivePolecats")
        row = [
            str(meta.get("name", "")),
            str(spec.get("executionMode") or "local"),
            "unlimited" if limit is None else str(limit),
            str(status.get("activePolecats") if status.get("activePolecats") is not None else "-"),
            str(status.get("waitingPolecats") if status.get("waitingPolecats") is not None else "-"),
            age(meta.get("creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, str(meta.get("namespace", "")))
        rows.append(row)
    return table(headers, rows)


def _defaults_lines(title: str, spec: dict[str, Any]) -> list[str]:
    """A Rig's (or an effective spec's) mode sections: only what is set."""
    lines: list[str] = []
    k8s = spec.get("kubernetes") or {}
    if k8s:
        section = _Section(indent=2)
        section.add("Repository", k8s.get("gitRepository"))
        if k8s.get("gitBranch"):
            section.add("Branch", k8s["gitBranch"])
        if k8s.get("image"):
            section.add("Image", k8s["image"])
        if k8s.get("gitSecretRef"):
            section.add("Git Secret", _get(k8s, "gitSecretRef", "name"))
        agent_secret = k8s.get("agentSecretRef") or {}
        if agent_secret:
            section.add(
                "Agent Secret", f"{agent_secret.get('name')} (key {agent_secret.get('key') or 'api-key'})"
            )
        if k8s.get("knownHostsConfigMapRef"):
            section.add("Known Hosts", _get(k8s, "knownHostsConfigMapRef", "name"))
        for kind in ("requests", "limits"):
            values = _get(k8s, "resources", kind) or {}
            if values:
                section.add(kind.capitalize(), ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
        if k8s.get("activeDeadlineSeconds") is not None:
            section.add("Deadline", f"{k8s['activeDeadlineSeconds']}s")
        lines += [f"{title} (kubernetes):", *section.lines()]
    local = spec.get("local") or {}
    if local:
        section = _Section(indent=2)
        for key, label in (
            ("dispatcher", "Dispatcher"),
            ("townRoot", "Town Root"),
            ("command", "Command"),
            ("workDir", "Work Dir"),
        ):
            if local.get(key):
                section.add(label, local[key])
        if local.get("activeDeadlineSeconds") is not None:
            section.add("Deadline", f"{local['activeDeadlineSeconds']}s")
        lines += [f"{title} (local):", *section.lines()]
    return lines


def rig_of(polecat: dict[str, Any]) -> str:
    """The rig a Polecat belongs to."""
    return str(_get(polecat, "spec", "rig") or _get(polecat, "status", "effective", "rig") or "")


def polecats_by_phase(polecats: Sequence[dict[str, Any]], *, limit: int = 8) -> list[str]:
    """``PHASE  COUNT  POLECATS`` rows, lifecycle order, at most ``limit`` names each."""
    groups: dict[str, list[str]] = {}
    for obj in polecats:
        groups.setdefault(phase_of(obj), []).append(str(_get(obj, "metadata", "name") or ""))
    rows = []
    for phase in [*PHASES, *sorted(set(groups) - set(PHASES))]:
        names = sorted(groups.get(phase) or [])
        if not names:
            continue
        shown = ", ".join(names[:limit]) + (
            f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        )
        rows.append([phase, str(len(names)), shown])
    return table(["PHASE", "COUNT", "POLECATS"], rows) if rows else []


def describe_rig(
    obj: dict[str, Any],
    polecats: Sequence[dict[str, Any]],
    events: Sequence[dict[str, Any]],
    *,
    now: datetime,
) -> str:
    """The ``gastown rig describe`` text: defaults, capacity, its Polecats by phase, Events."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    head = _head(obj, now)
    head.add("Mode", spec.get("executionMode") or "(unset: local)")
    head.add("Agent", spec.get("agent") or "(unset: claude-code)")
    lines = head.lines() + _defaults_lines("Defaults", spec)
    section = _Section(indent=2)
    limit = spec.get("maxActivePolecats")
    section.add("Max Active", "unlimited" if limit is None else limit)
    section.add("Active", status.get("activePolecats") if status.get("activePolecats") is not None else "-")
    section.add(
        "Waiting", status.get("waitingPolecats") if status.get("waitingPolecats") is not None else "-"
    )
    lines += ["Capacity:", *section.lines()]
    by_phase = polecats_by_phase(polecats)
    if by_phase:
        lines += [f"Polecats ({len(polecats)}):", *(f"  {line}" for line in by_phase)]
    else:
        lines.append("Polecats:  <none>")
    lines += conditions_lines(obj, now)
    lines += _events_lines(events, now, "Rig")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# A Polecat's effective spec (status.effective, written at dispatch when a Rig existed)
# --------------------------------------------------------------------------------------
def effective_lines(obj: dict[str, Any]) -> list[str]:
    """The values the Polecat runs with, marking those taken from its Rig; [] without one."""
    effective = _get(obj, "status", "effective")
    if not isinstance(effective, dict) or not effective:
        return []
    from_rig = [str(p) for p in effective.get("fromRig") or []]
    section = _Section(indent=2)
    generation = effective.get("rigGeneration")
    section.add(
        "Rig",
        f"{effective.get('rig') or NONE}"
        + (f" (generation {generation}, at dispatch)" if generation else ""),
    )

    def inherited(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:n]) in from_rig for n in range(1, len(parts) + 1))

    leaves: list[tuple[str, Any]] = [
        (key, effective[key]) for key in ("executionMode", "agent") if effective.get(key) is not None
    ]
    for mode in ("kubernetes", "local"):
        leaves += _flatten(mode, effective.get(mode))
    for path, value in leaves:
        section.add(path, f"{value}   (from rig)" if inherited(path) else str(value))
    listed = ", ".join(from_rig) if from_rig else "(none: the Polecat's spec set everything)"
    section.add("From Rig", listed)
    return ["Effective (resolved at dispatch):", *section.lines()]


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """Nested mappings as (dotted path, leaf) pairs; lists are shown whole, as JSON."""
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, inner in value.items():
            out += _flatten(f"{prefix}.{key}", inner)
        return out
    if value is None:
        return []
    if isinstance(value, list):
        return [(prefix, json.dumps(value, separators=(",", ":")))]
    return [(prefix, value)]
