"""The one apiserver client: every request of the operator, the webhook, the CLI and dev mode.

One module owns talking to the apiserver, so there is one answer to "what is a path",
"how long may a request take", "what is worth retrying" (controller-runtime has one
``client.Client`` and one ``apierrors`` taxonomy for the same reason). Nothing else in
``gastown/`` uses kubernetes_asyncio's generated API classes or ``call_api``.

One ``kubernetes_asyncio`` ``ApiClient`` per process holds the configuration (kubeconfig,
in-cluster service account or ``~/.kube/config``), the credentials and the pooled aiohttp
session. The hot paths of the operator (LIST/WATCH of every Polecat and Pod, status
patches, Events, the Lease) do not go through the generated API classes: their model
deserialization costs far more CPU than the apiserver round trip. :class:`KubeClient`
sends requests on the ApiClient's session and parses bodies with orjson into plain dicts,
which is also the shape the informer caches keep.

**Paths** come from :mod:`gastown.api.paths` (kept import-free for the CLI).

**Timeouts, in one place.** kubernetes_asyncio's own requests never time out unless
given ``_request_timeout`` (LIBRARIES.md); this client never goes through them, and
every request it sends has a deadline: ``CONNECT_TIMEOUT`` to connect and a total of
``request_timeout`` (``REQUEST_TIMEOUT`` by default, per client or per call). Streams
(watches, logs) have no total: a watch gets an inactivity watchdog instead, because a
healthy watch is quiet between bookmarks; a followed log may have none.

**Errors: one classifier.** A non-2xx answer raises the library's ``ApiException``
(``status``, ``reason``, the response ``body``); connection faults surface as
``aiohttp.ClientError``, ``OSError`` or ``TimeoutError``. :func:`classify` sorts every
failure once into a :class:`Fault`, and callers decide what each fault means for them:

* ``TRANSIENT`` — 408, 425, 429, 5xx, status 0, timeouts, connection faults: the same
  request may succeed later; retried with backoff.
* ``CONFLICT`` — 409: a stale resourceVersion, or AlreadyExists; transient too (read
  again, then retry), but callers often act on it (an elector lost a race, a create
  met its own earlier attempt), so it is its own class.
* ``NOT_FOUND`` — 404: usually an answer, not a failure (a deleted object, a missing
  Secret to report), so never retried blindly.
* ``GONE`` — 410: a resourceVersion too old; informers relist.
* ``INVALID`` — 400, 422 and other 4xx: the request (the user's spec) is wrong;
  retrying cannot help.
* ``FORBIDDEN`` — 401, 403: the operator's credentials or RBAC are wrong. A
  configuration error shown to whoever can fix it (status condition, CLI message), not
  retried forever as a fault: the bearer token is refreshed on every request
  (:meth:`KubeClient._headers`), so a 401 that persists is not a token about to rotate.

:func:`is_transient` is ``TRANSIENT`` or ``CONFLICT``. **Retries** live here too:
:func:`retry_transient` retries a call on transient faults with the one backoff
(:mod:`gastown.backoff`); the operator's hot path does not use it (a failed reconcile
is retried by the work queue, with its rate limit), setup code does (dev mode, the
webhook's certificates).

**Typed results where the hot path allows.** Bodies are parsed with orjson into plain
dicts (:data:`Obj`; ``get``/``create``/``replace``/``merge_patch``/``apply`` always return
one, never None) on the hot paths (the informer caches, status patches, Pod creates),
where the generated models would cost more CPU than the round trip; failures are typed
by :class:`Fault`. Setup paths that read a few objects (the webhook's Secret and webhook
configuration) read the same dicts rather than load a second, model-based client.

The user CLI keeps :mod:`gastown.cli.kubeclient` as its thin front (kubeconfig and
context like kubectl, errors turned into exit codes) and imports this module only when
a command talks to a cluster, so ``gastown --help`` starts without kubernetes_asyncio.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.backoff import Backoff

logger = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
"""Accept header for a GET that returns only metadata (a Secret's data never leaves the server)."""

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0

T = TypeVar("T")
Obj = dict[str, Any]
"""A Kubernetes object (or list) as parsed JSON: the hot paths' typed result."""

QueryValue = str | int | bool
Query = Mapping[str, QueryValue]


class Fault(enum.Enum):
    """What a failed request means (see the module doc)."""

    TRANSIENT = "transient"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    GONE = "gone"
    INVALID = "invalid"
    FORBIDDEN = "forbidden"
    BUG = "bug"
    """Not an apiserver or network failure at all."""


_TRANSIENT_STATUSES = frozenset({0, 408, 425, 429})


def fault_of_status(status: int | None) -> Fault:
    """The :class:`Fault` of an HTTP status (None or 0: no answer at all)."""
    if status is None or status in _TRANSIENT_STATUSES or status >= 500:
        return Fault.TRANSIENT
    if status == 409:
        return Fault.CONFLICT
    if status == 404:
        return Fault.NOT_FOUND
    if status == 410:
        return Fault.GONE
    if status in (401, 403):
        return Fault.FORBIDDEN
    return Fault.INVALID


def classify(exc: BaseException) -> Fault:
    """The :class:`Fault` of any exception raised by a request."""
    if isinstance(exc, ApiException):
        return fault_of_status(exc.status)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError | OSError):
        return Fault.TRANSIENT
    return Fault.BUG


async def load_api_client(
    kubeconfig: Path | None = None, *, user_agent: str = "gastown-operator"
) -> k8s_client.ApiClient:
    """Build the process's one ApiClient.

    With an explicit ``kubeconfig`` that file is used. Otherwise the in-cluster service
    account is tried first (a Pod has ``KUBERNETES_SERVICE_HOST``), then the default
    kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``). ``user_agent`` names the client
    (see :func:`user_agent_header`).
    """
    configuration = k8s_client.Configuration()
    if kubeconfig is not None:
        await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await k8s_config.load_kube_config(client_configuration=configuration)
    # Workers, informers, events and the elector share this pool; each open watch holds one.
    configuration.connection_pool_maxsize = 128
    api = k8s_client.ApiClient(configuration)
    api.user_agent = user_agent_header(user_agent)
    return api


def user_agent_header(name: str) -> str:
    """``NAME/VERSION``: the User-Agent this process sends.

    The apiserver names the field manager of every write after the User-Agent up to its
    first ``/``; the generated client's default ("OpenAPI-Generator/...") would put that
    in each Polecat's managedFields instead of who wrote them, and in the apiserver's audit
    log and metrics.
    """
    try:
        version = importlib.metadata.version("gastown-operator")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"{name}/{version}"


def dumps(obj: Any) -> bytes:
    """Serialize a JSON body (datetimes as RFC 3339)."""
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    """Parse a JSON body."""
    return orjson.loads(data)


def _encode_query(query: Query | None) -> list[tuple[str, str]]:
    if not query:
        return []
    out: list[tuple[str, str]] = []
    for key, value in query.items():
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out


def api_error(status: int, reason: str, body: bytes | str) -> ApiException:
    """An ``ApiException`` as the generated clients raise it, body decoded."""
    exc = ApiException(status=status, reason=reason)
    text: str = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    exc.body = text  # type: ignore[assignment]  # the generated clients decode it too
    return exc


def error_message(exc: BaseException) -> str:
    """The apiserver's own words for a failed request (its Status message), else str(exc)."""
    if isinstance(exc, ApiException):
        body = getattr(exc, "body", None)
        if body:
            try:
                status = loads(body)
            except orjson.JSONDecodeError:
                return f"HTTP {exc.status}: {str(body)[:300]}"
            if isinstance(status, dict) and status.get("message"):
                return f"HTTP {exc.status}: {status['message']}"
        return f"HTTP {exc.status}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _object(parsed: Any) -> Obj:
    """The answer as an object; an empty or non-object body is an empty dict."""
    return parsed if isinstance(parsed, dict) else {}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later can succeed (``TRANSIENT`` or ``CONFLICT``)."""
    return classify(exc) in (Fault.TRANSIENT, Fault.CONFLICT)


SETUP_RETRY = Backoff(base=0.2, cap=5.0, jitter=0.5)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 6,
    backoff: Backoff = SETUP_RETRY,
    what: str = "request",
) -> T:
    """Await ``call()``, again after a backoff while it fails transiently; the last error otherwise."""
    state = backoff.state()
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = state.next_delay()
            logger.info("%s failed (%s); retrying in %.2fs", what, error_message(exc), delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class KubeClient:
    """Raw JSON requests on the process's ApiClient (its session, host and credentials).

    ``request_timeout`` bounds every plain request; watches get an inactivity timeout
    instead (see :meth:`stream`), because a healthy watch may legitimately be quiet
    for minutes but never longer than the apiserver's bookmark interval.
    """

    def __init__(self, api: k8s_client.ApiClient, *, request_timeout: float | None = None) -> None:
        self.api = api
        # Read when the client is made, so one setting (or a test's monkeypatch) covers all.
        self.request_timeout = request_timeout if request_timeout is not None else REQUEST_TIMEOUT
        self._host = str(api.configuration.host).rstrip("/")
        self._server_hostname: str | None = api.rest_client.server_hostname

    @property
    def _session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self.api.rest_client.pool_manager
        return session

    async def _headers(self, content_type: str | None, accept: str = JSON) -> dict[str, str]:
        headers: dict[str, str] = dict(self.api.default_headers)
        headers["Accept"] = accept
        if content_type is not None:
            headers["Content-Type"] = content_type
        # auth_settings() runs the token refresh hook (exec plugins, rotated SA tokens).
        for setting in (await self.api.configuration.auth_settings()).values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
        request_timeout: float | None = None,
    ) -> Any:
        """Send one request and return the parsed JSON answer (None for an empty body).

        Raises ``ApiException`` for a non-2xx answer.
        """
        data: bytes | None = None if body is None else (body if isinstance(body, bytes) else dumps(body))
        headers = await self._headers(content_type if data is not None else None, accept)
        client_timeout = aiohttp.ClientTimeout(
            total=request_timeout or self.request_timeout, sock_connect=CONNECT_TIMEOUT
        )
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        async with self._session.request(
            method,
            self._host + path,
            params=_encode_query(query),
            data=data,
            headers=headers,
            timeout=client_timeout,
            **kwargs,
        ) as resp:
            payload = await resp.read()
            if not 200 <= resp.status <= 299:
                raise api_error(resp.status, resp.reason or "", payload)
        return loads(payload) if payload else None

    async def get(
        self,
        path: str,
        *,
        query: Query | None = None,
        accept: str = JSON,
        request_timeout: float | None = None,
    ) -> Obj:
        """GET and parse (``accept=METADATA_ONLY`` for metadata alone)."""
        return _object(
            await self.request("GET", path, query=query, accept=accept, request_timeout=request_timeout)
        )

    async def create(self, path: str, body: Any, *, request_timeout: float | None = None) -> Obj:
        """POST a new object to a collection."""
        return _object(await self.request("POST", path, body=body, request_timeout=request_timeout))

    async def replace(self, path: str, body: Any, *, request_timeout: float | None = None) -> Obj:
        """PUT an object (optimistic concurrency through its metadata.resourceVersion)."""
        return _object(await self.request("PUT", path, body=body, request_timeout=request_timeout))

    async def merge_patch(self, path: str, patch: Any, *, request_timeout: float | None = None) -> Obj:
        """Apply a JSON merge patch (RFC 7386) and return the object as stored."""
        return _object(
            await self.request(
                "PATCH", path, body=patch, content_type=MERGE_PATCH, request_timeout=request_timeout
            )
        )

    async def apply(
        self, path: str, body: Any, *, field_manager: str, request_timeout: float | None = None
    ) -> Obj:
        """Server-side apply ``body`` at ``path`` (create or update), forcing ownership of its fields."""
        return _object(
            await self.request(
                "PATCH",
                path,
                query={"fieldManager": field_manager, "force": True},
                body=body,
                content_type=APPLY_PATCH,
                request_timeout=request_timeout,
            )
        )

    async def delete(self, path: str, *, body: Any = None, request_timeout: float | None = None) -> Any:
        """DELETE an object (``body``: DeleteOptions, e.g. preconditions)."""
        return await self.request("DELETE", path, body=body, request_timeout=request_timeout)

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        query: Query | None = None,
        inactivity_timeout: float | None,
        connect_timeout: float = CONNECT_TIMEOUT,
        accept: str = JSON,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """Open a streaming GET (a watch, a log) and yield its body reader.

        Reading raises ``TimeoutError`` when no byte arrives for ``inactivity_timeout``
        seconds: that is the watchdog for watches that go silent (None: no limit, for a
        followed log of a quiet agent). A non-2xx answer raises ``ApiException`` before
        anything is yielded. Leaving the context closes the connection rather than
        returning a half-read stream to the pool.
        """
        headers = await self._headers(None, accept)
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=inactivity_timeout
        )
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        resp = await self._session.request(
            "GET",
            self._host + path,
            params=_encode_query(query),
            headers=headers,
            timeout=client_timeout,
            **kwargs,
        )
        try:
            if not 200 <= resp.status <= 299:
                payload = await asyncio.wait_for(resp.read(), connect_timeout)
                raise api_error(resp.status, resp.reason or "", payload)
            yield resp.content
        finally:
            resp.close()
