"""The non-terminal progress view of `sling --wait`: one line per change."""

from __future__ import annotations

from typing import Any

from gastown.cli.progress import LineView, is_terminal


def state(phase: str | None, reason: str = "", message: str = "", **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "p"}, "status": dict(status)}
    if phase:
        obj["status"]["phase"] = phase
    if reason:
        obj["status"]["conditions"] = [
            {"type": "Ready", "status": "False", "reason": reason, "message": message}
        ]
    return obj


def test_line_view_prints_only_changes() -> None:
    lines: list[str] = []
    now = [100.0]
    view = LineView(lines.append, clock=lambda: now[0])
    view.update(state(None))
    view.update(state(None))  # nothing new: nothing printed
    now[0] = 103.0
    view.update(state("Dispatching", "Dispatching", "The work is being started."))
    now[0] = 130.0
    view.update(
        state("Working", "PodRunning", "agent running", kubernetes={"podName": "polecat-p", "nodeName": "n1"})
    )
    now[0] = 300.0
    view.update(state("Failed", "CloneFailed", "add the host key"))
    assert lines == [
        "[   0s] Pending",
        "[   3s] Dispatching Dispatching: The work is being started.",
        "[  30s] Working     PodRunning: agent running [pod/polecat-p on n1]",
        "[3m20s] Failed      CloneFailed: add the host key",
    ]


def test_terminal_phases() -> None:
    phases = ("Pending", "Working", "Stuck", "Done", "Failed", "Terminated")
    assert [is_terminal(state(p)) for p in phases] == [False, False, False, True, True, True]


def test_live_view_renders_the_steps_on_a_terminal() -> None:
    import io  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from gastown.cli.progress import LiveView  # noqa: PLC0415

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    view = LiveView(console, "polecat/p", clock=lambda: 0.0)
    view.update(state("Dispatching", "Dispatching", "creating the Pod"))
    view.update(
        state("Working", "PodRunning", "agent running", kubernetes={"podName": "polecat-p", "nodeName": "n"})
    )
    view.update(state("Failed", "AgentFailed", "the agent exited with code 2"))
    view.close()
    final = buffer.getvalue().split("polecat/p")[-1]  # the last frame
    rows = [line.split() for line in final.splitlines()]
    assert ["✓", "Pending"] in rows and ["✓", "Dispatching"] in rows and ["✓", "Working"] in rows
    assert ["✗", "Failed"] in rows
    assert "AgentFailed: the agent exited with code 2" in final
