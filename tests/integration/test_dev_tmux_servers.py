"""Stopping the tmux servers a dev session started, and only those.

Real tmux: one server under a dev session's TMUX_TMPDIR (with an agent-like loop in
its pane) and one on the normal socket directory, standing for the user's own.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from gastown.devcluster import tmux_servers
from tests.fixtures.sshd import kill_tmux_server, require_sshd


async def _tmux(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_stop_ends_the_dev_servers_and_their_panes_but_not_the_users(tmp_path: Path) -> None:
    require_sshd()
    dev_dir = tmp_path / "tmux"
    dev_dir.mkdir()
    dev_env = {**os.environ, "TMUX_TMPDIR": str(dev_dir)}
    dev_env.pop("TMUX", None)
    user_env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_TMPDIR")}
    user_socket = f"gastown-test-user-{uuid.uuid4().hex[:6]}"
    loop = "while :; do sleep 1; done"
    rc, out = await _tmux("-L", "gastown", "new-session", "-d", "-s", "agent", loop, env=dev_env)
    assert rc == 0, out
    rc, out = await _tmux("-L", user_socket, "new-session", "-d", "-s", "mine", loop, env=user_env)
    assert rc == 0, out
    try:
        rc, pane_pid = await _tmux(
            "-L", "gastown", "display-message", "-p", "-t", "=agent:", "#{pane_pid}", env=dev_env
        )
        assert rc == 0, pane_pid
        found = tmux_servers.processes_of(dev_dir)
        assert int(pane_pid) in found  # the agent in the pane is known as the session's

        await tmux_servers.stop(dev_dir, grace=2.0)

        assert tmux_servers.processes_of(dev_dir) == []
        for pid in found:
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"pid {pid} survived"
        rc, out = await _tmux("-L", user_socket, "has-session", "-t", "=mine", env=user_env)
        assert rc == 0, f"the user's own tmux server was touched: {out}"
    finally:
        await kill_tmux_server(user_socket)
        tmux_servers.kill_now(dev_dir)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
