"""The deadline that stops a Pod in place (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gastown.executors.kubernetes.stop import stop_deadline

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_deadline_is_the_elapsed_runtime_so_it_has_passed() -> None:
    assert stop_deadline(T0, T0 + timedelta(seconds=42.9), 3600) == 42


def test_a_pod_just_started_gets_the_smallest_valid_deadline() -> None:
    assert stop_deadline(T0, T0, 3600) == 1
    assert stop_deadline(T0, T0 - timedelta(seconds=5), None) == 1  # clocks disagree: still valid


def test_no_deadline_yet_gets_one() -> None:
    assert stop_deadline(T0, T0 + timedelta(seconds=10), None) == 10


def test_a_deadline_already_that_short_is_left_alone() -> None:
    """A deadline may only decrease: never patched upward."""
    assert stop_deadline(T0, T0 + timedelta(seconds=100), 60) is None
    assert stop_deadline(T0, T0 + timedelta(seconds=60), 60) is None
