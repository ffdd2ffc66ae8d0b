"""LocalExecutor's pure parts: field re-checks, the attach command, pane text, the wrapper script."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from gastown.api.models import Polecat
from gastown.executors.base import Executor, UserError
from gastown.executors.local.dispatchers.tmux import _State, run_script
from gastown.executors.local.executor import LocalExecutor, check_fields, pane_lines
from gastown.executors.local.tmux import TmuxCommands, TmuxDriver
from gastown.settings import Settings, SSHSettings
from tests.fixtures.sshd import make_polecat

from .scripted import Outcome, ScriptedRunner


def settings(**kw: object) -> Settings:
    return Settings(ssh=SSHSettings(host="10.0.0.5", port=2222, user="gastown"), **kw)  # type: ignore[arg-type]


def test_executor_implements_the_interface_and_needs_a_finalizer() -> None:
    executor: Executor = LocalExecutor(settings())  # mypy checks the Protocol here
    assert executor.needs_finalizer


def test_attach_command_for_a_tmux_polecat_is_exact() -> None:
    p = make_polecat("fix-login", namespace="team", local={"dispatcher": "tmux", "command": "claude"})
    assert LocalExecutor(settings(tmux_socket="ops")).attach_command(p) == [
        "ssh", "-t", "-p", "2222", "gastown@10.0.0.5",
        "tmux", "-L", "ops", "attach", "-t", "=gastown-team-fix-login",
    ]  # fmt: skip


def test_attach_command_for_a_gt_polecat_uses_its_status() -> None:
    p = make_polecat(
        "p",
        local={"dispatcher": "gt", "townRoot": "/t"},
        status_local={"polecatName": "Toast", "tmuxSocket": "t-abcdef", "tmuxSession": "de-Toast"},
    )
    argv = LocalExecutor(settings()).attach_command(p)
    assert argv[-6:] == ["tmux", "-L", "t-abcdef", "attach", "-t", "=de-Toast"]


def test_attach_command_quotes_what_the_remote_shell_would_parse() -> None:
    p = make_polecat(
        "p",
        local={"dispatcher": "gt", "townRoot": "/t"},
        status_local={"tmuxSocket": "s; touch x", "tmuxSession": "$(id)"},
    )
    argv = LocalExecutor(settings()).attach_command(p)
    remote = " ".join(argv[5:])  # what ssh sends to the remote shell
    assert shlex.split(remote) == ["tmux", "-L", "s; touch x", "attach", "-t", "=$(id)"]


def test_attach_before_a_gt_session_exists_says_so() -> None:
    p = make_polecat("p", local={"dispatcher": "gt", "townRoot": "/t"})
    with pytest.raises(UserError) as info:
        LocalExecutor(settings()).attach_command(p)
    assert info.value.reason == "NotAttachable"


def unchecked(**spec: object) -> Polecat:
    """A Polecat built WITHOUT validation, as if it slipped past the CRD schema and webhook."""
    base = make_polecat("p", local={"dispatcher": "tmux", "command": "x"})
    return base.model_copy(update={"spec": base.spec.model_copy(update=spec)})


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"beadID": "gt-1; rm -rf /"}, "InvalidBeadID"),
        ({"beadID": "$(id)"}, "InvalidBeadID"),
        ({"rig": "Demo Rig"}, "InvalidRig"),
        ({"rig": "a`id`"}, "InvalidRig"),
    ],
)
def test_fields_that_reach_a_shell_are_rechecked(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(UserError) as info:
        check_fields(unchecked(**spec))
    assert info.value.reason == reason


def test_relative_or_nul_paths_are_refused() -> None:
    p = make_polecat("p", local={"dispatcher": "tmux", "command": "x"})
    assert p.spec.local is not None
    for path in ("rel", "/a\x00b"):
        local = p.spec.local.model_copy(update={"workDir": path})
        bad = p.model_copy(update={"spec": p.spec.model_copy(update={"local": local})})
        with pytest.raises(UserError):
            check_fields(bad)


def test_pane_lines_drop_screen_padding_and_the_dead_banner() -> None:
    text = "hello\nworld\n\n\n\nPane is dead (status 3, Tue Nov 24 13:26:16 2026)\n\n"
    assert pane_lines(text) == ["hello", "world"]
    assert pane_lines("a\n  \nb\n\n") == ["a", "  ", "b"]
    assert pane_lines("") == []


def test_wrapper_script_records_the_exit_status(tmp_path: Path) -> None:
    state = tmp_path / "state dir $(x)"
    state.mkdir()
    (state / "command.sh").write_text("echo out; exit 7\n")
    script = run_script(tmux_binary="true", state_dir=str(state))
    res = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 7
    assert res.stdout == "out\n"
    assert (state / "exit-status").read_text() == "7\n"
    assert (state / "started").exists()
    assert not (state / "exit-status.tmp").exists()


def test_state_parsing() -> None:
    state = _State("uid=abc\nstarted\nexit=0\n")
    assert (state.uid, state.started, state.exit_status) == ("abc", True, 0)
    assert _State("exit=garbage").exit_status == -1
    assert _State("").exit_status is None


@pytest.mark.parametrize(
    ("outcome", "exists"),
    [
        (Outcome(0), True),
        (Outcome(1, stderr="can't find session: =x"), False),
        (Outcome(1, stderr="no server running on /tmp/tmux-0/s"), False),
        (Outcome(1, stderr="error connecting to /tmp/tmux-0/s (No such file or directory)"), False),
    ],
)
async def test_has_session_reads_tmux_answers(outcome: Outcome, exists: bool) -> None:
    driver = TmuxDriver(ScriptedRunner({("has-session",): outcome}), TmuxCommands(socket="s"))
    assert await driver.has_session("x") is exists


async def test_new_session_refuses_duplicates_without_error() -> None:
    dup = Outcome(1, stderr="duplicate session: x")
    driver = TmuxDriver(ScriptedRunner({("new-session",): dup}), TmuxCommands(socket="s"))
    assert await driver.new_session("x", cwd="/", command=["true"]) is False


async def test_list_sessions_without_a_server_is_empty() -> None:
    runner = ScriptedRunner({("list-sessions",): Outcome(1, stderr="no server running on /tmp/tmux-0/s")})
    assert await TmuxDriver(runner, TmuxCommands(socket="s")).list_sessions() == []
