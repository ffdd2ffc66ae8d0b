"""What the user CLI says when something goes wrong, and with which exit code.

The contract (also printed by ``gastown --help``): every failure is ONE line on stderr,
``gastown: <what happened and what to do>``, never a traceback (``--debug`` shows one),
and the exit code says which kind of failure it was, so scripts can branch on it:

====  ==========================================================================
0     success (``sling --wait``: the Polecat is Done)
1     the work failed (Failed/Terminated), the file is invalid, or the apiserver or
      its admission webhook rejected the request
2     usage error (unknown option, missing argument)
3     not found (the Polecat, its Pod, or the Polecat CRD is not installed)
4     cannot reach the cluster (no kubeconfig, unknown context, connection refused,
      TLS failure, timeout) or the agent's host (SSH)
5     forbidden or unauthorized (RBAC, expired credentials)
6     gave up waiting (``sling --wait --timeout``)
====  ==========================================================================

:func:`from_exception` turns the exceptions of kubernetes_asyncio, aiohttp and the
executors into a :class:`CLIError`; anything it does not know is a bug and is reported
as such (exit 1), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import json
import ssl
from enum import IntEnum
from typing import Any

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 work failed, file invalid or request rejected; 2 usage error; "
    "3 not found; 4 cannot reach the cluster (or the SSH host); 5 forbidden/unauthorized; "
    "6 gave up waiting (--timeout)."
)


# Executor errors that mean "cannot get to the host", however permanent (a wrong key).
_SSH_REASONS = frozenset(
    {
        "SSHAuthFailed",
        "HostKeyMismatch",
        "SSHKeyInvalid",
        "SSHFileMissing",
        "SSHUnreachable",
        "LocalModeDisabled",
    }
)


class ExitCode(IntEnum):
    """The CLI's exit codes (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    FORBIDDEN = 5
    TIMEOUT = 6


class CLIError(Exception):
    """A failure to report as one line with an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _status_body(exc: Any) -> dict[str, Any]:
    """The apiserver's Status object from an ApiException, or {}."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"message": body.strip()[:500]}
    return parsed if isinstance(parsed, dict) else {}


POLECAT_API = "the Polecat API (polecats.gastown.gastown.io)"


def api_error(exc: Any, *, what: str = "", api: str = POLECAT_API) -> CLIError:
    """An ``ApiException`` as one line: the apiserver's own message, and the right code.

    ``what`` names the object the request was about ("Polecat demo/x") so a 404 says
    which object is missing; a 404 about the resource type itself means the CRD is
    not installed, which is a different fix (``api`` names that CRD).
    """
    status = int(getattr(exc, "status", 0) or 0)
    body = _status_body(exc)
    message = str(body.get("message") or getattr(exc, "reason", "") or f"HTTP {status}").strip()
    details = body.get("details")
    details = details if isinstance(details, dict) else {}
    if status == 404:
        if details.get("name") or (what and not message.startswith("the server could not find")):
            return CLIError(f"{what or message} not found" if what else message, ExitCode.NOT_FOUND)
        return CLIError(
            f"{api} is not installed in this cluster: install the "
            "gastown-operator Helm chart or `kubectl apply -f crds/`",
            ExitCode.NOT_FOUND,
        )
    if "admission webhook" in message and "denied the request" in message:
        return CLIError(message, ExitCode.FAILED)
    if status == 401:
        return CLIError(
            f"unauthorized: the cluster rejected your credentials ({message}); refresh them or pick "
            "another --context",
            ExitCode.FORBIDDEN,
        )
    if status == 403:
        return CLIError(f"forbidden: {message}", ExitCode.FORBIDDEN)
    if status in (400, 409, 422):
        return CLIError(message, ExitCode.FAILED)
    if status in (0, 502, 503, 504):
        return CLIError(
            f"the cluster is not answering properly (HTTP {status}): {message}", ExitCode.UNREACHABLE
        )
    return CLIError(f"the apiserver answered HTTP {status}: {message}", ExitCode.FAILED)


def _connection_reason(exc: BaseException) -> str:
    """The innermost useful words of a connection failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({exc.verify_message})"
    cause = getattr(exc, "os_error", None) or exc.__cause__
    text = str(cause or exc) or type(exc).__name__
    return text.splitlines()[0][:300] if text else type(exc).__name__


def from_exception(
    exc: BaseException, *, server: str = "", what: str = "", api: str = POLECAT_API
) -> CLIError:
    """Map any exception raised while talking to the cluster or the host to a CLIError."""
    if isinstance(exc, CLIError):
        return exc
    # Imported here: the CLI starts without kubernetes_asyncio, aiohttp or asyncssh loaded.
    import aiohttp  # noqa: PLC0415
    from kubernetes_asyncio.client.exceptions import ApiException  # noqa: PLC0415
    from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: PLC0415

    from gastown.executors.base import ExecutorError, TransientError  # noqa: PLC0415

    where = f" at {server}" if server else ""
    if isinstance(exc, ApiException):
        return api_error(exc, what=what, api=api)
    if isinstance(exc, ConfigException):
        return CLIError(f"cannot use the kubeconfig: {exc}", ExitCode.UNREACHABLE)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return CLIError(f"the cluster{where} did not answer in time", ExitCode.UNREACHABLE)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CLIError(
            f"cannot reach the cluster{where}: TLS certificate verification failed ({exc.certificate_error})",
            ExitCode.UNREACHABLE,
        )
    if isinstance(exc, aiohttp.ClientError | ConnectionError | ssl.SSLError):
        return CLIError(f"cannot reach the cluster{where}: {_connection_reason(exc)}", ExitCode.UNREACHABLE)
    if isinstance(exc, TransientError) or (isinstance(exc, ExecutorError) and exc.reason in _SSH_REASONS):
        return CLIError(exc.message, ExitCode.UNREACHABLE)
    if isinstance(exc, ExecutorError):
        return CLIError(exc.message, ExitCode.FAILED)
    if isinstance(exc, OSError):
        return CLIError(f"{exc.strerror or exc}", ExitCode.FAILED)
    return CLIError(
        f"internal error: {type(exc).__name__}: {exc} (this is a bug; run with --debug for the traceback)",
        ExitCode.FAILED,
    )
