"""How the user CLI shows Polecats: tables, ``describe`` text, JSON and YAML.

Pure functions from API dicts (as the apiserver returns them) to text; the clock is
passed in, so every output is unit-testable. The shapes copy kubectl's, because the
CLI is also a kubectl plugin and users read both side by side: tables are columns
separated by three spaces with upper-case headers, ages are kubectl's short
durations (``45s``, ``3m12s``, ``5h``, ``2d3h``), ``describe`` is ``Key: value``
sections ending in Events.

Nothing here prints a Secret's value: the spec only holds references to Secrets,
and those are shown by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gastown.api.models import API_VERSION, KIND

NONE = "<none>"
TERMINAL = frozenset({"Done", "Failed", "Terminated"})


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``...Z`` or with an offset, optional fraction) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """kubectl's short duration (``k8s.io/apimachinery/pkg/util/duration.HumanDuration``)."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(value: Any, now: datetime) -> str:
    """How long ago ``value`` (a timestamp string) was; ``<unknown>`` if it is not one."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, three spaces apart; the last one unpadded."""
    grid = [list(headers), *([_one_line(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(headers))]
    lines = []
    for row in grid:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("   ".join(cells).rstrip())
    return lines


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def phase_of(obj: dict[str, Any]) -> str:
    """The Polecat's phase; ``Pending`` until the operator has written a status."""
    return str(_get(obj, "status", "phase") or "Pending")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of the given type, if any."""
    for item in _get(obj, "status", "conditions") or []:
        if isinstance(item, dict) and item.get("type") == type_:
            return item
    return None


def workload(obj: dict[str, Any]) -> tuple[str, str]:
    """(what runs the work, where): ``pod/NAME`` and the node, or ``tmux/SESSION`` and the host."""
    k8s = _get(obj, "status", "kubernetes") or {}
    local = _get(obj, "status", "local") or {}
    if k8s.get("podName"):
        return f"pod/{k8s['podName']}", str(k8s.get("nodeName") or NONE)
    if local.get("tmuxSession"):
        return f"tmux/{local['tmuxSession']}", str(local.get("host") or NONE)
    return NONE, NONE


def list_table(
    items: Sequence[dict[str, Any]], *, now: datetime, wide: bool = False, all_namespaces: bool = False
) -> list[str]:
    """The ``gastown list`` table: NAME, RIG, MODE, PHASE, BEAD, AGE (+ wide columns)."""
    headers = ["NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE"]
    if wide:
        headers += ["WORKLOAD", "HOST", "BRANCH", "REASON"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows: list[list[str]] = []
    for obj in items:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        row = [
            str(meta.get("name", "")),
            str(spec.get("rig", "")),
            str(_get(obj, "status", "effective", "executionMode") or spec.get("executionMode") or "local"),
            phase_of(obj),
            str(spec.get("beadID", "")),
            age(meta.get("creationTimestamp"), now),
        ]
        if wide:
            what, where = workload(obj)
            ready = condition(obj, "Ready") or {}
            branch = _get(obj, "status", "result", "branch")
            row += [what, where, str(branch or NONE), str(ready.get("reason") or NONE)]
        if all_namespaces:
            row.insert(0, str(meta.get("namespace", "")))
        rows.append(row)
    return table(headers, rows)


def sort_key(obj: dict[str, Any]) -> tuple[str, str]:
    """Sort like kubectl: by namespace, then name."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


# --------------------------------------------------------------------------------------
# JSON / YAML
# --------------------------------------------------------------------------------------
def as_list(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ``v1 List`` of Polecats, as ``kubectl get -o json`` prints a collection."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def to_json(obj: Any) -> str:
    """Indented JSON (kubectl style)."""
    return json.dumps(obj, indent=4, sort_keys=False, ensure_ascii=False)


def to_yaml(obj: Any) -> str:
    """Block-style YAML with keys in API order."""
    import yaml  # noqa: PLC0415 - only for -o yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n")


def with_kind(obj: dict[str, Any]) -> dict[str, Any]:
    """List items come without apiVersion/kind; single objects printed alone need them."""
    return {"apiVersion": obj.get("apiVersion") or API_VERSION, "kind": obj.get("kind") or KIND, **obj}


# --------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------
class _Section:
    """Collects ``Key: value`` lines with aligned values, as kubectl describe does."""

    def __init__(self, indent: int = 0) -> None:
        self.indent = indent
        self.rows: list[tuple[str, str]] = []

    def add(self, key: str, value: Any) -> None:
        self.rows.append((key, NONE if value is None or value == "" else str(value)))

    def lines(self) -> list[str]:
        if not self.rows:
            return []
        width = max(len(key) for key, _ in self.rows) + 2
        pad = " " * self.indent
        out = []
        for key, value in self.rows:
            first, *rest = value.split("\n") if value else [""]
            out.append(f"{pad}{(key + ':').ljust(width)}{first}".rstrip())
            out.extend(f"{pad}{' ' * width}{line}".rstrip() for line in rest)
        return out


def _labels(values: dict[str, str] | None) -> str:
    if not values:
        return NONE
    return "\n".join(f"{k}={v}" for k, v in sorted(values.items()))


def _when(value: Any, now: datetime) -> str | None:
    if not value:
        return None
    return f"{value} ({age(value, now)} ago)"


def _event_time(event: dict[str, Any]) -> Any:
    return (
        _get(event, "series", "lastObservedTime")
        or event.get("eventTime")
        or event.get("deprecatedLastTimestamp")
        or event.get("lastTimestamp")
        or _get(event, "metadata", "creationTimestamp")
    )


def event_sort_key(event: dict[str, Any]) -> datetime:
    """Events in time order (events without a time first)."""
    return parse_time(_event_time(event)) or datetime.min.replace(tzinfo=UTC)


def events_table(events: Sequence[dict[str, Any]], *, now: datetime, own_kind: str = KIND) -> list[str]:
    """``Type  Reason  Age  From  Message`` rows, oldest first, as kubectl describe shows them.

    Events about another kind than the described object's (``own_kind``) say which object.
    """
    rows = []
    for event in sorted(events, key=event_sort_key):
        count = _get(event, "series", "count") or event.get("deprecatedCount") or event.get("count")
        when = age(_event_time(event), now)
        if isinstance(count, int) and count > 1:
            first = event.get("deprecatedFirstTimestamp") or event.get("eventTime")
            when = f"{when} (x{count} over {age(first, now)})"
        source = (
            event.get("reportingController")
            or _get(event, "deprecatedSource", "component")
            or _get(event, "source", "component")
            or ""
        )
        regarding = event.get("regarding") or event.get("involvedObject") or {}
        kind = str(regarding.get("kind") or "")
        message = str(event.get("note") or event.get("message") or "")
        if kind and kind != own_kind:
            message = f"{kind.lower()}/{regarding.get('name', '')}: {message}"
        rows.append(
            [str(event.get("type") or ""), str(event.get("reason") or ""), when, str(source), message]
        )
    if not rows:
        return []
    return table(["Type", "Reason", "Age", "From", "Message"], rows)


def _spec_lines(spec: dict[str, Any], top: _Section) -> list[str]:
    """Adds the spec's scalar fields to ``top``; returns the mode's own section."""
    mode = spec.get("executionMode") or "local"
    top.add("Rig", spec.get("rig"))
    top.add("Bead", spec.get("beadID"))
    # Left out: the Rig's value at dispatch (see Effective), else the built-in default.
    top.add("Mode", spec.get("executionMode") or "(unset: the rig's, else local)")
    top.add("Agent", spec.get("agent") or "(unset: the rig's, else claude-code)")
    top.add("Desired State", spec.get("desiredState") or "Working")
    task = spec.get("task")
    top.add("Task", task.rstrip("\n") if isinstance(task, str) else None)
    lines: list[str] = []
    if mode == "kubernetes":
        k8s = spec.get("kubernetes") or {}
        section = _Section(indent=2)
        section.add("Repository", k8s.get("gitRepository"))
        section.add("Branch", k8s.get("gitBranch") or "main")
        section.add("Work Branch", k8s.get("workBranch") or "polecat/<name>")
        section.add("Image", k8s.get("image") or "(operator default)")
        section.add("Git Secret", _get(k8s, "gitSecretRef", "name"))
        agent_secret = k8s.get("agentSecretRef") or {}
        section.add(
            "Agent Secret",
            f"{agent_secret.get('name')} (key {agent_secret.get('key') or 'api-key'})"
            if agent_secret
            else None,
        )
        section.add("Known Hosts", _get(k8s, "knownHostsConfigMapRef", "name"))
        resources = k8s.get("resources") or {}
        for kind in ("requests", "limits"):
            values = resources.get(kind) or {}
            if values:
                section.add(kind.capitalize(), ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
        section.add("Deadline", f"{k8s.get('activeDeadlineSeconds', 3600)}s")
        if k8s.get("serviceAccountName"):
            section.add("Service Account", k8s["serviceAccountName"])
        if k8s.get("runtimeClassName"):
            section.add("Runtime Class", k8s["runtimeClassName"])
        lines += ["Kubernetes:", *section.lines()]
    else:
        local = spec.get("local") or {}
        section = _Section(indent=2)
        dispatcher = local.get("dispatcher") or "gt"
        section.add("Dispatcher", dispatcher)
        if dispatcher == "gt":
            section.add("Town Root", local.get("townRoot") or "(operator default)")
        else:
            section.add("Command", local.get("command"))
            section.add("Work Dir", local.get("workDir") or "(home directory)")
        lines += ["Local:", *section.lines()]
    return lines


def _status_lines(obj: dict[str, Any], now: datetime) -> list[str]:
    status = obj.get("status") or {}
    generation = _get(obj, "metadata", "generation")
    section = _Section(indent=2)
    section.add("Phase", phase_of(obj))
    ready = condition(obj, "Ready")
    if ready is not None:
        section.add("Reason", ready.get("reason"))
        section.add("Message", ready.get("message"))
    observed = status.get("observedGeneration")
    if observed is not None and generation is not None and observed != generation:
        section.add("Observed Generation", f"{observed} (the spec is at {generation}; not yet reconciled)")
    if status.get("startTime"):
        section.add("Started", _when(status.get("startTime"), now))
    if status.get("completionTime"):
        section.add("Completed", _when(status.get("completionTime"), now))
    if status.get("lastActivity"):
        section.add("Last Activity", _when(status.get("lastActivity"), now))
    k8s = status.get("kubernetes") or {}
    if k8s:
        section.add("Pod", k8s.get("podName"))
        section.add("Pod Phase", k8s.get("podPhase"))
        section.add("Node", k8s.get("nodeName"))
    local = status.get("local") or {}
    if local:
        section.add("Host", local.get("host"))
        section.add("tmux Socket", local.get("tmuxSocket"))
        section.add("tmux Session", local.get("tmuxSession"))
        if local.get("polecatName"):
            section.add("Gas Town Name", local["polecatName"])
        if local.get("sessionActive") is not None:
            section.add("Session Active", "yes" if local["sessionActive"] else "no")
    result = status.get("result") or {}
    if result:
        section.add("Result Branch", result.get("branch"))
        section.add("Result Commit", result.get("commit"))
        if result.get("pushed") is not None:
            section.add("Pushed", "yes" if result["pushed"] else "no")
        if result.get("message"):
            section.add("Result", result["message"])
    return ["Status:", *section.lines()]


def _conditions_lines(obj: dict[str, Any], now: datetime) -> list[str]:
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
    body = table(["Type", "Status", "Reason", "Age", "Message"], rows)
    return ["Conditions:", *(f"  {line}" for line in body)]


def describe(
    obj: dict[str, Any],
    events: Sequence[dict[str, Any]],
    *,
    now: datetime,
    hints: Sequence[tuple[str, str]] = (),
) -> str:
    """The ``gastown describe`` text of one Polecat with its Events and how to see its work."""
    meta = obj.get("metadata") or {}
    head = _Section()
    head.add("Name", meta.get("name"))
    head.add("Namespace", meta.get("namespace"))
    head.add("Labels", _labels(meta.get("labels")))
    head.add("Created", _when(meta.get("creationTimestamp"), now))
    if meta.get("deletionTimestamp"):
        head.add("Deleting", f"since {_when(meta['deletionTimestamp'], now)}")
        head.add("Finalizers", ", ".join(meta.get("finalizers") or []) or NONE)
    mode_lines = _spec_lines(obj.get("spec") or {}, head)
    from gastown.cli.fleet_render import effective_lines  # noqa: PLC0415 - imports this module

    lines = head.lines() + mode_lines + effective_lines(obj) + _status_lines(obj, now)
    lines += _conditions_lines(obj, now)
    event_lines = events_table(events, now=now)
    if event_lines:
        lines += ["Events:", *(f"  {line}" for line in event_lines)]
    else:
        lines.append("Events:  <none>")
    if hints:
        tail = _Section()
        for key, value in hints:
            tail.add(key, value)
        lines += tail.lines()
    return "\n".join(lines)
