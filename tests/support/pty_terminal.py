"""A command on a real pseudo-terminal, as a terminal emulator runs it.

The command is a session leader with the pty as its controlling terminal, in the
terminal's foreground process group. So :meth:`PtyTerminal.ctrl_c` is exactly a
user's Ctrl-C (the byte ``\\x03``; the kernel's line discipline turns it into
SIGINT for the whole foreground process group), and :meth:`PtyTerminal.close` is
the terminal window closing (the kernel hangs up the tty and sends SIGHUP to the
session leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import struct
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _take_terminal() -> None:
    """In the child (after setsid): make the pty on fd 0 the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyTerminal:
    """One command on one pty; read what it shows with :attr:`text`."""

    def __init__(self, master: int, proc: asyncio.subprocess.Process) -> None:
        self._master: int | None = master
        self.proc = proc
        self._output = bytearray()
        self._eof = False
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None
    ) -> PtyTerminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_take_terminal,
            )
        finally:
            os.close(slave)
        return cls(master, proc)

    def _read(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._eof = True
        self._output += data
        self._changed.set()

    @property
    def text(self) -> str:
        """Everything shown so far, without colour codes and with plain newlines."""
        return _ANSI.sub(b"", bytes(self._output)).replace(b"\r\n", b"\n").decode(errors="replace")

    async def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the output matches ``pattern`` (a regex); fail with the output if not."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    match = re.search(pattern, self.text)
                    if match:
                        return match
                    if self._eof:
                        raise AssertionError(f"the terminal closed before {pattern!r}:\n{self.text}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout:.0f} s:\n{self.text}") from None

    def foreground_group(self) -> int:
        """The process group the terminal's Ctrl-C goes to."""
        assert self._master is not None
        return os.tcgetpgrp(self._master)

    def type(self, text: str) -> None:
        """Keys, as typed (end with a newline for Enter)."""
        assert self._master is not None
        os.write(self._master, text.encode())

    def ctrl_c(self) -> None:
        """What the Ctrl-C key sends."""
        assert self._master is not None
        os.write(self._master, b"\x03")

    def close(self) -> None:
        """Close the terminal (the session leader gets SIGHUP)."""
        if self._master is None:
            return
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        self._master = None

    async def wait_exit(self, timeout: float) -> int:
        """The command's exit status; fails with the output if it runs past ``timeout``."""
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running after {timeout:.0f} s:\n{self.text}") from None

    async def kill(self) -> None:
        """Test cleanup: make sure the command is gone."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.close()
