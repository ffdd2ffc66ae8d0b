"""The runner's report: a JSON termination message the operator turns into status.result.

Kubernetes copies the file at ``terminationMessagePath`` into the container's
``state.terminated.message`` and cuts it at 4096 bytes, so the report is kept under
that size by shortening ``message`` (never the machine-read fields). The shape is the
contract with ``gastown.executors.kubernetes.observer``::

    {"branch": str, "commit": str | null, "pushed": bool, "agentExitCode": int, "message": str}
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 4096
DEFAULT_PATH = Path("/dev/termination-log")


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one ``gastown-agent run`` achieved."""

    branch: str
    commit: str | None
    pushed: bool
    agent_exit_code: int
    message: str

    @property
    def succeeded(self) -> bool:
        """The work was done (agent exit 0) and reached origin."""
        return self.agent_exit_code == 0 and self.pushed

    def to_json(self) -> str:
        """The termination message, at most :data:`MAX_BYTES` bytes of UTF-8.

        A message that does not fit is cut (the longest prefix that fits, plus "…").
        """
        text = self._json(self.message)
        if len(text.encode()) <= MAX_BYTES:
            return text
        low, high = 0, len(self.message)  # the longest prefix length that fits is in [low, high)
        while high - low > 1:
            mid = (low + high) // 2
            if len(self._json(self.message[:mid] + "…").encode()) <= MAX_BYTES:
                low = mid
            else:
                high = mid
        return self._json(self.message[:low] + "…")

    def _json(self, message: str) -> str:
        return json.dumps(
            {
                "branch": self.branch,
                "commit": self.commit,
                "pushed": self.pushed,
                "agentExitCode": self.agent_exit_code,
                "message": message,
            },
            ensure_ascii=False,
        )


def write_termination_message(path: Path, text: str) -> None:
    """Write ``text`` (cut to :data:`MAX_BYTES`) to the termination log.

    Failing to write is reported on stderr, not fatal: the exit code still tells.
    """
    data = text.encode()[:MAX_BYTES].decode(errors="ignore")
    try:
        path.write_text(data, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"gastown-agent: cannot write termination message to {path}: {exc}\n")
