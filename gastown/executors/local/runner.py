"""The one capability the tmux driver and the gt client need: run an argv remotely.

``ssh.BoundRunner`` provides it over SSH; unit tests provide scripted fakes. Keeping
it a Protocol keeps ``tmux`` and ``gt`` free of asyncssh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class CommandOutcome(Protocol):
    """Exit status and output of a finished command (non-zero exits are returned, not raised)."""

    @property
    def exit_status(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


class Runner(Protocol):
    """Runs ``argv`` (each element one literal argument) on the target host."""

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> CommandOutcome: ...
