"""``gastown-operator dev --shell``: a shell with the dev environment, in this terminal.

The shell gets the variables of the env file (PATH with the venv and the lab's
binaries, KUBECONFIG, GASTOWN_SSH_*) and becomes the terminal's foreground process
group, as a shell's job control would make it: Ctrl-C in the shell (to stop a
``kubectl get -w``) reaches the shell's jobs only, never dev. When the shell exits,
dev takes the terminal back and stops everything; when dev stops first (SIGTERM,
the terminal closed), the shell gets SIGHUP, as from a closed terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def _ttou_ignored() -> Iterator[None]:
    """A background process group may only take the terminal with SIGTTOU ignored."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _take_foreground() -> None:
    """In the child: a process group of its own, in the terminal's foreground."""
    os.setpgid(0, 0)
    with _ttou_ignored():
        os.tcsetpgrp(0, os.getpgrp())


def shell_argv() -> list[str]:
    """The user's shell ($SHELL, else bash), interactive."""
    return [os.environ.get("SHELL") or "/bin/bash", "-i"]


class DevShell:
    """The running shell; :meth:`wait` returns when it exits, :meth:`hang_up` ends it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, variables: Mapping[str, str]) -> DevShell:
        """Start the shell on this terminal (stdin must be one) with ``variables`` set."""
        if not os.isatty(0):
            raise RuntimeError("--shell needs a terminal on stdin")
        proc = await asyncio.create_subprocess_exec(
            *shell_argv(), env={**os.environ, **variables}, preexec_fn=_take_foreground
        )
        return cls(proc)

    async def wait(self) -> int:
        """Wait for the shell to exit; then take the terminal back for dev's own output."""
        code = await self.proc.wait()
        reclaim_terminal()
        return code

    async def hang_up(self, timeout: float = 2.0) -> None:
        """End the shell and its jobs the way a closed terminal would."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGHUP)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        reclaim_terminal()


def reclaim_terminal() -> None:
    """Make this process's group the terminal's foreground again (if there is one)."""
    with contextlib.suppress(OSError), _ttou_ignored():
        os.tcsetpgrp(sys.stdin.fileno(), os.getpgrp())
