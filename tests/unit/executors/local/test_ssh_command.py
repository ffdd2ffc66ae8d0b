"""The remote command line built from an argv: every element arrives as one literal argument.

Checked with a real POSIX shell (``/bin/sh -c``), which is what sshd hands the line
to on the target host: no SSH is needed to prove the quoting.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gastown.executors.base import UserError
from gastown.executors.local.ssh import SSHTarget, build_command
from gastown.settings import SSHSettings

HOSTILE = [
    "$(touch PWNED-subst)",
    "`touch PWNED-backtick`",
    "; touch PWNED-semicolon",
    "' ; touch PWNED-quote ; '",
    '" ; touch PWNED-dquote ; "',
    "line one\ntouch PWNED-newline",
    "$HOME ${PATH} $$ $0",
    "a && b || c | d > e < f & g",
    "*",
    "-n",
    "",
    "tab\there",
    "ünïcödé ✓",
]


def run_in_sh(line: str, cwd: Path) -> bytes:
    return subprocess.run(["/bin/sh", "-c", line], cwd=cwd, capture_output=True, check=True).stdout


def test_argv_elements_arrive_literally_through_a_real_shell(tmp_path: Path) -> None:
    line = build_command(["printf", "%s\\0", *HOSTILE])
    out = run_in_sh(line, tmp_path)
    assert out.split(b"\0")[:-1] == [s.encode() for s in HOSTILE]
    assert not list(tmp_path.glob("PWNED*"))


def test_env_values_arrive_literally(tmp_path: Path) -> None:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}
    line = build_command(["env"], env=env)
    out = run_in_sh(line, tmp_path).decode()
    for name, value in env.items():
        assert f"{name}={value}\n" in out + "\n"
    assert not list(tmp_path.glob("PWNED*"))


def test_cwd_with_hostile_name_is_entered_literally(tmp_path: Path) -> None:
    weird = tmp_path / "dir $(touch PWNED) `x` ; 'q' \"d\"\nnl"
    weird.mkdir()
    out = run_in_sh(build_command(["pwd"], cwd=str(weird)), tmp_path)
    assert out.decode().rstrip("\n") == str(weird)
    assert not list(tmp_path.glob("PWNED*"))


def test_cwd_that_looks_like_an_option(tmp_path: Path) -> None:
    (tmp_path / "-P").mkdir()
    out = run_in_sh(build_command(["pwd"], cwd="-P"), tmp_path)
    assert out.decode().strip() == str(tmp_path / "-P")


def test_nul_bytes_are_rejected_as_user_errors() -> None:
    with pytest.raises(UserError):
        build_command(["echo", "a\x00b"])
    with pytest.raises(UserError):
        build_command(["echo"], env={"X": "\x00"})


def test_invalid_env_names_and_empty_argv_are_bugs() -> None:
    with pytest.raises(ValueError):
        build_command(["env"], env={"A B": "x"})
    with pytest.raises(ValueError):
        build_command(["env"], env={"1A": "x"})
    with pytest.raises(ValueError):
        build_command([])


def test_target_needs_a_host_and_names_itself_like_known_hosts() -> None:
    with pytest.raises(UserError) as info:
        SSHTarget.from_settings(SSHSettings())
    assert info.value.reason == "LocalModeDisabled"
    assert "GASTOWN_SSH_HOST" in info.value.message
    target = SSHTarget.from_settings(SSHSettings(host="127.0.0.1", port=2222, user="me"))
    assert target.known_hosts_name == "[127.0.0.1]:2222"
    assert SSHTarget.from_settings(SSHSettings(host="h", port=22)).known_hosts_name == "h"
