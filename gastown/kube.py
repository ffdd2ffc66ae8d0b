"""The operator's connection to the apiserver: one ApiClient, spoken to in raw JSON.

One ``kubernetes_asyncio`` ``ApiClient`` per process holds the configuration (kubeconfig,
in-cluster service account or ``~/.kube/config``), the credentials and the pooled aiohttp
session. The hot paths of the operator (LIST/WATCH of every Polecat and Pod, status
patches, Events, the Lease) do not go through the generated API classes: their model
deserialization costs far more CPU than the apiserver round trip. :class:`KubeClient`
sends requests on the ApiClient's session and parses bodies with orjson into plain dicts,
which is also the shape the informer caches keep.

Errors keep the library's type: a non-2xx answer raises ``ApiException`` with ``status``,
``reason`` and the response ``body``, so code written against the generated API classes
handles both alike. Connection faults surface as ``aiohttp.ClientError`` /
``TimeoutError``; :func:`is_transient` says which failures are worth a retry.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

QueryValue = str | int | bool
Query = Mapping[str, QueryValue]

# HTTP statuses after which the same request may succeed later.
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


async def load_api_client(kubeconfig: Path | None = None) -> k8s_client.ApiClient:
    """Build the process's one ApiClient.

    With an explicit ``kubeconfig`` that file is used. Otherwise the in-cluster service
    account is tried first (a Pod has ``KUBERNETES_SERVICE_HOST``), then the default
    kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).
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
    return k8s_client.ApiClient(configuration)


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


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later can succeed."""
    if isinstance(exc, ApiException):
        return exc.status in _TRANSIENT_STATUSES or exc.status is None or exc.status == 0
    return isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError | OSError)


class KubeClient:
    """Raw JSON requests on the process's ApiClient (its session, host and credentials).

    ``request_timeout`` bounds every plain request; watches get an inactivity timeout
    instead (see :meth:`stream`), because a healthy watch may legitimately be quiet
    for minutes but never longer than the apiserver's bookmark interval.
    """

    def __init__(self, api: k8s_client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self.api = api
        self.request_timeout = request_timeout
        self._host = str(api.configuration.host).rstrip("/")
        self._server_hostname: str | None = api.rest_client.server_hostname

    @property
    def _session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self.api.rest_client.pool_manager
        return session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = dict(self.api.default_headers)
        headers["Accept"] = JSON
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
        request_timeout: float | None = None,
    ) -> Any:
        """Send one request and return the parsed JSON answer (None for an empty body).

        Raises ``ApiException`` for a non-2xx answer.
        """
        data: bytes | None = None if body is None else (body if isinstance(body, bytes) else dumps(body))
        headers = await self._headers(content_type if data is not None else None)
        client_timeout = aiohttp.ClientTimeout(total=request_timeout or self.request_timeout)
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
        self, path: str, *, query: Query | None = None, request_timeout: float | None = None
    ) -> Any:
        """GET and parse."""
        return await self.request("GET", path, query=query, request_timeout=request_timeout)

    async def create(self, path: str, body: Any, *, request_timeout: float | None = None) -> Any:
        """POST a new object to a collection."""
        return await self.request("POST", path, body=body, request_timeout=request_timeout)

    async def replace(self, path: str, body: Any, *, request_timeout: float | None = None) -> Any:
        """PUT an object (optimistic concurrency through its metadata.resourceVersion)."""
        return await self.request("PUT", path, body=body, request_timeout=request_timeout)

    async def merge_patch(self, path: str, patch: Any, *, request_timeout: float | None = None) -> Any:
        """Apply a JSON merge patch (RFC 7386) and return the object as stored."""
        return await self.request(
            "PATCH", path, body=patch, content_type=MERGE_PATCH, request_timeout=request_timeout
        )

    async def delete(self, path: str, *, request_timeout: float | None = None) -> Any:
        """DELETE an object."""
        return await self.request("DELETE", path, request_timeout=request_timeout)

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        query: Query | None = None,
        inactivity_timeout: float,
        connect_timeout: float = 10.0,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """Open a streaming GET (a watch) and yield its body reader.

        Reading raises ``TimeoutError`` when no byte arrives for ``inactivity_timeout``
        seconds: that is the watchdog for watches that go silent. A non-2xx answer
        raises ``ApiException`` before anything is yielded. Leaving the context closes
        the connection rather than returning a half-read stream to the pool.
        """
        headers = await self._headers(None)
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
