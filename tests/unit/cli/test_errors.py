"""Failures become one line with a meaningful exit code."""

from __future__ import annotations

import json

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.cli.errors import CLIError, ExitCode, api_error, from_exception
from gastown.executors.base import TransientError, UserError


def api_exc(status: int, message: str, **details: str) -> ApiException:
    exc = ApiException(status=status, reason="x")
    body = {"kind": "Status", "status": "Failure", "message": message, "code": status}
    if details:
        body["details"] = details
    exc.body = json.dumps(body)
    return exc


def test_missing_polecat_is_not_found() -> None:
    err = api_error(
        api_exc(404, 'polecats.gastown.gastown.io "x" not found', name="x", kind="polecats"),
        what='Polecat "x" in namespace "ns"',
    )
    assert err.code is ExitCode.NOT_FOUND
    assert err.message == 'Polecat "x" in namespace "ns" not found'


def test_missing_crd_says_to_install_it() -> None:
    err = api_error(api_exc(404, "the server could not find the requested resource"), what="Polecat x")
    assert err.code is ExitCode.NOT_FOUND
    assert "not installed" in err.message and "crds/" in err.message


def test_webhook_denial_keeps_the_apiservers_words() -> None:
    message = (
        'admission webhook "polecats.gastown.gastown.io" denied the request: '
        "spec.kubernetes.gitRepository: uses plain http"
    )
    err = api_error(api_exc(400, message))
    assert err.code is ExitCode.FAILED
    assert err.message == message
    # A webhook may choose 403; it is still a denial, not an RBAC problem.
    assert api_error(api_exc(403, message)).code is ExitCode.FAILED


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, ExitCode.FORBIDDEN), (403, ExitCode.FORBIDDEN), (422, ExitCode.FAILED), (409, ExitCode.FAILED),
     (503, ExitCode.UNREACHABLE), (500, ExitCode.FAILED)],
)  # fmt: skip
def test_status_codes(status: int, code: ExitCode) -> None:
    assert api_error(api_exc(status, "words")).code is code


def test_forbidden_quotes_rbac_message() -> None:
    err = api_error(api_exc(403, 'polecats is forbidden: User "bob" cannot list resource "polecats"'))
    assert err.message.startswith("forbidden: polecats is forbidden: User")


def test_connection_failures_are_unreachable_and_name_the_server() -> None:
    err = from_exception(ConnectionRefusedError(111, "Connection refused"), server="https://10.0.0.1:6443")
    assert err.code is ExitCode.UNREACHABLE
    assert "https://10.0.0.1:6443" in err.message
    assert from_exception(TimeoutError()).code is ExitCode.UNREACHABLE
    assert from_exception(aiohttp.ServerDisconnectedError()).code is ExitCode.UNREACHABLE


def test_executor_errors() -> None:
    assert from_exception(UserError("SSHAuthFailed", "add the key")).code is ExitCode.UNREACHABLE
    assert from_exception(TransientError("TmuxFailed", "tmux died")).code is ExitCode.UNREACHABLE
    err = from_exception(UserError("NotAttachable", "no session yet"))
    assert (err.code, err.message) == (ExitCode.FAILED, "no session yet")


def test_unknown_exception_is_reported_as_a_bug_in_one_line() -> None:
    err = from_exception(KeyError("boom"))
    assert err.code is ExitCode.FAILED
    assert "internal error" in err.message and "--debug" in err.message and "\n" not in err.message


def test_cli_error_passes_through() -> None:
    original = CLIError("x", ExitCode.TIMEOUT)
    assert from_exception(original) is original


def test_podlog_errors_name_the_kubelet_or_the_clone_step() -> None:
    from gastown.cli.kubeclient import log_error  # noqa: PLC0415

    dial = api_error(api_exc(500, 'Get "https://10.0.0.5:10250/containerLogs/ns/p/agent": dial tcp: refused'))
    err = log_error(dial, "polecat-p")
    assert err.code is ExitCode.UNREACHABLE
    assert err.message.startswith(
        "cannot read the logs of Pod polecat-p: the apiserver could not reach the kubelet"
    )
    assert "(HTTP 500: Get " in err.message
    waiting = api_error(
        api_exc(400, 'container "agent" in pod "polecat-p" is waiting to start: PodInitializing')
    )
    assert "logs -c git-clone" in log_error(waiting, "polecat-p").message
