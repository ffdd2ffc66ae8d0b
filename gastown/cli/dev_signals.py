"""How ``gastown-operator dev`` hears "stop": Ctrl-C, SIGTERM, or the terminal closing.

The first SIGINT, SIGTERM or SIGHUP sets :attr:`StopSignals.requested`: dev then
stops everything it started, in order, and exits 0. A second one (an impatient
Ctrl-C) sets :attr:`StopSignals.hurry`: whatever is still running is killed at once,
and cleanup still finishes (nothing is left behind either way).

SIGHUP means the terminal is gone: writing to it would fail with EIO, and a failed
flush of stdout at exit turns exit status 0 into 120. So on SIGHUP stdin, stdout
and stderr are pointed at /dev/null before anything else is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The stop signals, counted. Install in the running loop; the loop removes them on close."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.first: signal.Signals | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    def _received(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            detach_from_terminal()
        if self.requested.is_set():
            self.hurry.set()
            return
        self.first = sig
        self.requested.set()

    @property
    def reason(self) -> str:
        """What the user did, in words."""
        return {
            signal.SIGINT: "Ctrl-C",
            signal.SIGTERM: "SIGTERM",
            signal.SIGHUP: "terminal closed (SIGHUP)",
        }.get(self.first or signal.SIGINT, "signal")


def detach_from_terminal() -> None:
    """Point fds 0-2 at /dev/null: the terminal hung up, so nothing can be shown anyway."""
    with contextlib.suppress(OSError, ValueError):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)


def say(text: str = "") -> None:
    """Print a line for the user; a vanished terminal is not an error."""
    with contextlib.suppress(OSError, ValueError):
        print(text, flush=True)
