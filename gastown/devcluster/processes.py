"""Stopping a child process the same way everywhere: a signal, a bounded wait, then SIGKILL.

The lab's components and the user-level sshd both need it; a process that already
exited (or is exiting under us) is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from asyncio.subprocess import Process


async def terminate(proc: Process, *, timeout: float, first: signal.Signals = signal.SIGTERM) -> None:
    """Send ``first``; SIGKILL if the process has not exited after ``timeout`` s; reap it."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        kill_now(proc)
        await proc.wait()


def kill_now(proc: Process | None) -> None:
    """SIGKILL at once without waiting (whoever awaits the process reaps it)."""
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
