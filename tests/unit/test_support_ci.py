"""The skip-or-fail rule of tests/support/ci.py: any truthy ``CI`` turns a skip into a failure."""

from __future__ import annotations

import pytest

from tests.support.ci import unavailable, under_ci


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "on", "github-actions"])
def test_a_truthy_ci_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match="the thing is missing"):
        unavailable("the thing is missing: install it")


@pytest.mark.parametrize("value", [None, "", "0", "false", "FALSE", "no", "off", " "])
def test_no_ci_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not under_ci()
    with pytest.raises(pytest.skip.Exception, match="install it"):
        unavailable("the thing is missing: install it")
