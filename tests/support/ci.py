"""Skip locally, fail under CI: one rule for every test that needs something installed.

CI runs ``CI=true make test`` on a clean machine that must have everything, so a missing
piece there is a failure, never a silent skip. Locally the test skips with the reason
and the command that fixes it. ``CI`` counts as set for any truthy value (``true``,
``1``, ``yes``, GitHub's ``true``, GitLab's ``true``...), not only the exact string
"true"; empty, ``0``, ``false``, ``no`` and ``off`` mean not under CI.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

_FALSY = frozenset({"", "0", "false", "no", "off"})


def under_ci() -> bool:
    """Whether the ``CI`` environment variable is set to a truthy value."""
    return os.environ.get("CI", "").strip().lower() not in _FALSY


def unavailable(reason: str) -> NoReturn:
    """Skip the test (locally) or fail it (under CI) because ``reason``."""
    if under_ci():
        pytest.fail(f"CI={os.environ.get('CI')!r} and {reason}", pytrace=False)
    pytest.skip(reason)
