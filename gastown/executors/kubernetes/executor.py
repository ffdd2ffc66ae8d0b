"""Kubernetes mode: the work of a Polecat is one Pod (see ``pod.py`` and ``observer.py``).

``KubernetesExecutor`` reads Pods from the controller's informer cache (the ``pods``
lookup, keyed by namespace and Pod name, returning slim Pod dicts) and writes through
the process's one apiserver client (:class:`gastown.kube.KubeClient`, raw JSON): the
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
* ``terminate`` stops a started Pod in place (:meth:`KubernetesExecutor.stop`: its
  ``activeDeadlineSeconds`` shortened to the elapsed runtime, so the kubelet stops it
  like a deadline — SIGTERM, the runner commits, pushes and reports — and the Pod stays
  for the observer to read the report); a Pod that has not started is deleted (nothing
  ran). Until the Pod has ended the work is ``stopping`` (not yet Terminated).
* ``release`` (the Polecat is being deleted; a finalizer holds it, added in the dispatch
  round, concurrently with the Pod create) stops running work the same way, waits for
  the Pod to end, hands its result back to be recorded, and lets the Polecat go only
  when the work was pushed (or nothing ran, or a Pod succeeded without a report, as
  under kwok); otherwise it holds the Polecat, saying why, until force-delete. Owner
  references then garbage-collect the Pod.
* API errors are sorted by :func:`gastown.kube.classify` (the one classifier) and
  mapped once, in :func:`api_error`: INVALID, NOT_FOUND and FORBIDDEN (401/403: the
  operator's RBAC or credentials) → ``UserError`` with a message naming the object;
  TRANSIENT and CONFLICT → ``TransientError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import (
    ANNOTATION_FORCE_DELETE,
    KIND,
    TERMINAL_PHASES,
    DesiredState,
    KubernetesStatus,
    Phase,
    Polecat,
)
from gastown.api.paths import resource_path
from gastown.executors.base import ExecutorError, Observation, Release, TransientError, UserError
from gastown.executors.kubernetes.observer import observe_pod, parse_time, slim_pod, stop_requested
from gastown.executors.kubernetes.pod import (
    AGENT_CONTAINER,
    ANNOTATION_STOP,
    CLONE_CONTAINER,
    STOP_DELETE,
    STOP_TERMINATE,
    build_pod,
    pod_name,
)
from gastown.executors.kubernetes.policy import check_policy
from gastown.executors.kubernetes.stop import stop_deadline
from gastown.kube import METADATA_ONLY, Fault, KubeClient, classify, error_message, loads
from gastown.settings import PodDefaults

PodLookup = Callable[[str, str], dict[str, Any] | None]

LOG_READ_TIMEOUT = 60.0
"""Inactivity limit on a log read that does not follow (a followed one has none)."""


class KubernetesExecutor:
    """Runs each Polecat's work as a Pod in the Polecat's namespace."""

    def __init__(
        self,
        client: KubeClient,
        pods: PodLookup,
        defaults: PodDefaults,
        *,
        check_references: bool = True,
    ) -> None:
        self._client = client
        self._pods = pods
        self._defaults = defaults
        self._check_references = check_references

    @property
    def needs_finalizer(self) -> bool:
        """Yes: a deletion stops the Pod and records its result before the Polecat goes."""
        return True

    @property
    def finalizer_with_dispatch(self) -> bool:
        """Yes: added concurrently with the Pod create (GC removes the Pod in any case)."""
        return True

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
        check_policy(polecat, self._defaults)  # the webhook may be down or disabled
        if self._check_references:
            await self._check_referenced_objects(polecat)
        try:
            created = await self._client.create(_pods_path(ns), body)
            return observe_pod(slim_pod(created), polecat)
        except Exception as exc:
            if classify(exc) is not Fault.CONFLICT:
                raise api_error(exc, f"creating Pod {name} in namespace {ns}") from exc
        try:  # AlreadyExists: the cache lags behind an earlier create; is it ours?
            existing = await self._client.get(_pods_path(ns, name))
        except Exception as exc:
            if classify(exc) is Fault.NOT_FOUND:
                raise TransientError(
                    "PodConflict", f"Pod {name} existed and is gone again; retrying"
                ) from exc
            raise api_error(exc, f"reading Pod {name}") from exc
        return self._observe_owned(slim_pod(existing), polecat, raise_errors=True)

    async def terminate(self, polecat: Polecat) -> Observation:
        """Stop the Pod in place (see :meth:`stop`); keep the Polecat and the Pod's report."""
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        cached = self._pods(ns, name)
        if cached is None or _owner_uid(cached) != polecat.metadata.uid:
            return Observation(
                phase=Phase.TERMINATED,
                reason="Terminated",
                message=f"no Pod {name} of this Polecat was running; nothing to stop",
                kubernetes=KubernetesStatus(podName=name),
            )
        observation = observe_pod(cached, polecat)
        if observation.phase in TERMINAL_PHASES:
            return observation
        stopped = await self.stop(polecat, cached, why=STOP_TERMINATE)
        if stopped is None:
            return Observation(
                phase=Phase.TERMINATED,
                reason="Terminated",
                message=f"Pod {name} had not started, so it was deleted; no work had run",
                kubernetes=KubernetesStatus(podName=name),
            )
        return observe_pod(stopped, polecat)

    async def stop(self, polecat: Polecat, pod: dict[str, Any], *, why: str) -> dict[str, Any] | None:
        """Stop ``pod`` (ours, not ended) like a deadline; return it as it is now (slim).

        A started Pod gets ``activeDeadlineSeconds`` shortened to its elapsed runtime (it
        may only decrease) and the annotation ``gastown.gastown.io/stop`` (``why``): the
        kubelet kills it within its grace period (SIGTERM first: the runner commits, pushes
        and writes its report), it ends Failed/DeadlineExceeded and stays. Idempotent: a
        Pod already marked, or already being deleted, is left as it is. A Pod not started
        (no ``status.startTime``: nothing ran) is deleted instead; then None.
        """
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        meta = pod.get("metadata") or {}
        if stop_requested(pod) is not None or meta.get("deletionTimestamp"):
            return pod
        started = parse_time((pod.get("status") or {}).get("startTime"))
        if started is None:
            await self._delete_pod(ns, name, meta.get("uid"))
            return None
        k8s = polecat.spec.kubernetes
        deadline = stop_deadline(
            started, datetime.now(UTC), k8s.activeDeadlineSeconds if k8s is not None else None
        )
        patch: dict[str, Any] = {"metadata": {"annotations": {ANNOTATION_STOP: why}}}
        if meta.get("uid"):
            patch["metadata"]["uid"] = meta["uid"]  # only ours: a replaced Pod fails the patch
        if deadline is not None:
            patch["spec"] = {"activeDeadlineSeconds": deadline}
        try:
            stored = await self._client.merge_patch(_pods_path(ns, name), patch)
        except Exception as exc:
            if classify(exc) in (Fault.NOT_FOUND, Fault.CONFLICT):
                return pod  # gone or replaced meanwhile: its watch event tells the rest
            raise api_error(exc, f"stopping Pod {name} (shortening spec.activeDeadlineSeconds)") from exc
        return slim_pod(stored)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        """Stop running work, record its result, and let go only when nothing is lost.

        See the module doc; ``force`` lets go at once (the Pod and whatever it had not
        pushed are garbage-collected).
        """
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        if force:
            return Release(
                done=True,
                message=(
                    f"forced by {ANNOTATION_FORCE_DELETE}=true: Pod {name} is deleted with any unpushed work"
                ),
            )
        pod = self._pods(ns, name)
        if pod is not None and _owner_uid(pod) != polecat.metadata.uid:
            pod = None
        status = polecat.status
        ended_before = status is not None and status.phase in TERMINAL_PHASES
        if ended_before and (pod is None or stop_requested(pod) != STOP_DELETE):
            return Release(done=True)  # ended before the deletion: the record is in the status already
        if pod is None:
            return Release(done=True, message=f"no Pod {name} was left whose result could be read")
        observation = observe_pod(pod, polecat)
        if observation.phase not in TERMINAL_PHASES:
            stopped = await self.stop(polecat, pod, why=STOP_DELETE)
            if stopped is None:
                return Release(done=True, message=f"Pod {name} had not started; no work had run")
            observation = observe_pod(stopped, polecat)
            if observation.phase in TERMINAL_PHASES:
                return _release_ended(polecat, observation)
            if observation.node_lost_since is not None or observation.reason == "NodeNotReady":
                return Release(
                    done=False,
                    reason="NodeLost",
                    message=(
                        f"deletion held: {observation.message}; the runner cannot save the work "
                        f"while its node is lost. Set the annotation {ANNOTATION_FORCE_DELETE}=true "
                        "to finish the deletion (LOSES the work not pushed)"
                    ),
                    observation=observation,
                )
            return Release(
                done=False,
                reason="Stopping",
                message=(
                    f"being deleted: Pod {name} is stopping and the runner is saving the work to "
                    f"branch {polecat.work_branch}; the Polecat goes once its result is recorded"
                ),
                observation=observation,
            )
        return _release_ended(polecat, observation)

    async def logs(
        self, polecat: Polecat, *, follow: bool, container: str | None = None
    ) -> AsyncIterator[str]:
        """Stream a container's log lines (the CLI's ``gastown logs`` reads them here too).

        ``container`` None: the agent's, or the clone step's while the agent has not started
        (the apiserver answers 400 for a container that is waiting). Chunks are split into
        lines here rather than by aiohttp's line reader, which refuses lines over 64 KiB.
        Failures raise the typed executor error with the request's own exception as cause.
        """
        ns, name = polecat.metadata.namespace, pod_name(polecat)
        path = _pods_path(ns, name) + "/log"
        choices = (container,) if container is not None else (AGENT_CONTAINER, CLONE_CONTAINER)
        for index, choice in enumerate(choices):
            query: dict[str, str | bool] = {"container": choice}
            if follow:
                query["follow"] = True
            try:
                async with self._client.stream(
                    path,
                    query=query,
                    accept="text/plain, application/json",
                    inactivity_timeout=None if follow else LOG_READ_TIMEOUT,
                ) as content:
                    buffer = b""
                    async for chunk in content.iter_any():
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            yield line.decode("utf-8", "replace")
                    if buffer:
                        yield buffer.decode("utf-8", "replace")
                return
            except ApiException as exc:
                # 400: the container has not started (agent waiting on the init container).
                if exc.status != 400 or index == len(choices) - 1:
                    raise api_error(exc, f"reading the logs of Pod {name}") from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise api_error(exc, f"reading the logs of Pod {name}") from exc

    async def aclose(self) -> None:
        """Nothing to close: the API client belongs to the manager."""

    def attach_command(self, polecat: Polecat, *, shell: str | None = None) -> list[str]:
        """``kubectl attach -it`` to the agent container, or ``kubectl exec -it ... -- SHELL``.

        The attach streams the agent's output live (Claude Code runs headless, ``claude -p``,
        with no stdin or TTY in the container, so there is nothing to type into); ``shell``
        is the interactive way in: a shell beside the agent, in its workspace.
        """
        target = ["--namespace", polecat.metadata.namespace, f"pod/{pod_name(polecat)}", "--container"]
        if shell:
            return ["kubectl", "exec", "-it", *target, AGENT_CONTAINER, "--", shell]
        return ["kubectl", "attach", "-it", *target, AGENT_CONTAINER]

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
            try:
                await self._client.get(
                    resource_path("", "v1", resource, namespace=ns, name=obj), accept=METADATA_ONLY
                )
                continue
            except Exception as exc:
                fault = classify(exc)
                if fault is Fault.NOT_FOUND:
                    raise UserError(
                        f"{kind}NotFound",
                        f"{kind} {obj} ({field}.name) does not exist in namespace {ns}: {fix}",
                    ) from exc
                if fault is Fault.FORBIDDEN:
                    raise UserError(
                        "Forbidden",
                        f"the operator may not read {kind} {obj} ({field}.name) in namespace {ns}: grant "
                        f"its service account get on {resource} there (only metadata is read)",
                    ) from exc
                raise api_error(exc, f"checking {kind} {obj} ({field}.name)") from exc

    async def _delete_pod(self, ns: str, name: str, uid: str | None) -> None:
        """Delete Pod ``name`` (only the one with ``uid``, when given); gone already is fine."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._client.delete(_pods_path(ns, name), body=body)
        except Exception as exc:
            # Gone already, or replaced by a Pod not ours (the uid precondition failed).
            if classify(exc) not in (Fault.NOT_FOUND, Fault.CONFLICT):
                raise api_error(exc, f"deleting Pod {name}") from exc


def _release_ended(polecat: Polecat, observation: Observation) -> Release:
    """Release of a Polecat whose Pod has ended: go if the work is safe, else hold it."""
    ns, name = polecat.metadata.namespace, pod_name(polecat)
    saved = observation.work_saved
    pushed = observation.result.pushed if observation.result is not None else None
    if (saved is not None and saved.status == "True") or pushed is True:
        message = saved.message if saved is not None else observation.message
        return Release(done=True, message=message, observation=observation)
    unconfirmed = observation.phase is Phase.DONE or (saved is not None and saved.status == "Unknown")
    if pushed is None and unconfirmed:
        # Succeeded, or stopped cleanly (exit 0), without a report: kwok in the lab, a custom
        # image. Nothing says the work was lost; released, saying the push is not confirmed.
        return Release(
            done=True,
            reason="NoResultReported",
            message=f"the push was not confirmed: {observation.message}",
            observation=observation,
        )
    why = saved.message if saved is not None else observation.message
    return Release(
        done=False,
        reason="WorkNotSaved",
        message=(
            f"deletion held because the work was not saved: {why}. The Pod's logs stay readable "
            f"meanwhile (gastown logs -n {ns} {polecat.metadata.name}, or kubectl logs -n {ns} "
            f"pod/{name} -c {AGENT_CONTAINER}); push the work yourself if you need it, then set the "
            f"annotation {ANNOTATION_FORCE_DELETE}=true to finish the deletion (LOSES the unpushed work)"
        ),
        observation=observation,
    )


def _pods_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "pods", namespace=namespace, name=name)


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


def api_error(exc: BaseException, doing: str) -> ExecutorError:
    """The typed executor error for a failed request, by :func:`gastown.kube.classify`."""
    text = f"{doing} failed: {_message(exc)}"
    fault = classify(exc)
    if fault is Fault.TRANSIENT:
        status = getattr(exc, "status", None)
        if status == 429:
            return TransientError("TooManyRequests", text)
        if isinstance(exc, ApiException):
            return TransientError("ApiError", text)
        return TransientError("ApiUnreachable", text)
    if fault in (Fault.CONFLICT, Fault.GONE):
        return TransientError("ApiError", text)
    if fault is Fault.FORBIDDEN:
        return UserError("Forbidden", text)
    if fault is Fault.NOT_FOUND:
        return UserError("NotFound", text)
    if fault is Fault.INVALID:
        return UserError("Invalid", text)
    return TransientError("ApiError", text)


def _message(exc: BaseException) -> str:
    """The apiserver's Status message, without the HTTP prefix of :func:`error_message`."""
    body = getattr(exc, "body", None)
    if isinstance(exc, ApiException) and body:
        try:
            data = loads(body)
        except ValueError:
            return str(body)[:500]
        if isinstance(data, dict) and (data.get("message") or data.get("reason")):
            return str(data.get("message") or data.get("reason"))
        return f"HTTP {exc.status}"
    return error_message(exc)
