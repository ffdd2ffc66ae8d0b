"""A host unreachable for longer than the timeout: Stuck/HostUnreachable, restored when it is back,
and a force-delete that completes without the host.

Pure decisions (``decide`` with ``now`` passed in) and the reconciler against the in-memory
apiserver of ``test_reconciler_unreachable``. tests/reliability/test_local_faults.py checks
the same with a real sshd that is stopped and restarted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown.api.models import ANNOTATION_FORCE_DELETE, FINALIZER, Phase, Polecat, PolecatStatus
from gastown.controller.reconciler import Reconciler, ReconcilerOptions
from gastown.controller.status import (
    HOST_UNREACHABLE,
    READY,
    Subject,
    decide,
    get_condition,
    released_without_host,
)
from gastown.executors.base import Observation, TransientError
from tests.unit.controller.test_reconciler_unreachable import (
    KEY,
    OUTAGE,
    Cache,
    Host,
    Recorder,
    Store,
    _polecat,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
TIMEOUT = 600.0
GONE = TransientError(
    "SSHUnreachable", "cannot connect to op@h.example:22: Connection refused", host="op@h.example:22"
)


def _outage_since(phase: str, since: datetime, reason: str = "SSHUnreachable", **extra: object) -> Polecat:
    """A Polecat whose Ready went Unknown with ``reason`` at ``since`` (an outage under way)."""
    status = {
        "phase": phase,
        "startTime": "2026-01-01T11:00:00Z",
        "conditions": [
            {
                "type": READY,
                "status": "Unknown",
                "reason": reason,
                "message": "cannot connect; retrying with backoff.",
                "lastTransitionTime": since.isoformat(),
            }
        ],
        "local": {"host": "h.example", "tmuxSocket": "gastown", "tmuxSession": "gastown-ns-p"},
        **extra,
    }
    return Polecat.from_dict(_polecat(status))


def _ready(status: PolecatStatus) -> tuple[str, str, str]:
    ready = get_condition(status, READY)
    assert ready is not None
    return ready.status, ready.reason, ready.message


def test_an_outage_shorter_than_the_timeout_keeps_the_phase_and_ready_unknown() -> None:
    polecat = _outage_since("Working", T0)
    decision = decide(Subject.of(polecat), GONE, now=T0 + timedelta(seconds=599), unreachable_after=TIMEOUT)
    assert decision.status.phase is Phase.WORKING
    assert _ready(decision.status)[:2] == ("Unknown", "SSHUnreachable")


def test_an_outage_past_the_timeout_is_stuck_with_what_to_check() -> None:
    polecat = _outage_since("Working", T0)
    decision = decide(Subject.of(polecat), GONE, now=T0 + timedelta(seconds=601), unreachable_after=TIMEOUT)
    assert decision.status.phase is Phase.STUCK
    status, reason, message = _ready(decision.status)
    assert (status, reason) == ("False", HOST_UNREACHABLE)
    assert "op@h.example:22" in message and "since 2026-01-01T12:00:00Z" in message
    assert "sshd" in message and "GASTOWN_SSH_HOST" in message and "network" in message
    assert f"{ANNOTATION_FORCE_DELETE}=true" in message
    assert [(n.type, n.reason) for n in decision.notes] == [("Warning", HOST_UNREACHABLE)]
    assert decision.status.startTime is not None  # it was dispatched; that stays true


def test_once_stuck_a_further_retry_changes_nothing() -> None:
    polecat = _outage_since("Working", T0)
    stuck = decide(Subject.of(polecat), GONE, now=T0 + timedelta(seconds=601), unreachable_after=TIMEOUT)
    later = polecat.model_copy(update={"status": stuck.status})
    again = decide(Subject.of(later), OUTAGE, now=T0 + timedelta(hours=3), unreachable_after=TIMEOUT)
    assert again.wire == stuck.wire
    assert again.notes == []


def test_the_host_back_restores_the_observed_phase() -> None:
    polecat = _outage_since("Working", T0)
    stuck = decide(Subject.of(polecat), GONE, now=T0 + timedelta(seconds=601), unreachable_after=TIMEOUT)
    later = polecat.model_copy(update={"status": stuck.status})
    back = decide(
        Subject.of(later),
        Observation(Phase.WORKING, "SessionRunning", "tmux session gastown-ns-p is running"),
        now=T0 + timedelta(seconds=900),
        unreachable_after=TIMEOUT,
    )
    assert back.status.phase is Phase.WORKING
    assert _ready(back.status)[:2] == ("True", "SessionRunning")


def test_a_terminal_phase_is_kept_while_a_deletion_waits_for_the_host() -> None:
    polecat = _outage_since("Done", T0, completionTime="2026-01-01T11:30:00Z")
    decision = decide(Subject.of(polecat), GONE, now=T0 + timedelta(seconds=700), unreachable_after=TIMEOUT)
    assert decision.status.phase is Phase.DONE
    assert _ready(decision.status)[:2] == ("False", HOST_UNREACHABLE)


def test_a_command_failing_on_a_reachable_host_is_not_host_unreachable() -> None:
    polecat = _outage_since("Working", T0, reason="GtFailed")
    failing = TransientError("GtFailed", "gt polecat list failed (1): boom")
    decision = decide(Subject.of(polecat), failing, now=T0 + timedelta(hours=1), unreachable_after=TIMEOUT)
    assert decision.status.phase is Phase.WORKING
    assert _ready(decision.status)[:2] == ("Unknown", "GtFailed")


def test_without_a_timeout_nothing_turns_stuck() -> None:
    polecat = _outage_since("Working", T0)
    decision = decide(Subject.of(polecat), GONE, now=T0 + timedelta(days=1))
    assert decision.status.phase is Phase.WORKING


def test_released_without_host_names_what_may_be_left_and_how_to_clean_it() -> None:
    gt = _polecat(
        {
            "phase": "Working",
            "local": {"host": "h", "polecatName": "quartz", "tmuxSocket": "t-1", "tmuxSession": "de-quartz"},
        }
    )
    gt["spec"]["local"] = {"dispatcher": "gt", "townRoot": "/srv/my town"}
    message = released_without_host(Polecat.from_dict(gt), GONE)
    assert "op@h.example:22 could not be reached" in message
    assert "tmux -L t-1 kill-session -t =de-quartz" in message
    assert "cd '/srv/my town' && gt polecat nuke demo/quartz --force" in message

    tmux = _polecat(
        {"phase": "Working", "local": {"host": "h", "tmuxSocket": "gastown", "tmuxSession": "gastown-ns-p"}}
    )
    tmux["spec"]["local"] = {"dispatcher": "tmux", "command": "true"}
    message = released_without_host(Polecat.from_dict(tmux), OUTAGE)
    assert "Possibly left on h:" in message
    assert "~/.gastown/sessions/gastown-ns-p" in message and "the work is in" in message


def _deleting(force: bool) -> dict[str, object]:
    obj = _polecat(
        {
            "phase": "Working",
            "startTime": "2026-01-01T00:00:00Z",
            "local": {"host": "h", "polecatName": "quartz"},
        }
    )
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T01:00:00Z"  # type: ignore[index]
    if force:
        obj["metadata"]["annotations"] = {ANNOTATION_FORCE_DELETE: "true"}  # type: ignore[index]
    return obj


def _reconciler(obj: dict[str, object]) -> tuple[Reconciler, Store, Host, Recorder]:
    store, host, recorder = Store(obj), Host(), Recorder()  # type: ignore[arg-type]
    reconciler = Reconciler(
        client=store,  # type: ignore[arg-type]
        polecats=Cache(store),  # type: ignore[arg-type]
        executors={Polecat.from_dict(obj).spec.executionMode: host},
        recorder=recorder,  # type: ignore[arg-type]
        options=ReconcilerOptions(host_unreachable_timeout=TIMEOUT),
    )
    return reconciler, store, host, recorder


async def test_force_delete_completes_without_the_host_and_warns_what_is_left() -> None:
    reconciler, store, host, recorder = _reconciler(_deleting(force=True))
    host.down = True
    await reconciler.reconcile(KEY)  # no TransientError: the user asked to go without cleanup
    assert store.obj["metadata"]["finalizers"] == []
    warnings = [e for e in recorder.events if e[0] == "Warning" and e[1] == "ReleasedWithoutHost"]
    assert len(warnings) == 1 and "gt polecat demo/quartz" in warnings[0][2], recorder.events


async def test_without_force_a_deletion_keeps_waiting_for_the_host() -> None:
    reconciler, store, host, _ = _reconciler(_deleting(force=False))
    host.down = True
    with pytest.raises(TransientError):
        await reconciler.reconcile(KEY)
    assert store.obj["metadata"]["finalizers"] == [FINALIZER]
