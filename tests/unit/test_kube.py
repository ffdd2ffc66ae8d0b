"""The one error classifier of the apiserver client: every status and fault, once."""

from __future__ import annotations

import aiohttp
import pytest

from gastown.kube import Fault, api_error, classify, fault_of_status, is_transient, retry_transient


@pytest.mark.parametrize(
    ("status", "fault"),
    [
        (400, Fault.INVALID),
        (401, Fault.FORBIDDEN),
        (403, Fault.FORBIDDEN),
        (404, Fault.NOT_FOUND),
        (405, Fault.INVALID),
        (408, Fault.TRANSIENT),
        (409, Fault.CONFLICT),
        (410, Fault.GONE),
        (422, Fault.INVALID),
        (425, Fault.TRANSIENT),
        (429, Fault.TRANSIENT),
        (500, Fault.TRANSIENT),
        (502, Fault.TRANSIENT),
        (503, Fault.TRANSIENT),
        (504, Fault.TRANSIENT),
        (0, Fault.TRANSIENT),
        (None, Fault.TRANSIENT),
    ],
)
def test_every_status_has_one_fault(status: int | None, fault: Fault) -> None:
    assert fault_of_status(status) is fault
    if status is not None:
        assert classify(api_error(status, "", b"")) is fault


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionResetError(),
        aiohttp.ClientConnectionError("refused"),
        OSError(113, "no route"),
    ],
)
def test_connection_faults_are_transient(exc: BaseException) -> None:
    assert classify(exc) is Fault.TRANSIENT
    assert is_transient(exc)


def test_a_bug_is_not_an_api_fault() -> None:
    assert classify(KeyError("status")) is Fault.BUG
    assert not is_transient(KeyError("status"))


def test_conflicts_are_retried_but_configuration_errors_are_not() -> None:
    assert is_transient(api_error(409, "Conflict", b""))
    assert not is_transient(api_error(401, "Unauthorized", b""))
    assert not is_transient(api_error(403, "Forbidden", b""))


async def test_retry_transient_retries_faults_and_gives_up_on_the_rest() -> None:
    from gastown.backoff import Backoff  # noqa: PLC0415

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise api_error(503, "Service Unavailable", b"")
        return "ok"

    assert await retry_transient(flaky, backoff=Backoff(0.0, 0.0)) == "ok"
    assert len(calls) == 3

    async def forbidden() -> str:
        calls.append(1)
        raise api_error(403, "Forbidden", b"")

    calls.clear()
    with pytest.raises(Exception, match="403"):
        await retry_transient(forbidden, backoff=Backoff(0.0, 0.0))
    assert len(calls) == 1
