"""Kubernetes mode: the work of a Polecat is one Pod (see ``pod.py`` and ``observer.py``).

``KubernetesExecutor`` reads Pods from the controller's informer cache (the ``pods``
lookup, keyed by namespace and Pod name, returning slim Pod dicts) and writes through
the API. It talks to the apiserver with raw JSON (``_preload_content=False``): the
Pod is built as a dict and never round-trips through the generated model classes.

Contract points:

* ``dispatch`` is idempotent: a Pod in the cache is observed, not recreated; 409
  AlreadyExists from the apiserver (the cache lagging) is success once the existing
  Pod is confirmed to be this Polecat's. A Pod deleted behind our back is recreated
  only while the work is unfinished: a Polecat whose status is Done, Failed or
  Terminated keeps that status and gets no new Pod.
* Before creating, the Secrets and ConfigMap the Pod references are checked to exist
  (a metadata-only GET: their data never enters the operator), so a typo becomes a
  clear ``UserError`` instead of a Pod stuck in ContainerCreating.
* ``terminate`` deletes the Pod (with a uid precondition, so only ours) and keeps the
  Polecat; the Pod's grace period lets the runner commit and push first.
* ``release`` has nothing to do: owner references garbage-collect the Pod.
* API errors: 400/403/404/422 → ``UserError`` (a clear message naming the object),
  429, 5xx, 401, timeouts and connection faults → ``TransientError``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio.client import ApiClient

from gastown.api.models import KIND, TERMINAL_PHASES, DesiredState, KubernetesStatus, Phase, Polecat
from gastown.executors.base import ExecutorError, Observation, Release, TransientError, UserError
from gastown.executors.kubernetes.observer import observe_pod, slim_pod
from gastown.executors.kubernetes.pod import AGENT_CONTAINER, CLONE_CONTAINER, build_pod, pod_name
from gastown.settings import PodDefaults

PodLookup = Callable[[str, str], dict[str, Any] | None]

CONNECT_TIMEOUT = 10.0
# Every request has a deadline (kubernetes_asyncio's default is none at all).
REQUEST_TIMEOUT = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=30.0, total=60.0)
_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


class KubernetesExecutor:
    """Runs each Polecat's work as a Pod in the Polecat's namespace."""

    def __init__(
        self,
        api: ApiClient,
        pods: PodLookup,
        defaults: PodDefaults,
        *,
        check_references: bool = True,
    ) -> None:
        self._api = api
        self._pods = pods
        self._defaults = defaults
        self._check_references = check_references

    @property
    def needs_finalizer(self) -> bool:
        """Owner references delete the Pod with the Polecat; no finalizer needed."""
        return False

    async def observe(self, polecat: Polecat) -> Observation:
        """Map the cached Pod to an Observation; never calls the API."""
        pod = self._pods(polecat.metadata.namespace, pod_name(polecat))
        if pod is None:
            return observe_pod(None, polecat)
        return self._observe_owned(pod, polecat, raise_errors=False)

    async def dispatch(self, polecat: Polecat) -> Observation:
        """Create the Pod unless it exists or the work already finished."""
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        cached = self._pods(ns, name)
        if cached is not None:
            return self._observe_owned(cached, polecat, raise_errors=True)
        finished = _finished(polecat)
        if finished is not None:
            return finished
        if polecat.spec.desiredState == DesiredState.TERMINATED:
            return Observation(phase=Phase.TERMINATED, reason="Terminated", message="no work was requested")
        body = build_pod(polecat, self._defaults)  # raises UserError without spec.kubernetes
        if self._check_references:
            await self._check_referenced_objects(polecat)
        status, data = await self._request("POST", f"/api/v1/namespaces/{_q(ns)}/pods", body=body)
        if status in (200, 201):
            return observe_pod(slim_pod(data), polecat)
        if status == 409:
            status, data = await self._request("GET", f"/api/v1/namespaces/{_q(ns)}/pods/{_q(name)}")
            if status == 404:
                raise TransientError("PodConflict", f"Pod {name} existed and is gone again; retrying")
            if status != 200:
                raise api_error(status, data, f"reading Pod {name}")
            return self._observe_owned(slim_pod(data), polecat, raise_errors=True)
        raise api_error(status, data, f"creating Pod {name} in namespace {ns}")

    async def terminate(self, polecat: Polecat) -> Observation:
        """Delete the Pod (the runner pushes within its grace period); keep the Polecat."""
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        k8s = KubernetesStatus(podName=name)
        done = Observation(
            phase=Phase.TERMINATED,
            reason="Terminated",
            message=f"Pod {name} was deleted on request; work pushed before it stopped is on "
            f"branch {polecat.work_branch}",
            kubernetes=k8s,
        )
        cached = self._pods(ns, name)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if cached is not None:
            if _owner_uid(cached) != polecat.metadata.uid:
                return done  # not ours: leave it alone
            uid = (cached.get("metadata") or {}).get("uid")
            if uid:
                body["preconditions"] = {"uid": uid}
        status, data = await self._request(
            "DELETE", f"/api/v1/namespaces/{_q(ns)}/pods/{_q(name)}", body=body
        )
        if status in (200, 202, 404, 409):  # deleted, deleting, gone, or replaced by a Pod not ours
            return done
        raise api_error(status, data, f"deleting Pod {name}")

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        """Nothing to clean up: garbage collection follows the owner reference."""
        del polecat, force
        return Release(done=True)

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        """Stream the agent container's log lines; the clone's while the agent has not started."""
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        path = f"/api/v1/namespaces/{_q(ns)}/pods/{_q(name)}/log"
        deadline = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=None if follow else 60.0)
        response = None
        for container in (AGENT_CONTAINER, CLONE_CONTAINER):
            query = [("container", container)] + ([("follow", "true")] if follow else [])
            response = await self._open(path, query, deadline)
            if response.status == 200:
                break
            data = await _read_json(response)
            # 400: the container has not started (agent waiting on the init container).
            if response.status != 400 or container == CLONE_CONTAINER:
                raise api_error(response.status, data, f"reading the logs of Pod {name}")
        assert response is not None
        try:
            async for raw in response.content:
                yield raw.decode(errors="replace").rstrip("\n")
        finally:
            response.release()

    def attach_command(self, polecat: Polecat) -> list[str]:
        """``kubectl logs --follow`` of the agent container (the agent is non-interactive)."""
        return [
            "kubectl",
            "logs",
            "--follow",
            "--namespace",
            polecat.metadata.namespace,
            f"pod/{pod_name(polecat)}",
            "--container",
            AGENT_CONTAINER,
        ]

    # -- internals ---------------------------------------------------------------------

    def _observe_owned(self, pod: dict[str, Any], polecat: Polecat, *, raise_errors: bool) -> Observation:
        """Observe ``pod`` if it belongs to ``polecat``; explain when it does not."""
        name = pod_name(polecat)
        owner = _owner_uid(pod)
        if owner == polecat.metadata.uid:
            return observe_pod(pod, polecat)
        if owner is not None:
            # A Pod of an earlier Polecat with the same name: garbage collection removes it.
            message = f"waiting for Pod {name} of a deleted Polecat with the same name to be removed"
            if raise_errors:
                raise TransientError("StalePod", message)
            return Observation(phase=None, reason="StalePod", message=message)
        message = (
            f"a Pod named {name} exists that this Polecat does not own: delete it, or rename the Polecat"
        )
        if raise_errors:
            raise UserError("PodNameTaken", message)
        return Observation(phase=Phase.STUCK, reason="PodNameTaken", message=message)

    async def _check_referenced_objects(self, polecat: Polecat) -> None:
        k8s = polecat.spec.kubernetes
        if k8s is None:
            return
        ns = polecat.metadata.namespace
        checks: list[tuple[str, str, str, str]] = []
        if k8s.gitSecretRef is not None:
            checks.append(
                (
                    "secrets",
                    k8s.gitSecretRef.name,
                    "spec.kubernetes.gitSecretRef",
                    "create a kubernetes.io/ssh-auth Secret with key ssh-privatekey",
                )
            )
        if k8s.knownHostsConfigMapRef is not None:
            checks.append(
                (
                    "configmaps",
                    k8s.knownHostsConfigMapRef.name,
                    "spec.kubernetes.knownHostsConfigMapRef",
                    "create a ConfigMap whose known_hosts key holds the git host's keys (ssh-keyscan)",
                )
            )
        if k8s.agentSecretRef is not None:
            checks.append(
                (
                    "secrets",
                    k8s.agentSecretRef.name,
                    "spec.kubernetes.agentSecretRef",
                    f"create a Secret with key {k8s.agentSecretRef.key} holding the agent's API key",
                )
            )
        for resource, obj, field, fix in checks:
            kind = "Secret" if resource == "secrets" else "ConfigMap"
            status, data = await self._request(
                "GET", f"/api/v1/namespaces/{_q(ns)}/{resource}/{_q(obj)}", accept=_METADATA_ONLY
            )
            if status == 200:
                continue
            if status == 404:
                raise UserError(
                    f"{kind}NotFound", f"{kind} {obj} ({field}.name) does not exist in namespace {ns}: {fix}"
                )
            if status == 403:
                raise UserError(
                    "Forbidden",
                    f"the operator may not read {kind} {obj} ({field}.name) in namespace {ns}: grant its "
                    f"service account get on {resource} there (only metadata is read)",
                )
            raise api_error(status, data, f"checking {kind} {obj} ({field}.name)")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        accept: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """One JSON request; returns (HTTP status, decoded body). Network faults are transient."""
        try:
            response = await self._api.call_api(
                path,
                method,
                header_params={"Accept": accept, "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return response.status, await _read_json(response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError("ApiUnreachable", f"{method} {path}: {exc or type(exc).__name__}") from exc

    async def _open(
        self, path: str, query: list[tuple[str, str]], deadline: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "text/plain, application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=deadline,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError("ApiUnreachable", f"GET {path}: {exc or type(exc).__name__}") from exc
        return response


def _q(segment: str) -> str:
    return quote(segment, safe="")


async def _read_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        raw = await response.read()
    finally:
        response.release()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw.decode(errors="replace")[:500]}
    return data if isinstance(data, dict) else {}


def _owner_uid(pod: dict[str, Any]) -> str | None:
    """uid of the Polecat that controls ``pod``, or None if no Polecat does."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND:
            uid = ref.get("uid")
            return uid if isinstance(uid, str) else None
    return None


def _finished(polecat: Polecat) -> Observation | None:
    """The Polecat's own finished status, when the work ended and must not run again."""
    status = polecat.status
    if status is None or status.phase not in TERMINAL_PHASES:
        return None
    name = pod_name(polecat)
    return Observation(
        phase=status.phase,
        reason="PodGone",
        message=f"Pod {name} is gone; the work had ended ({status.phase}), so it is not recreated",
        kubernetes=KubernetesStatus(podName=name),
        result=status.result,
    )


def api_error(status: int, data: dict[str, Any], doing: str) -> ExecutorError:
    """The typed error for an apiserver answer ``status`` with Status body ``data``."""
    message = str(data.get("message") or data.get("reason") or f"HTTP {status}")
    text = f"{doing} failed: {message}"
    if status == 429:
        return TransientError("TooManyRequests", text)
    if status >= 500 or status in (0, 401, 408, 409, 410):
        return TransientError("ApiError", text)
    if status == 403:
        return UserError("Forbidden", text)
    if status == 404:
        return UserError("NotFound", text)
    if status in (400, 422):
        return UserError("Invalid", text)
    return TransientError("ApiError", text)
