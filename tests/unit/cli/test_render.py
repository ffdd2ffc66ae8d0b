"""The CLI's formatting: kubectl-shaped tables, ages and describe text, from API dicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gastown.cli import render

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def polecat(
    name: str = "fix-login",
    *,
    namespace: str = "team-a",
    mode: str = "local",
    phase: str | None = None,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": ts(300),
        },
        "spec": {"rig": "gastown", "beadID": "gt-abc12", "executionMode": mode, **(spec or {})},
    }
    if phase or status:
        obj["status"] = {"phase": phase, **(status or {})} if phase else dict(status or {})
    return obj


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (47 * 3600, "47h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (10 * 86400, "10d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
        (-0.5, "0s"),
        (-5, "<invalid>"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, expected: str) -> None:
    assert render.human_duration(seconds) == expected


def test_age_of_unparseable_timestamp_is_unknown() -> None:
    assert render.age("yesterday", NOW) == "<unknown>"
    assert render.age(None, NOW) == "<unknown>"
    assert render.age(ts(42), NOW) == "42s"


def test_table_pads_columns_three_spaces_apart_and_flattens_newlines() -> None:
    lines = render.table(["A", "LONGER"], [["xxxx", "1"], ["y", "two\nlines"]])
    assert lines == ["A      LONGER", "xxxx   1", "y      two lines"]


def test_list_table_columns_and_defaults() -> None:
    items = [
        polecat("a", phase="Working"),
        polecat("b"),  # no status yet: Pending
    ]
    lines = render.list_table(items, now=NOW)
    assert lines[0].split() == ["NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE"]
    assert lines[1].split() == ["a", "gastown", "local", "Working", "gt-abc12", "5m"]
    assert lines[2].split() == ["b", "gastown", "local", "Pending", "gt-abc12", "5m"]


def test_list_table_wide_and_all_namespaces() -> None:
    k8s = polecat(
        "k",
        mode="kubernetes",
        phase="Failed",
        status={
            "kubernetes": {"podName": "polecat-k", "nodeName": "node-1"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "CloneFailed", "message": "x"}],
        },
    )
    local = polecat(
        "l", phase="Working", status={"local": {"tmuxSession": "gastown-l", "host": "ops.example"}}
    )
    lines = render.list_table([k8s, local], now=NOW, wide=True, all_namespaces=True)
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE", "WORKLOAD", "HOST", "BRANCH", "REASON",
    ]  # fmt: skip
    assert lines[1].split() == [
        "team-a", "k", "gastown", "kubernetes", "Failed", "gt-abc12", "5m",
        "pod/polecat-k", "node-1", "<none>", "CloneFailed",
    ]  # fmt: skip
    assert lines[2].split()[7:9] == ["tmux/gastown-l", "ops.example"]


def test_as_list_is_a_v1_list() -> None:
    doc = render.as_list([render.with_kind({"metadata": {"name": "x"}})])
    assert doc["kind"] == "List"
    assert doc["items"][0]["kind"] == "Polecat"
    assert doc["items"][0]["apiVersion"] == "gastown.gastown.io/v1alpha1"


def failed_kubernetes_polecat() -> dict[str, Any]:
    return polecat(
        "broken",
        mode="kubernetes",
        spec={
            "task": "line one\nline two",
            "kubernetes": {
                "gitRepository": "git@github.com:me/app.git",
                "gitSecretRef": {"name": "git-ssh"},
                "agentSecretRef": {"name": "anthropic", "key": "api-key"},
                "resources": {"limits": {"memory": "4Gi", "cpu": "2"}},
            },
        },
        phase="Failed",
        status={
            "observedGeneration": 1,
            "startTime": ts(200),
            "completionTime": ts(100),
            "kubernetes": {"podName": "polecat-broken", "podPhase": "Failed", "nodeName": "kwok-node-0"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "CloneFailed",
                    "message": "git-clone failed: Host key verification failed; add the host to the "
                    "known_hosts ConfigMap",
                    "lastTransitionTime": ts(100),
                },
                {
                    "type": "Dispatched",
                    "status": "True",
                    "reason": "PodCreated",
                    "lastTransitionTime": ts(200),
                },
            ],
        },
    )


def test_describe_failed_polecat_shows_what_to_fix_up_front() -> None:
    text = render.describe(failed_kubernetes_polecat(), [], now=NOW, hints=[("Logs", "gastown logs broken")])
    lines = text.splitlines()
    status_at = lines.index("Status:")
    status_block = "\n".join(lines[status_at : status_at + 4])
    assert "Phase:" in status_block and "Failed" in status_block
    assert "Reason:" in status_block and "CloneFailed" in status_block
    assert "add the host to the known_hosts ConfigMap" in status_block
    assert "Events:  <none>" in text
    assert lines[-1].startswith("Logs:") and lines[-1].endswith("gastown logs broken")
    # Multi-line task keeps its lines, aligned under the value column.
    task_at = next(i for i, line in enumerate(lines) if line.startswith("Task:"))
    assert lines[task_at].endswith("line one")
    assert lines[task_at + 1].strip() == "line two"
    assert lines[task_at + 1].index("line two") == lines[task_at].index("line one")


def test_describe_shows_secret_names_not_values() -> None:
    text = render.describe(failed_kubernetes_polecat(), [], now=NOW)
    assert "Git Secret:" in text and "git-ssh" in text
    assert "anthropic (key api-key)" in text
    assert "cpu=2, memory=4Gi" in text


def test_describe_local_polecat() -> None:
    obj = polecat(
        "loc",
        spec={"local": {"dispatcher": "tmux", "command": "claude", "workDir": "/srv/app"}},
        phase="Working",
        status={
            "local": {"host": "ops", "tmuxSocket": "gastown", "tmuxSession": "gp-loc", "sessionActive": True}
        },
    )
    text = render.describe(obj, [], now=NOW)
    for expected in (
        "Dispatcher:",
        "tmux",
        "Command:",
        "claude",
        "tmux Session:",
        "gp-loc",
        "Session Active:",
    ):
        assert expected in text


def test_describe_flags_stale_status() -> None:
    obj = polecat("s", phase="Working", status={"observedGeneration": 1})
    obj["metadata"]["generation"] = 2
    assert "not yet reconciled" in render.describe(obj, [], now=NOW)


def test_events_table_orders_by_time_and_names_other_objects() -> None:
    events = [
        {
            "type": "Warning",
            "reason": "CloneFailed",
            "note": "git-clone failed",
            "eventTime": "2026-11-24T11:59:00.000000Z",
            "reportingController": "gastown.gastown.io/operator",
            "regarding": {"kind": "Polecat", "name": "broken"},
        },
        {
            "type": "Normal",
            "reason": "Scheduled",
            "note": "assigned to node",
            "deprecatedLastTimestamp": "2026-11-24T11:58:00Z",
            "deprecatedFirstTimestamp": "2026-11-24T11:50:00Z",
            "deprecatedCount": 3,
            "deprecatedSource": {"component": "default-scheduler"},
            "regarding": {"kind": "Pod", "name": "polecat-broken"},
        },
    ]
    lines = render.events_table(events, now=NOW)
    assert lines[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert "Scheduled" in lines[1] and "(x3 over 10m)" in lines[1] and "pod/polecat-broken:" in lines[1]
    assert "CloneFailed" in lines[2] and "60s" in lines[2] and "gastown.gastown.io/operator" in lines[2]
    text = render.describe(failed_kubernetes_polecat(), events, now=NOW)
    assert "Events:\n  Type" in text
