"""tmux command builders and the socket/session naming rules (pure)."""

from __future__ import annotations

import re

import pytest

from gastown.executors.local.tmux import (
    TmuxCommands,
    gt_socket_name,
    sanitize_town_name,
    session_name,
    town_socket_name,
)

CMD = TmuxCommands(socket="sock", binary="tmux")


def test_every_session_command_targets_an_exact_session() -> None:
    for argv in (CMD.has_session("a"), CMD.kill_session("a")):
        assert argv[:3] == ["tmux", "-L", "sock"]
        assert argv[argv.index("-t") + 1] == "=a"


def test_every_pane_command_targets_an_exact_pane() -> None:
    for argv in (CMD.capture_pane("a"), CMD.send_text("a", "x"), CMD.send_enter("a"), CMD.pane_state("a")):
        assert argv[argv.index("-t") + 1] == "=a:"


def test_send_keys_is_literal_and_ends_options() -> None:
    argv = CMD.send_text("s", "-rm -rf / ; $(x)")
    assert argv[-3:] == ["-l", "--", "-rm -rf / ; $(x)"]
    assert CMD.send_enter("s")[-1] == "Enter"


def test_capture_includes_history_and_joins_wrapped_lines() -> None:
    argv = CMD.capture_pane("s")
    assert argv[3] == "capture-pane"
    assert {"-p", "-J"} <= set(argv)
    assert argv[argv.index("-S") + 1] == "-"
    assert "-S" not in CMD.capture_pane("s", history=False)


def test_new_session_is_detached_in_a_directory_with_env_and_an_argv_command() -> None:
    argv = CMD.new_session("s", cwd="/w d", command=["/bin/sh", "/x/run.sh"], env={"A": "1 2"})
    assert argv[:6] == ["tmux", "-L", "sock", "new-session", "-d", "-s"]
    assert argv[argv.index("-c") + 1] == "/w d"
    assert argv[argv.index("-e") + 1] == "A=1 2"
    assert argv[-2:] == ["/bin/sh", "/x/run.sh"]


def test_session_names_are_deterministic_and_simple_when_possible() -> None:
    assert session_name("team-a", "fix-login") == "gastown-team-a-fix-login"
    assert session_name("team-a", "fix-login") == session_name("team-a", "fix-login")


@pytest.mark.parametrize("name", ["a.b", "a:b", "a b", "x" * 250])
def test_session_names_are_sanitized_and_stay_distinct(name: str) -> None:
    got = session_name("ns", name)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,100}", got)
    assert got != session_name("ns", name.replace(".", "-").replace(":", "-").replace(" ", "-") + "z")


def test_names_that_sanitize_alike_get_different_sessions() -> None:
    assert session_name("ns", "a.b") != session_name("ns", "a-b")
    assert session_name("ns", "a.b") != session_name("ns", "a:b")


# Values the real gt v1.2.1 reported (`gt status --json` "socket") for these towns.
@pytest.mark.parametrize(
    ("given", "canonical", "socket"),
    [
        ("/tmp/realtown", "/tmp/realtown", "realtown-e8719f"),
        ("/tmp/Gas Town.Ü_2", "/tmp/Gas Town.Ü_2", "gas-town-2-4f514f"),
        # A symlinked town: gt names the socket after the path it was entered by,
        # and hashes the resolved path.
        ("/tmp/Link Town", "/tmp/realtown", "link-town-e8719f"),
    ],
)
def test_town_socket_matches_real_gt(given: str, canonical: str, socket: str) -> None:
    assert town_socket_name(given, canonical) == socket


def test_town_socket_without_a_canonical_path_hashes_the_cleaned_path() -> None:
    assert town_socket_name("/tmp/realtown/") == "realtown-e8719f"


# gt's own table (internal/session/registry_socket_test.go TestSanitizeTownName).
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("mytown", "mytown"),
        ("MyTown", "mytown"),
        ("my town", "my-town"),
        ("my_town!", "my-town"),
        ("  spaces  ", "spaces"),
        ("My-Town-123", "my-town-123"),
        ("café", "caf"),
        ("", "default"),
        ("!!!!", "default"),
        ("a/b/c", "a-b-c"),
    ],
)
def test_sanitize_town_name_like_gt(raw: str, clean: str) -> None:
    assert sanitize_town_name(raw) == clean


@pytest.mark.parametrize("env", [None, "", "default", "auto"])
def test_gt_tmux_socket_unset_default_or_auto_means_derived(env: str | None) -> None:
    assert gt_socket_name("/tmp/realtown", "/tmp/realtown", env) == "realtown-e8719f"


def test_gt_tmux_socket_other_values_are_used_verbatim() -> None:
    assert gt_socket_name("/tmp/realtown", "/tmp/realtown", "custom-sock") == "custom-sock"
