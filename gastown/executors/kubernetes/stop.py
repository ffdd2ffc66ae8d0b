"""How much deadline a Pod that is to be stopped in place gets: pure, for unit tests.

Kubernetes mode stops a running Pod (``desiredState: Terminated``, a deletion) by
shortening its ``spec.activeDeadlineSeconds``, a field a Pod update may set or decrease
but never raise. The kubelet counts it from ``status.startTime`` and, once it has
passed, kills the Pod as for any deadline: SIGTERM, the grace period (the runner stops
the agent, commits, pushes, writes its report), Failed/DeadlineExceeded. The Pod object
stays, so its report can still be read — unlike a deletion.
"""

from __future__ import annotations

from datetime import datetime


def stop_deadline(started: datetime, now: datetime, current: int | None) -> int | None:
    """The ``activeDeadlineSeconds`` that stops a Pod started at ``started`` now.

    The elapsed runtime in whole seconds (at least 1, the smallest value the API
    accepts): the deadline has then passed, so the kubelet stops the Pod on the update's
    sync. None when ``current`` is already that short (nothing to patch; a deadline can
    only decrease).
    """
    elapsed = max(1, int((now - started).total_seconds()))
    if current is not None and current <= elapsed:
        return None
    return elapsed
