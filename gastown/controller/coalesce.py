"""Which status writes a burst can do without, and what the user is told instead (pure).

A kubernetes-mode Polecat used to cost two status writes and two Events on its way to
Working: Dispatching right after the Pod was created, Working when the Pod ran. In a
burst the apiserver is the bottleneck, and by the time a worker gets back to a Polecat
its Pod is usually running already: one write can say both. These rules decide when.

1. :func:`wait_for_work_event`: the round that just started watch-driven work (a Pod)
   does not write "Dispatching" at once. The work's own watch event brings the
   Polecat back (a short requeue bounds the wait should it not), and that round writes
   what it then sees: Dispatching if the Pod is still pending (as before: two writes),
   Working if it already runs (one write). Pollers (local mode) and anything already
   recorded as dispatched write at once, as before.
2. :func:`phase_steps`: a write that skips Dispatching still tells that story. The
   reconciler records an Event and logs a transition for each step (Dispatching, then
   the phase reached), and the status keeps the time the work was started
   (``startTime``, the ``Dispatched`` condition's ``lastTransitionTime``), so
   ``gastown describe`` and ``kubectl get pcat -w`` show every Polecat's history.
"""

from __future__ import annotations

from gastown.api.models import Phase
from gastown.executors.base import Observation

_BEFORE_WORK = frozenset({None, Phase.PENDING})
_NOT_PAST_DISPATCH = frozenset({Phase.PENDING, Phase.DISPATCHING})


def wait_for_work_event(observation: Observation, *, status_dispatched: bool) -> bool:
    """After a dispatch: may the status write wait for the work's own watch event?

    Only when the work is watch-driven (the executor asks for no poll), has just been
    started and is not running yet (Dispatching), and the status does not already say
    it was dispatched (then there is nothing new to coalesce with).
    """
    return (
        not status_dispatched and observation.phase is Phase.DISPATCHING and observation.requeue_after is None
    )


def phase_steps(old: Phase | None, new: Phase, *, coalesced: bool) -> list[Phase]:
    """The transitions one status write stands for, in order.

    ``coalesced`` means the work was found already started while the status did not
    say so yet (the Dispatching write was left to this round, or an earlier operator
    started it and stopped before writing): then a write from before-work straight to
    a later phase also stands for Dispatching.
    """
    if old is new or (old is None and new is Phase.PENDING):
        return []
    if coalesced and old in _BEFORE_WORK and new not in _NOT_PAST_DISPATCH:
        return [Phase.DISPATCHING, new]
    return [new]
