"""The one backoff: capped exponential steps, bounded jitter, a resettable counter, a token bucket."""

from __future__ import annotations

import pytest

from gastown.backoff import Backoff, TokenBucket


def test_steps_double_and_cap() -> None:
    backoff = Backoff(base=0.2, cap=5.0)
    assert [backoff.delay(n) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff.delay(10_000) == 5.0


def test_jitter_stays_in_the_upper_part_of_the_step() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.5)
    low = backoff.delay(3, rand=lambda a, b: a)
    high = backoff.delay(3, rand=lambda a, b: b)
    assert (low, high) == (4.0, 8.0)
    for _ in range(200):
        assert 4.0 <= backoff.delay(3) <= 8.0


def test_state_counts_failures_and_resets() -> None:
    state = Backoff(base=0.5, cap=5.0).state()
    assert [state.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    state.reset()
    assert state.next_delay() == 0.5


@pytest.mark.parametrize("kwargs", [{"base": -1.0, "cap": 1.0}, {"base": 1.0, "cap": 1.0, "jitter": 1.5}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_bucket_allows_a_burst_then_spaces_tokens_and_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(qps=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] += 0.2  # the two booked tokens are due: the bucket is empty, not in debt
    assert bucket.tokens == pytest.approx(0.0)
    now[0] += 100.0  # refills to the burst, no further
    assert bucket.tokens == pytest.approx(3.0)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=0.0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(qps=1.0, burst=0)
