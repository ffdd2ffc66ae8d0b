"""`convoy watch`'s views and outcome (pure); the watch itself is in test_fleet_cli_on_lab.py."""

from __future__ import annotations

import io
from typing import Any

from gastown.cli.convoy_watch import LineView, LiveView, outcome


def convoy(
    name: str,
    total: int,
    beads: list[tuple[str, str, str]] | None = None,
    complete: bool = False,
    **counts: int,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "total": total,
        "counts": counts,
        "beads": [
            {"beadID": b, "polecat": f"{name}-{i}", "phase": phase, **({"reason": reason} if reason else {})}
            for i, (b, phase, reason) in enumerate(beads or [], start=1)
        ],
    }
    if complete:
        status["conditions"] = [{"type": "Complete", "status": "True", "reason": "Finished", "message": ""}]
    return {"metadata": {"name": name}, "spec": {"count": total}, "status": status}


def test_line_view_prints_changes_and_each_failure_once() -> None:
    lines: list[str] = []
    now = [0.0]
    view = LineView(lines.append, clock=lambda: now[0])
    view.update([convoy("a", 3, pending=3), convoy("b", 1, pending=1)])
    view.update([convoy("a", 3, pending=3), convoy("b", 1, pending=1)])  # no change: nothing printed
    now[0] = 5.0
    view.update([convoy("a", 3, working=2, pending=1), convoy("b", 1, pending=1)])
    now[0] = 75.0
    failed = [("a-1", "Failed", "CloneFailed"), ("a-2", "Done", "")]
    view.update([convoy("a", 3, failed, done=1, failed=1, working=1), convoy("b", 1, pending=1)])
    view.update([convoy("a", 3, failed, done=1, failed=1, working=1), convoy("b", 1, pending=1)])
    assert lines == [
        "[   0s] convoy/a  0/3 finished (3 pending) Running",
        "[   0s] convoy/b  0/1 finished (1 pending) Running",
        "[   5s] convoy/a  0/3 finished (1 pending, 2 working) Running",
        "[  75s] convoy/a  bead a-1 (polecat a-1) Failed: CloneFailed",
        "[  75s] convoy/a  2/3 finished (1 working, 1 done, 1 failed) Running",
    ]


def test_live_view_draws_a_bar_per_convoy_with_its_failures() -> None:
    from rich.console import Console  # noqa: PLC0415

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    view = LiveView(console, "Convoys in namespace ns", clock=lambda: 0.0)
    view.update([convoy("a", 4, pending=4), convoy("b", 2, pending=2)])
    beads = [("a-1", "Failed", "CloneFailed"), ("a-2", "Stuck", "NoProgress"), ("a-3", "Done", "")]
    view.update(
        [convoy("a", 4, beads, done=1, failed=1, stuck=1, pending=1), convoy("b", 2, complete=True, done=2)]
    )
    view.close()
    final = buffer.getvalue().split("Convoys in namespace ns")[-1]  # the last frame
    rows = [" ".join(line.split()) for line in final.splitlines() if line.strip()]
    a = next(r for r in rows if r.startswith("convoy/a"))
    b = next(r for r in rows if r.startswith("convoy/b"))
    assert "━" in a and a.endswith("2/4 1 pending, 1 stuck, 1 done, 1 failed Running")
    assert b.endswith("2/2 2 done Complete")
    assert "✗ a-1 Failed: CloneFailed (polecat a-1)" in rows
    assert "! a-2 Stuck: NoProgress (polecat a-2)" in rows


def test_outcome_is_ok_only_when_every_bead_is_done() -> None:
    lines, failure = outcome([convoy("a", 2, complete=True, done=2)])
    assert lines == ["convoy/a Complete: 2 done (of 2)"] and failure is None
    lines, failure = outcome(
        [convoy("a", 2, complete=True, done=2), convoy("b", 3, complete=True, done=1, failed=1, pending=1)]
    )
    assert lines[1] == "convoy/b Failed: 1 pending, 1 done, 1 failed (of 3)"
    assert failure == "1 of 2 Convoys did not finish every bead: convoy/b (2 of 3 beads not Done)"
