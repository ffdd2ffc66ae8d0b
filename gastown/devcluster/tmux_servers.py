"""Stopping the tmux servers that a dev session started, and nothing else.

tmux servers are daemons: they outlive the ssh session that started them, as they
must on a real host. ``gastown-operator dev`` gives every session of its sshd
``TMUX_TMPDIR=<dev dir>/tmux``, so each tmux server started through it (the tmux
dispatcher's ``gastown`` server, or one a user starts over the printed ssh command)
has its socket under that directory, and every process in such a server's panes
carries ``TMUX=<that socket>,...`` in its environment. That is how they are found
at shutdown: the user's own tmux servers (under /tmp) are never touched.

Stopping: ``tmux kill-server`` on each socket (tmux hangs up every pane, so the
agents get SIGHUP as from a closed terminal), then SIGTERM and, after a grace
period, SIGKILL to any process still carrying the directory in ``TMUX`` or
``TMUX_TMPDIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

_POLL = 0.05


def socket_dir(tmux_tmpdir: Path) -> Path:
    """Where tmux puts its sockets for this user under ``TMUX_TMPDIR``."""
    return tmux_tmpdir / f"tmux-{os.getuid()}"


def processes_of(tmux_tmpdir: Path) -> list[int]:
    """PIDs of tmux servers and pane processes whose environment points into ``tmux_tmpdir``."""
    exact = f"TMUX_TMPDIR={tmux_tmpdir}".encode()
    prefix = f"TMUX={socket_dir(tmux_tmpdir)}/".encode()
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var == exact or var.startswith(prefix):
                found.append(int(entry.name))
                break
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_now(tmux_tmpdir: Path) -> None:
    """SIGKILL every such process at once (a second Ctrl-C)."""
    _signal_all(processes_of(tmux_tmpdir), signal.SIGKILL)


async def stop(tmux_tmpdir: Path, *, grace: float = 2.0, tmux_binary: str = "tmux") -> None:
    """Kill each tmux server under ``tmux_tmpdir``; then whatever of theirs still runs."""
    sockets = await asyncio.to_thread(_sockets, tmux_tmpdir)
    for sock in sockets:
        proc = await asyncio.create_subprocess_exec(
            tmux_binary,
            "-S",
            str(sock),
            "kill-server",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    sent_term = False
    while pids := await asyncio.to_thread(processes_of, tmux_tmpdir):
        if loop.time() >= deadline:
            _signal_all(pids, signal.SIGKILL)
            break
        if not sent_term:
            _signal_all(pids, signal.SIGTERM)
            sent_term = True
        await asyncio.sleep(_POLL)


def _sockets(tmux_tmpdir: Path) -> list[Path]:
    directory = socket_dir(tmux_tmpdir)
    try:
        return sorted(path for path in directory.iterdir() if path.is_socket())
    except OSError:
        return []
