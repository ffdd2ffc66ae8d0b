"""Running git from the runner: argv lists only, output echoed and kept for diagnosis.

Blocking ``subprocess`` is right here: the runner is a standalone CLI doing one thing
at a time, not a part of the operator's event loop.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class GitResult:
    """Exit code and captured output of one git command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether git exited 0."""
        return self.returncode == 0


def git(args: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], echo: bool = True) -> GitResult:
    """Run ``git ARGS`` (never through a shell) and return what it said.

    stderr is echoed to our stderr so the container log shows git's own words; it is
    also returned so callers can explain failures.
    """
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if echo and proc.stderr:
        sys.stderr.write(proc.stderr)
        sys.stderr.flush()
    return GitResult(proc.returncode, proc.stdout, proc.stderr)
