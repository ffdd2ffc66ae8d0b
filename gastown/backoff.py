"""Backoff and rate limits: the one place retry delays are computed.

Four parts of the operator wait before trying again, and they used to compute the wait
four ways: the informer reconnecting a watch, the SSH pool reconnecting to a target or
re-opening a refused channel, the work queue re-adding a failing key, and ``sling
--wait`` riding out an apiserver outage. They all use :class:`Backoff` now:

* ``delay(attempt)`` is ``base * 2**attempt`` capped at ``cap``, times a jitter factor
  drawn from ``[1 - jitter, 1]`` (``jitter=0`` for exact delays: the work queue, whose
  per-key delays are client-go's and are pinned by tests; ``jitter=0.5`` spreads
  reconnects of many clients after a shared outage);
* :class:`BackoffState` adds the attempt counter for loops that reset after a success.

The work queue also has an overall limit: client-go's default controller rate limiter is
the *maximum* of a per-item exponential backoff and one token bucket (10 qps, burst 100)
shared by every key, so a mass failure (the apiserver rejecting every write) retries at
10/s after the first 100, not as fast as the per-key backoffs allow.
:class:`TokenBucket` is that bucket: :meth:`TokenBucket.reserve` takes a token now
or books the next free one and says how long to wait for it, never blocking (the queue
turns the wait into a timer). Time comes from an injectable monotonic clock so tests can
drive it.

Why not tenacity: tenacity wraps a call in a retry loop, while three of the four users
here need a delay to hand to something else (a timer, a reconnect loop that also resets
on healthy watch events); and no retry library has the shared token bucket. This module
is small and has no dependencies beyond the standard library, so the import-light CLI
can use it too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with optional jitter (see the module doc)."""

    base: float
    cap: float
    jitter: float = 0.0
    """Fraction of the delay that is random: the delay is drawn from [(1 - jitter) * d, d]."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"backoff base and cap must be >= 0, got {self.base} and {self.cap}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"backoff jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, *, rand: Callable[[float, float], float] = random.uniform) -> float:
        """The wait before retry ``attempt`` (0 for the first retry)."""
        exponent = max(attempt, 0)
        # 2**64 * base is far beyond any cap; avoid float overflow.
        step = self.cap if exponent >= 64 else min(self.cap, self.base * (2**exponent))
        if self.jitter:
            return float(step * rand(1.0 - self.jitter, 1.0))
        return float(step)

    def state(self) -> BackoffState:
        """A counter over this backoff for one retry loop."""
        return BackoffState(self)


@dataclass(slots=True)
class BackoffState:
    """The attempts of one retry loop: :meth:`next_delay` after a failure, :meth:`reset` after a success."""

    backoff: Backoff
    attempt: int = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; counts this failure."""
        delay = self.backoff.delay(self.attempt)
        self.attempt = min(self.attempt + 1, 64)
        return delay

    def reset(self) -> None:
        """Back to the first step (the operation succeeded)."""
        self.attempt = 0


@dataclass(slots=True)
class TokenBucket:
    """``qps`` tokens a second, at most ``burst`` saved up; never blocks (see the module doc).

    Starts full, as client-go's does. ``reserve()`` returns 0 while tokens are left;
    after that each call books the next token and returns how long until it is due, so
    N calls at once are spread 1/qps apart.
    """

    qps: float
    burst: int
    clock: Clock = time.monotonic
    _tokens: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        if self.qps <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs qps > 0 and burst >= 1, got {self.qps} and {self.burst}")
        self._tokens = float(self.burst)
        self._last = self.clock()

    def reserve(self) -> float:
        """Take a token; the seconds until it may be used (0 when one was available now)."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    @property
    def tokens(self) -> float:
        """Tokens available now (negative: that many are booked ahead)."""
        now = self.clock()
        return min(float(self.burst), self._tokens + (now - self._last) * self.qps)
