"""Process-wide logging: JSON lines in a cluster, readable text on a terminal.

Called once by the CLI. Records carry context in ``extra`` (``key`` for the Polecat's
namespace/name, ``reason``, ``informer``, ...); the JSON formatter emits those as
fields, the text formatter appends them as ``k=v`` so a terminal shows them too.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# The Polecat (namespace/name) whose reconcile is running in this asyncio context. The
# worker sets it around each reconcile; tasks started inside inherit it, so every line
# logged on the Polecat's behalf, by any module (executors, ssh), names it.
current_polecat: contextvars.ContextVar[str | None] = contextvars.ContextVar("polecat", default=None)


class PolecatContextFilter(logging.Filter):
    """Adds ``key`` (namespace/name) to records logged while a reconcile is running."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = current_polecat.get()
        if key is not None and not hasattr(record, "key"):
            record.key = key
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message k=v ...`` with the record's extra fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format with the extra fields appended."""
        text = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")]
        if extras:
            first, sep, rest = text.partition("\n")
            text = first + " " + " ".join(extras) + sep + rest
        return text


def configure_logging(fmt: Literal["json", "text"], level: str = "INFO") -> None:
    """Send every logger's records to stderr in ``fmt``, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(PolecatContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp logs every probe and scrape at INFO; keep it to warnings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # kubernetes_asyncio logs every response body at DEBUG, Secrets (their data) included:
    # never below INFO, whatever --log-level says (tests/reliability/test_secret_canary.py).
    logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)
