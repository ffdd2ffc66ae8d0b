"""The work queue's promises: dedup, never concurrent, dirty re-queue, backoff, delays, shutdown."""

from __future__ import annotations

import asyncio
import collections

import pytest

from gastown.controller.workqueue import (
    ITEM_BACKOFF,
    Backoff,
    Outcome,
    QueueShutDownError,
    TokenBucket,
    WorkerPool,
    WorkQueue,
)
from tests.support.waiting import run_ready, wait_until


async def _get_now(queue: WorkQueue) -> str:
    return await asyncio.wait_for(queue.get(), 1.0)


async def test_add_dedups_waiting_keys() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    assert await _get_now(queue) == "ns/a"
    assert await _get_now(queue) == "ns/b"
    assert len(queue) == 0


async def test_fifo_order() -> None:
    queue = WorkQueue()
    keys = [f"ns/{i}" for i in range(20)]
    for key in keys:
        queue.add(key)
    assert [await _get_now(queue) for _ in keys] == keys


async def test_urgent_keys_are_handed_out_first_fifo_within_each_lane() -> None:
    queue = WorkQueue()
    for key in ("ns/status-1", "ns/status-2"):
        queue.add(key)
    for key in ("ns/new-1", "ns/new-2"):
        queue.add(key, urgent=True)
    queue.add("ns/status-3")
    assert len(queue) == 5
    got = [await _get_now(queue) for _ in range(5)]
    assert got == ["ns/new-1", "ns/new-2", "ns/status-1", "ns/status-2", "ns/status-3"]


async def test_an_urgent_add_moves_a_waiting_key_up_once_and_is_never_lost() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    queue.add("ns/b")
    queue.add("ns/b", urgent=True)  # moves up
    queue.add("ns/b", urgent=True)  # already urgent: stays where it is, once
    queue.add("ns/b")  # an ordinary add does not demote it
    assert len(queue) == 2
    assert [await _get_now(queue), await _get_now(queue)] == ["ns/b", "ns/a"]
    assert len(queue) == 0


async def test_an_urgent_add_while_processing_requeues_once_after_done() -> None:
    queue = WorkQueue()
    queue.add("ns/a", urgent=True)
    key = await _get_now(queue)
    queue.add(key, urgent=True)
    assert len(queue) == 0 and queue.processing == {"ns/a"}
    queue.done(key)
    assert await _get_now(queue) == "ns/a"
    queue.done("ns/a")
    assert queue.is_idle()


async def test_key_added_while_processing_is_requeued_once_after_done() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    key = await _get_now(queue)
    # Added three times while being processed: not handed out concurrently...
    queue.add(key)
    queue.add(key)
    queue.add(key)
    assert len(queue) == 0
    assert queue.processing == {"ns/a"}
    # ...but exactly once more after done.
    queue.done(key)
    assert len(queue) == 1
    assert await _get_now(queue) == "ns/a"
    queue.done("ns/a")
    assert queue.is_idle()


async def test_done_without_new_add_leaves_nothing() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    queue.done(await _get_now(queue))
    assert queue.is_idle()


async def test_get_waits_for_an_add() -> None:
    queue = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await run_ready()
    assert not getter.done()
    queue.add("ns/late")
    assert await asyncio.wait_for(getter, 1.0) == "ns/late"


async def test_one_add_wakes_one_of_many_getters() -> None:
    queue = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(4)]
    await run_ready()
    queue.add("ns/a")
    await wait_until(lambda: any(g.done() for g in getters), what="a getter to get ns/a")
    await run_ready()
    assert sum(g.done() for g in getters) == 1
    queue.add("ns/b")
    await wait_until(lambda: sum(g.done() for g in getters) >= 2, what="a getter to get ns/b")
    await run_ready()
    assert sum(g.done() for g in getters) == 2
    queue.shutdown()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert sorted(r for r in results if isinstance(r, str)) == ["ns/a", "ns/b"]
    assert sum(isinstance(r, QueueShutDownError) for r in results) == 2


async def test_cancelled_getter_does_not_swallow_a_wakeup() -> None:
    queue = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await run_ready()
    queue.add("ns/a")
    first.cancel()  # woken (or not) and cancelled in the same loop turn
    await asyncio.gather(first, return_exceptions=True)
    if first.cancelled():
        assert await asyncio.wait_for(second, 1.0) == "ns/a"
    else:
        second.cancel()


def test_backoff_doubles_from_5ms_and_caps_at_5min() -> None:
    backoff = ITEM_BACKOFF  # delay(n) is the wait before retry n+1
    assert backoff.delay(0) == pytest.approx(0.005)
    assert backoff.delay(1) == pytest.approx(0.010)
    assert backoff.delay(2) == pytest.approx(0.020)
    assert backoff.delay(9) == pytest.approx(0.005 * 512)
    assert backoff.delay(16) == 300.0
    assert backoff.delay(10_000) == 300.0
    delays = [backoff.delay(n) for n in range(0, 40)]
    assert delays == sorted(delays)


async def test_rate_limited_adds_back_off_and_forget_resets() -> None:
    queue = WorkQueue(backoff=Backoff(base=0.01, cap=1.0))
    assert queue.add_rate_limited("ns/a") == pytest.approx(0.01)
    assert queue.add_rate_limited("ns/a") == pytest.approx(0.02)
    assert queue.add_rate_limited("ns/a") == pytest.approx(0.04)
    assert queue.failures("ns/a") == 3
    queue.forget("ns/a")
    assert queue.failures("ns/a") == 0
    assert queue.add_rate_limited("ns/a") == pytest.approx(0.01)
    # The earliest timer stands; the key arrives once. A marker due after every timer
    # set above arrives next: ns/a, had it been added again, would have come first.
    assert await _get_now(queue) == "ns/a"
    queue.done("ns/a")
    queue.add_after("ns/marker", 0.1)
    assert await _get_now(queue) == "ns/marker"
    assert len(queue) == 0


async def test_add_after_delays_and_keeps_the_earliest_timer() -> None:
    queue = WorkQueue()
    queue.add_after("ns/a", 10.0)
    queue.add_after("ns/a", 0.02)
    queue.add_after("ns/a", 5.0)  # later than the pending one: ignored
    assert queue.delayed == 1
    assert len(queue) == 0
    assert await _get_now(queue) == "ns/a"
    assert queue.delayed == 0


async def test_add_after_zero_is_an_immediate_add() -> None:
    queue = WorkQueue()
    queue.add_after("ns/a", 0)
    assert len(queue) == 1


async def test_immediate_add_with_pending_timer_dedups_when_timer_fires() -> None:
    queue = WorkQueue()
    queue.add_after("ns/a", 0.02)
    queue.add("ns/a")
    queue.add_after("ns/marker", 0.05)
    await wait_until(lambda: queue.delayed == 0, what="both timers to fire")  # ns/a's while it waited
    assert len(queue) == 2  # ns/a once, and the marker


async def test_shutdown_drops_waiting_and_delayed_and_refuses_adds() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    queue.add_after("ns/b", 0.01)
    queue.shutdown()
    assert len(queue) == 0 and queue.delayed == 0
    queue.add("ns/c")
    queue.add_after("ns/d", 0.01)
    assert len(queue) == 0 and queue.delayed == 0
    with pytest.raises(QueueShutDownError):
        await queue.get()


async def test_memory_is_bounded_by_distinct_keys() -> None:
    queue = WorkQueue(backoff=Backoff(base=10.0, cap=10.0))
    for _ in range(1000):
        for i in range(10):
            queue.add(f"ns/{i}")
            queue.add_after(f"ns/{i}", 60.0)
            queue.add_rate_limited(f"ns/{i}")
    assert len(queue) == 10
    assert queue.delayed == 10
    queue.shutdown()


async def test_pool_never_processes_a_key_concurrently_and_sees_late_adds() -> None:
    queue = WorkQueue()
    active: set[str] = set()
    overlaps = 0
    seen: collections.Counter[str] = collections.Counter()
    gate = asyncio.Event()

    async def handler(key: str) -> Outcome:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        seen[key] += 1
        if seen[key] == 1:
            await gate.wait()
        active.discard(key)
        return Outcome()

    pool = WorkerPool(queue, handler, workers=8)
    running = asyncio.create_task(pool.run())
    queue.add("ns/a")
    await wait_until(lambda: seen["ns/a"] == 1, what="the first round to start")
    for _ in range(10):
        queue.add("ns/a")  # arrives while the first round is blocked
    await run_ready()
    assert seen["ns/a"] == 1
    gate.set()
    for _ in range(100):
        if queue.is_idle() and seen["ns/a"] == 2:
            break
        await asyncio.sleep(0.01)
    await pool.stop(grace=1.0)
    await running
    assert overlaps == 0
    assert seen["ns/a"] == 2


async def test_pool_retries_failures_with_backoff_then_forgets() -> None:
    queue = WorkQueue(backoff=Backoff(base=0.001, cap=0.01))
    attempts = 0

    async def handler(key: str) -> Outcome:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise RuntimeError("transient")
        return Outcome()

    pool = WorkerPool(queue, handler, workers=2)
    running = asyncio.create_task(pool.run())
    queue.add("ns/a")
    for _ in range(200):
        if attempts >= 4 and queue.is_idle():
            break
        await asyncio.sleep(0.01)
    await pool.stop(grace=1.0)
    await running
    assert attempts == 4
    assert queue.failures("ns/a") == 0


async def test_pool_requeue_after() -> None:
    queue = WorkQueue()
    calls = 0

    async def handler(key: str) -> Outcome:
        nonlocal calls
        calls += 1
        return Outcome(requeue_after=0.01 if calls < 3 else None)

    pool = WorkerPool(queue, handler, workers=1)
    running = asyncio.create_task(pool.run())
    queue.add("ns/a")
    for _ in range(200):
        if calls >= 3 and queue.is_idle():
            break
        await asyncio.sleep(0.01)
    await pool.stop(grace=1.0)
    await running
    assert calls == 3


async def test_pool_stop_lets_in_flight_finish_within_grace() -> None:
    queue = WorkQueue()
    finished: list[str] = []
    started = asyncio.Event()

    async def handler(key: str) -> Outcome:
        started.set()
        await asyncio.sleep(0.05)
        finished.append(key)
        return Outcome()

    pool = WorkerPool(queue, handler, workers=1)
    running = asyncio.create_task(pool.run())
    queue.add("ns/a")
    queue.add("ns/b")  # waiting, not in flight: dropped at shutdown
    await started.wait()
    await pool.stop(grace=5.0)
    await running
    assert finished == ["ns/a"]


async def test_pool_stop_cancels_what_overruns_the_grace() -> None:
    queue = WorkQueue()
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def handler(key: str) -> Outcome:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Outcome()

    pool = WorkerPool(queue, handler, workers=1)
    running = asyncio.create_task(pool.run())
    queue.add("ns/slow")
    await started.wait()
    await pool.stop(grace=0.05)
    await running
    assert cancelled.is_set()
    assert "ns/slow" not in queue.processing


def test_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        WorkerPool(WorkQueue(), lambda key: asyncio.sleep(0, Outcome()), workers=0)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_retries_of_all_keys_share_one_bucket_after_the_burst() -> None:
    clock = FakeClock()
    queue = WorkQueue(backoff=Backoff(base=0.005, cap=300.0), limiter=TokenBucket(10.0, 100, clock=clock))
    # The first 100 failures (one each for 100 keys) get their own 5 ms backoff.
    first = [queue.add_rate_limited(f"ns/k{i}") for i in range(100)]
    assert first == [pytest.approx(0.005)] * 100
    # Then the bucket is empty: each further retry waits for the next token, 1/10 s apart,
    # though each of these keys failed only once.
    more = [queue.add_rate_limited(f"ns/m{i}") for i in range(5)]
    assert more == [
        pytest.approx(0.1),
        pytest.approx(0.2),
        pytest.approx(0.3),
        pytest.approx(0.4),
        pytest.approx(0.5),
    ]
    # Time refills the bucket at 10 tokens/s (and pays back what was booked ahead).
    clock.now += 10.0
    assert queue.add_rate_limited("ns/later") == pytest.approx(0.005)
    queue.shutdown()


async def test_a_key_whose_own_backoff_is_longer_keeps_it() -> None:
    clock = FakeClock()
    queue = WorkQueue(backoff=Backoff(base=1.0, cap=300.0), limiter=TokenBucket(10.0, 100, clock=clock))
    delays = [queue.add_rate_limited("ns/a") for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    queue.shutdown()


async def test_pool_retries_a_mass_failure_at_the_bucket_rate() -> None:
    clock = FakeClock()
    queue = WorkQueue(backoff=Backoff(base=0.0, cap=0.0), limiter=TokenBucket(10.0, 3, clock=clock))
    failed: list[str] = []
    second_wave = asyncio.Event()

    async def handler(key: str) -> Outcome:
        failed.append(key)
        if len(failed) == 9:
            second_wave.set()
        raise RuntimeError("the apiserver rejects everything")

    pool = WorkerPool(queue, handler, workers=2)
    running = asyncio.create_task(pool.run())
    for i in range(6):
        queue.add(f"ns/{i}")
    await asyncio.wait_for(second_wave.wait(), 5.0)
    # Six keys failed with no per-key backoff at all: the burst of 3 went straight back
    # and failed again; every other retry waits on a timer for a token, 0.1 s apart
    # (the fake clock does not move, so no token comes back).
    assert queue.delayed == 6
    assert len(queue) == 0
    await pool.stop(grace=1.0)
    await running
