"""``gastown-operator dev`` from the README: a lab, the operator, and a local Polecat
whose tmux session a user can attach to with the command it prints.

Real parts: the test lab, OpenSSH's sshd, tmux, and the printed ssh command run by a
real terminal (an outer tmux session stands in for the user's terminal).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import uuid

import pytest

from tests.fixtures.lab import require_lab
from tests.fixtures.sshd import require_sshd

pytestmark = [pytest.mark.lab, pytest.mark.sshd]


async def _tmux(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_dev_reaches_a_working_polecat_that_can_be_attached() -> None:
    require_lab()
    require_sshd()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gastown.cli.operator",
        "dev",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    outer = f"user-terminal-{uuid.uuid4().hex[:6]}"
    try:
        async with asyncio.timeout(120):
            while not any("Ctrl-C to stop" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "dev exited early:\n" + "".join(lines)
                lines.append(line)
        output = "".join(lines)
        assert "phase: Working" in output, output
        [attach] = [line.strip() for line in lines if line.strip().startswith("ssh -t ")]
        assert "tmux -L gastown attach -t =gastown-default-hello-polecat" in attach

        # The user's terminal: run the printed command and read what the agent prints.
        rc, out = await _tmux(
            "-L",
            outer,
            "new-session",
            "-d",
            "-s",
            outer,
            "-x",
            "200",
            "-y",
            "50",
            attach,
        )
        assert rc == 0, out
        screen = ""
        for _ in range(100):
            _, screen = await _tmux("-L", outer, "capture-pane", "-p", "-t", f"={outer}:")
            if "Polecat at work" in screen and "step" in screen:
                break
            await asyncio.sleep(0.1)
        assert "Polecat at work" in screen, screen
        assert "Say hello from a tmux session on this host." in screen, screen
    finally:
        await _tmux("-L", outer, "kill-server")
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, "".join(lines) + rest.decode()
    # Stopping removed the example, and with it the tmux session.
    rc, out = await _tmux("-L", "gastown", "has-session", "-t", "=gastown-default-hello-polecat")
    assert rc != 0, out
    assert shlex.split(attach)[0] == "ssh"
