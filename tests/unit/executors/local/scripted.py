"""A scripted command runner for unit tests: answers by argv, records every call.

Unit tests only (no I/O); the integration tests run the same code over real SSH.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    exit_status: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class Call:
    argv: list[str]
    input: str | None
    env: dict[str, str]
    cwd: str | None
    idempotent: bool


Answer = Outcome | Callable[[Call], Outcome]


@dataclass
class ScriptedRunner:
    """``answers`` maps a key (a run of consecutive argv words) to an Outcome or a callback."""

    answers: dict[tuple[str, ...], Answer] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    delay: float = 0.0

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> Outcome:
        call = Call(list(argv), input, dict(env or {}), cwd, idempotent)
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        words = tuple(argv)
        for key in sorted(self.answers, key=len, reverse=True):  # the most specific key wins
            if any(words[i : i + len(key)] == key for i in range(len(words))):
                answer = self.answers[key]
                return answer(call) if callable(answer) else answer
        return Outcome(exit_status=99, stderr=f"unscripted: {list(argv)}")

    def argvs(self, *prefix: str) -> list[list[str]]:
        return [c.argv for c in self.calls if tuple(c.argv[1 : 1 + len(prefix)]) == prefix]
