"""Which Polecat events go to the work queue's urgent lane: those with nothing started yet."""

from __future__ import annotations

from typing import Any

import pytest

from gastown.controller.manager import _undispatched


@pytest.mark.parametrize(
    ("obj", "urgent"),
    [
        ({"metadata": {}}, True),  # just created: no status
        ({"metadata": {}, "status": {"phase": "Pending"}}, True),  # waiting (capacity, claim, Rig)
        ({"metadata": {}, "status": {"phase": "Dispatching", "startTime": "t"}}, False),
        ({"metadata": {}, "status": {"phase": "Working"}}, False),
        ({"metadata": {}, "status": {"phase": "Pending", "startTime": "t"}}, False),
        ({"metadata": {"deletionTimestamp": "t"}}, False),  # being deleted: no hurry to start it
    ],
)
def test_undispatched(obj: dict[str, Any], urgent: bool) -> None:
    assert _undispatched(obj) is urgent
