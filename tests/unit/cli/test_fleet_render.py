"""How Rigs, Convoys and a Polecat's effective values are shown (pure: dicts in, text out)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gastown.cli import render
from gastown.cli.fleet_render import (
    bead_rows,
    convoy_table,
    describe_convoy,
    describe_rig,
    effective_lines,
    rig_table,
    state_of,
)

NOW = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
T0 = "2026-01-01T12:00:00Z"


def convoy(name: str = "batch", *, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": T0},
        "spec": {"template": {"spec": {"rig": "gastown"}}, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def complete(status: str = "True") -> dict[str, Any]:
    return {
        "type": "Complete",
        "status": status,
        "reason": "Finished",
        "message": "",
        "lastTransitionTime": T0,
    }


def test_convoy_state_from_the_complete_condition_and_the_counts() -> None:
    beads = [{"beadID": "gt-1"}, {"beadID": "gt-2"}]
    assert state_of(convoy(beads=beads)) == "Pending"
    running = {"total": 2, "counts": {"working": 2}, "conditions": [complete("False")]}
    assert state_of(convoy(beads=beads, status=running)) == "Running"
    done = {"total": 2, "counts": {"done": 2}, "conditions": [complete()]}
    assert state_of(convoy(beads=beads, status=done)) == "Complete"
    stopped = {"total": 2, "counts": {"done": 1, "failed": 1}, "conditions": [complete()]}
    assert state_of(convoy(beads=beads, status=stopped)) == "Failed"
    never_started = {"total": 2, "counts": {"failed": 1, "pending": 1}, "conditions": [complete()]}
    assert state_of(convoy(beads=beads, status=never_started)) == "Failed"


def test_convoy_table_before_and_after_status() -> None:
    items = [
        convoy("a", count=5),
        convoy(
            "b",
            beads=[{"beadID": "gt-1"}, {"beadID": "gt-2"}, {"beadID": "gt-3"}],
            parallelism=2,
            failurePolicy="Stop",
            maxFailures=2,
            status={"total": 3, "counts": {"done": 1, "working": 1, "stuck": 1}},
        ),
    ]
    lines = convoy_table(items, now=NOW)
    assert lines[0].split() == ["NAME", "RIG", "DONE", "WORKING", "PENDING", "FAILED", "STATE", "AGE"]
    assert lines[1].split() == ["a", "gastown", "0/5", "0", "5", "0", "Pending", "10m"]
    assert lines[2].split() == ["b", "gastown", "1/3", "2", "0", "0", "Running", "10m"]
    wide = convoy_table(items, now=NOW, wide=True, all_namespaces=True)
    assert wide[0].split()[0] == "NAMESPACE" and wide[0].split()[-3:] == ["PARALLELISM", "POLICY", "MODE"]
    assert wide[2].split()[-5:] == ["2", "Stop", "after", "2", "(rig's)"]


def test_bead_rows_follow_the_spec_order_and_fill_in_status() -> None:
    obj = convoy(
        beads=[{"beadID": "gt-1"}, {"beadID": "gt-2"}],
        status={
            "beads": [{"beadID": "gt-2", "polecat": "batch-2", "phase": "Done", "branch": "polecat/batch-2"}]
        },
    )
    assert bead_rows(obj) == [
        {"beadID": "gt-1"},
        {"beadID": "gt-2", "polecat": "batch-2", "phase": "Done", "branch": "polecat/batch-2"},
    ]
    assert [r["beadID"] for r in bead_rows(convoy("soak", count=3))] == ["soak-1", "soak-2", "soak-3"]


def test_describe_convoy_counts_times_beads_conditions_and_events() -> None:
    obj = convoy(
        beads=[{"beadID": "gt-1", "task": "one"}, {"beadID": "gt-2"}],
        parallelism=2,
        failurePolicy="Stop",
        maxFailures=1,
        ttlSecondsAfterFinished=60,
        status={
            "total": 2,
            "counts": {"done": 1, "failed": 1},
            "startTime": "2026-01-01T12:01:00Z",
            "completionTime": "2026-01-01T12:04:30Z",
            "beads": [
                {"beadID": "gt-1", "polecat": "batch-1", "phase": "Done", "branch": "polecat/batch-1"},
                {"beadID": "gt-2", "polecat": "batch-2", "phase": "Failed", "reason": "CloneFailed"},
            ],
            "conditions": [complete()],
        },
    )
    event = {
        "type": "Warning",
        "reason": "BeadFailed",
        "note": "gt-2 failed",
        "eventTime": "2026-01-01T12:04:00.000000Z",
        "reportingController": "gastown.gastown.io/operator",
        "regarding": {"kind": "Convoy", "name": "batch"},
    }
    text = describe_convoy(obj, [event], now=NOW)
    lines = text.splitlines()
    assert "Failure Policy:     Stop after 1 failed" in lines
    assert "TTL After Finished: 60s (results stay in the Convoy's status)" in lines
    assert "  State:     Failed" in lines
    assert "  Progress:  2/2 finished: 1 done, 1 failed" in lines
    assert "  Duration:  3m30s" in lines
    beads = lines[lines.index("Beads:") + 1 : lines.index("Conditions:")]
    assert beads[0].split() == ["BEAD", "POLECAT", "PHASE", "BRANCH", "REASON"]
    assert beads[1].split() == ["gt-1", "batch-1", "Done", "polecat/batch-1"]
    assert beads[2].split() == ["gt-2", "batch-2", "Failed", "<none>", "CloneFailed"]
    assert lines[lines.index("Conditions:") + 2].split()[:3] == ["Complete", "True", "Finished"]
    events = text[text.index("Events:") :]
    assert "BeadFailed" in events and "gt-2 failed" in events and "convoy/batch" not in events


def test_rig_table_and_describe_with_polecats_by_phase() -> None:
    rig = {
        "metadata": {"name": "webapp", "namespace": "ns", "creationTimestamp": T0},
        "spec": {
            "executionMode": "kubernetes",
            "maxActivePolecats": 2,
            "kubernetes": {
                "gitRepository": "git@github.com:me/app.git",
                "agentSecretRef": {"name": "agent"},
                "image": "ghcr.io/me/agent:1",
            },
        },
        "status": {"activePolecats": 2, "waitingPolecats": 1},
    }
    bare = {"metadata": {"name": "bare", "creationTimestamp": T0}, "spec": {}}
    lines = rig_table([rig, bare], now=NOW)
    assert [line.split() for line in lines] == [
        ["NAME", "MODE", "MAX", "ACTIVE", "WAITING", "AGE"],
        ["webapp", "kubernetes", "2", "2", "1", "10m"],
        ["bare", "local", "unlimited", "-", "-", "10m"],
    ]
    polecats = [
        {"metadata": {"name": n}, "status": {"phase": p}}
        for n, p in (("w-1", "Working"), ("w-2", "Working"), ("w-3", "Done"))
    ] + [{"metadata": {"name": "w-4"}}]
    text = describe_rig(rig, polecats, [], now=NOW)
    lines = text.splitlines()
    assert "Defaults (kubernetes):" in lines
    assert "  Agent Secret: agent (key api-key)" in lines
    assert ["Max", "Active:", "2"] in [line.split() for line in lines]
    block = lines[lines.index("Polecats (4):") + 1 : lines.index("Conditions:  <none>")]
    assert [row.split() for row in block] == [
        ["PHASE", "COUNT", "POLECATS"],
        ["Pending", "1", "w-4"],
        ["Working", "2", "w-1,", "w-2"],
        ["Done", "1", "w-3"],
    ]


def test_polecat_describe_shows_effective_values_and_what_came_from_the_rig() -> None:
    polecat = {
        "metadata": {"name": "add-metrics", "namespace": "ns"},
        "spec": {
            "rig": "webapp",
            "beadID": "gt-1",
            "executionMode": "kubernetes",
            "kubernetes": {"workBranch": "w"},
        },
        "status": {
            "phase": "Working",
            "effective": {
                "rig": "webapp",
                "rigGeneration": 3,
                "executionMode": "kubernetes",
                "agent": "claude-code",
                "kubernetes": {
                    "gitRepository": "git@github.com:me/app.git",
                    "workBranch": "w",
                    "resources": {"limits": {"cpu": "2"}},
                },
                "fromRig": ["kubernetes.gitRepository", "kubernetes.resources.limits"],
            },
        },
    }
    text = render.describe(polecat, [], now=NOW)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    block = lines[lines.index("Effective (resolved at dispatch):") + 1 : lines.index("Status:")]
    assert block == [
        "Rig: webapp (generation 3, at dispatch)",
        "executionMode: kubernetes",
        "agent: claude-code",
        "kubernetes.gitRepository: git@github.com:me/app.git (from rig)",
        "kubernetes.workBranch: w",
        "kubernetes.resources.limits.cpu: 2 (from rig)",
        "From Rig: kubernetes.gitRepository, kubernetes.resources.limits",
    ]
    # Without status.effective (no Rig at dispatch, or not dispatched yet): nothing extra.
    del polecat["status"]["effective"]
    assert effective_lines(polecat) == []
    assert "Effective" not in render.describe(polecat, [], now=NOW)


def test_list_and_logs_follow_the_effective_mode_of_a_rig_based_polecat() -> None:
    """A Polecat whose mode came from its Rig: `list` shows it, logs/attach go where it runs."""
    from gastown.cli.workload import mode_of, parse_polecat  # noqa: PLC0415

    obj = {
        "metadata": {"name": "add-metrics", "namespace": "ns", "creationTimestamp": T0},
        "spec": {"rig": "webapp", "beadID": "gt-1", "executionMode": "local"},  # the CRD's default
        "status": {
            "phase": "Working",
            "effective": {
                "rig": "webapp",
                "rigGeneration": 1,
                "executionMode": "kubernetes",
                "agent": "claude-code",
                "kubernetes": {"gitRepository": "git@github.com:me/app.git", "workBranch": "w"},
                "fromRig": ["executionMode", "kubernetes.gitRepository"],
            },
        },
    }
    assert render.list_table([obj], now=NOW)[1].split()[:3] == ["add-metrics", "webapp", "kubernetes"]
    polecat = parse_polecat(obj)
    assert mode_of(polecat).value == "kubernetes"
    assert polecat.work_branch == "w" and polecat.spec.local is None
    del obj["status"]["effective"]  # not dispatched through a Rig: the spec is what runs
    assert mode_of(parse_polecat(obj)).value == "local"
    assert render.list_table([obj], now=NOW)[1].split()[2] == "local"


def test_describe_of_a_polecat_that_leaves_its_mode_to_the_rig() -> None:
    obj = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"rig": "webapp", "beadID": "gt-1"}}
    lines = [" ".join(line.split()) for line in render.describe(obj, [], now=NOW).splitlines()]
    assert "Mode: (unset: the rig's, else local)" in lines
    assert "Agent: (unset: the rig's, else claude-code)" in lines
