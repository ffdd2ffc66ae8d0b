"""Log lines name the Polecat whose reconcile emitted them, in both formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from gastown import logging_setup
from gastown.logging_setup import current_polecat


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """configure_logging replaces the root handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _capture(fmt: str) -> io.StringIO:
    stream = io.StringIO()
    logging_setup.configure_logging(fmt, "INFO")  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def test_json_lines_carry_the_polecat_key_inside_a_reconcile_context() -> None:
    stream = _capture("json")

    async def reconcile() -> None:
        token = current_polecat.set("ns-a/fix-login")
        try:
            # A deeper module logs without knowing the key, in a child task too.
            logging.getLogger("gastown.executors.local.ssh").info("connected")
            await asyncio.create_task(_log_in_child())
        finally:
            current_polecat.reset(token)
        logging.getLogger("gastown.controller").info("idle")

    asyncio.run(reconcile())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("key") for line in lines] == ["ns-a/fix-login", "ns-a/fix-login", None]
    assert lines[0]["message"] == "connected" and lines[0]["level"] == "INFO"


async def _log_in_child() -> None:
    logging.getLogger("gastown.executors.local.tmux").warning("session gone")


def test_text_lines_show_the_key_and_explicit_keys_win() -> None:
    stream = _capture("text")
    token = current_polecat.set("ns-a/one")
    try:
        logging.getLogger("x").info("hello")
        logging.getLogger("x").info("other", extra={"key": "ns-b/two"})
    finally:
        current_polecat.reset(token)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("hello key=ns-a/one")
    assert second.endswith("other key=ns-b/two")
