"""The user CLI's access to the cluster: kubeconfig, namespace, and the few calls it makes.

The CLI behaves like kubectl, because it is also ``kubectl gastown``: the kubeconfig
is ``--kubeconfig``, else ``$KUBECONFIG`` (a ``:``-separated list), else
``~/.kube/config``; ``--context`` picks a context; the namespace is ``-n``, else the
context's namespace, else ``default``. Inside a Pod with no kubeconfig the service
account is used.

Everything here is async and bounded: plain requests time out after
``REQUEST_TIMEOUT`` seconds so an unreachable cluster is an error in seconds, not a
hang. Failures surface as :class:`~gastown.cli.errors.CLIError` with an exit code,
never as a library exception. kubernetes_asyncio is imported only when a command
actually talks to a cluster, which keeps ``gastown --help`` and ``gastown validate``
fast.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gastown.api.models import GROUP, PLURAL, VERSION
from gastown.api.paths import resource_path
from gastown.cli.errors import POLECAT_API, CLIError, ExitCode, from_exception

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from gastown.kube import KubeClient

REQUEST_TIMEOUT = 15.0
CONNECT_TIMEOUT = 10.0
# A watch that hears nothing (not even a bookmark) for this long is reopened.
WATCH_INACTIVITY = 90.0
# Seconds between tries of a read the apiserver answers 429 (busy, or a CRD's cache starting).
BUSY_RETRIES = (0.25, 0.5, 1.0, 2.0)
_ANSWERED = re.compile(r"^the apiserver answered (HTTP \d+): ")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The global flags that choose a cluster and a namespace (as kubectl's)."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None

    def kubeconfig_paths(self) -> str:
        """The kubeconfig file(s) to read, ``:``-separated as in ``$KUBECONFIG``."""
        if self.kubeconfig is not None:
            return str(self.kubeconfig)
        return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")

    def kubectl_flags(self) -> list[str]:
        """The same choice expressed as kubectl flags (for the commands the CLI prints)."""
        flags: list[str] = []
        if self.kubeconfig is not None:
            flags += ["--kubeconfig", str(self.kubeconfig)]
        if self.context:
            flags += ["--context", self.context]
        return flags


def polecats_path(namespace: str | None, name: str | None = None, *, subresource: str | None = None) -> str:
    """REST path of the Polecats of a namespace (None: all namespaces), or of one Polecat."""
    return resource_path(GROUP, VERSION, PLURAL, namespace=namespace, name=name, subresource=subresource)


def polecat_label(namespace: str, name: str) -> str:
    """How errors name a Polecat."""
    return f'Polecat "{name}" in namespace "{namespace}"'


@dataclass(frozen=True, slots=True)
class Resource:
    """One custom resource of the group, as the CLI's generic calls need it."""

    kind: str
    plural: str

    @property
    def api(self) -> str:
        """How errors name the CRD when it is not installed."""
        return f"the {self.kind} API ({self.plural}.{GROUP})"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """REST path of the collection (namespace None: all namespaces) or of one object."""
        return resource_path(GROUP, VERSION, self.plural, namespace=namespace, name=name)

    def label(self, namespace: str, name: str) -> str:
        """How errors name one object: ``Convoy "x" in namespace "y"``."""
        return f'{self.kind} "{name}" in namespace "{namespace}"'


POLECATS = Resource("Polecat", PLURAL)
RIGS = Resource("Rig", "rigs")
CONVOYS = Resource("Convoy", "convoys")


class Cluster:
    """One connection to the apiserver for the length of one command.

    ``namespace`` is the effective default namespace; ``server`` the apiserver URL
    (for error messages). Use :func:`connect` to get one.
    """

    def __init__(self, api: ApiClient, kube: KubeClient, *, namespace: str, server: str) -> None:
        self.api = api
        self.kube = kube
        self.namespace = namespace
        self.server = server

    def error(self, exc: BaseException, *, what: str = "", api: str = POLECAT_API) -> CLIError:
        """``exc`` as a one-line CLIError that names this cluster."""
        return from_exception(exc, server=self.server, what=what, api=api)

    async def _call(self, coro: Any, *, what: str = "", api: str = POLECAT_API) -> Any:
        try:
            return await coro
        except CLIError:
            raise
        except Exception as exc:
            raise self.error(exc, what=what, api=api) from exc

    async def _read(
        self, request: Callable[[], Awaitable[Any]], *, what: str = "", api: str = POLECAT_API
    ) -> Any:
        """A read, tried again while the apiserver answers 429 (``BUSY_RETRIES``, then the error).

        429 "storage is (re)initializing" is what a list of a just-installed CRD gets for a
        moment after ``helm install``; kubectl waits it out, so the CLI does too. Anything
        else fails at once, so an unreachable cluster is still an error in seconds.
        """
        for delay in (*BUSY_RETRIES, None):
            try:
                return await request()
            except Exception as exc:
                if delay is None or getattr(exc, "status", None) != 429:
                    raise self.error(exc, what=what, api=api) from exc
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # -- any kind of the group (Rig, Convoy, Polecat) -------------------------------
    async def get_object(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        """One object as a dict; exit 3 when it (or its CRD) does not exist."""
        result: dict[str, Any] = await self._read(
            lambda: self.kube.get(resource.path(namespace, name)),
            what=resource.label(namespace, name),
            api=resource.api,
        )
        return result

    async def list_objects(
        self, resource: Resource, namespace: str | None, *, selector: str | None = None
    ) -> dict[str, Any]:
        """A list of the kind (``namespace`` None: every namespace), with its resourceVersion."""
        query = {"labelSelector": selector} if selector else None
        result: dict[str, Any] = await self._read(
            lambda: self.kube.get(resource.path(namespace), query=query), api=resource.api
        )
        return result

    async def create_object(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create one object; a webhook denial or schema error is exit 1 with the apiserver's words."""
        result: dict[str, Any] = await self._call(
            self.kube.create(resource.path(namespace), body), api=resource.api
        )
        return result

    async def watch_objects(
        self,
        resource: Resource,
        namespace: str,
        resource_version: str,
        *,
        name: str | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """A real watch of the kind in ``namespace`` (one object with ``name``) from ``resource_version``.

        Yields (type, object) until the server ends the stream or sends an ERROR
        (e.g. 410 Gone); the caller lists again and watches from there.
        """
        from gastown.kube import loads  # noqa: PLC0415

        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": 60,
        }
        if name is not None:
            query["fieldSelector"] = f"metadata.name={name}"
        try:
            async with self.kube.stream(
                resource.path(namespace), query=query, inactivity_timeout=WATCH_INACTIVITY
            ) as reader:
                async for line in reader:
                    if not line.strip():
                        continue
                    event = loads(line)
                    yield str(event.get("type", "")), event.get("object") or {}
        except CLIError:
            raise
        except Exception as exc:
            raise self.error(
                exc, what=f"{resource.kind}s in namespace {namespace!r}", api=resource.api
            ) from exc

    # -- Polecats -------------------------------------------------------------------
    async def get_polecat(self, namespace: str, name: str) -> dict[str, Any]:
        """One Polecat as a dict; exit 3 when it does not exist."""
        result: dict[str, Any] = await self._read(
            lambda: self.kube.get(polecats_path(namespace, name)), what=polecat_label(namespace, name)
        )
        return result

    async def list_polecats(self, namespace: str | None, *, selector: str | None = None) -> dict[str, Any]:
        """A PolecatList (``namespace`` None: every namespace)."""
        query = {"labelSelector": selector} if selector else None
        result: dict[str, Any] = await self._read(
            lambda: self.kube.get(polecats_path(namespace), query=query)
        )
        return result

    async def create_polecat(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Polecat; a webhook denial or schema error is exit 1 with the apiserver's words."""
        result: dict[str, Any] = await self._call(self.kube.create(polecats_path(namespace), body))
        return result

    async def watch_polecat(
        self, namespace: str, name: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch one Polecat from ``resource_version``; yields (type, object) until the stream ends.

        The stream ends after the server's timeout or on an ERROR event (e.g. 410 Gone);
        the caller re-reads the object and watches again. BOOKMARKs are passed through
        so the caller can keep their resourceVersion.
        """
        from gastown.kube import loads  # noqa: PLC0415

        query: dict[str, str | int | bool] = {
            "watch": True,
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": 60,
        }
        try:
            async with self.kube.stream(
                polecats_path(namespace), query=query, inactivity_timeout=WATCH_INACTIVITY
            ) as reader:
                async for line in reader:
                    if not line.strip():
                        continue
                    event = loads(line)
                    yield str(event.get("type", "")), event.get("object") or {}
        except CLIError:
            raise
        except Exception as exc:
            raise self.error(exc, what=polecat_label(namespace, name)) from exc

    # -- Events ---------------------------------------------------------------------
    async def events_about(
        self, namespace: str, *, kind: str, name: str, uid: str | None
    ) -> list[dict[str, Any]]:
        """events.k8s.io/v1 Events whose ``regarding`` is the given object (newest last)."""
        selector = f"regarding.kind={kind},regarding.name={name}"
        if uid:
            selector += f",regarding.uid={uid}"
        path = resource_path("events.k8s.io", "v1", "events", namespace=namespace)
        result = await self._call(self.kube.get(path, query={"fieldSelector": selector}))
        items: list[dict[str, Any]] = list((result or {}).get("items") or [])
        if kind == "Polecat":
            items += await self._series_naming(path, name)
        return items

    async def _series_naming(self, path: str, name: str) -> list[dict[str, Any]]:
        """Series Events about another Polecat that stand for this one too.

        In a burst the operator folds like Events of many Polecats into one series Event
        (``gastown.controller.eventseries``), which names them all in an annotation; the
        note is prefixed with the Polecat it is about, so the row reads right here.
        """
        from gastown.controller.eventseries import LABEL_SERIES, SERIES_VALUE, names_in  # noqa: PLC0415

        query = {"labelSelector": f"{LABEL_SERIES}={SERIES_VALUE}"}
        result = await self._call(self.kube.get(path, query=query))
        out = []
        for event in (result or {}).get("items") or []:
            about = str((event.get("regarding") or {}).get("name") or "")
            if about != name and name in names_in(event):
                note = f"(one of a burst, with polecat/{about}) {event.get('note') or ''}"
                out.append({**event, "note": note})
        return out


def log_error(error: CLIError, pod: str) -> CLIError:
    """Say plainly when the apiserver could not fetch logs from the node's kubelet."""
    text = error.message
    kubelet_words = (
        "dial tcp",
        "connection refused",
        "no such host",
        "kubelet",
        ":10250",
        "no route to host",
    )
    if any(word in text for word in kubelet_words) or ("failed to get" in text and "containerLogs" in text):
        return CLIError(
            f"cannot read the logs of Pod {pod}: the apiserver could not reach the kubelet of the Pod's "
            f"node ({_first_line(text)})",
            ExitCode.UNREACHABLE,
        )
    if "is waiting to start" in text and "git-clone" not in text:
        return CLIError(f"{text}; the clone step's output is in `logs -c git-clone`", error.code)
    return error


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return _ANSWERED.sub(r"\1: ", line)[:300]


def _in_cluster_namespace() -> str:
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


@asynccontextmanager
async def connect(options: ClusterOptions) -> AsyncIterator[Cluster]:
    """Load the kubeconfig (or in-cluster config) and hold one ApiClient for a command.

    Raises exit-4 CLIErrors when no configuration is usable; does not contact the
    apiserver by itself (the first request does).
    """
    from kubernetes_asyncio import client, config  # noqa: PLC0415
    from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: PLC0415

    from gastown.kube import KubeClient, user_agent_header  # noqa: PLC0415

    configuration = client.Configuration()
    paths = options.kubeconfig_paths()
    existing = [p for p in paths.split(":") if p and Path(p).expanduser().exists()]
    namespace = options.namespace
    if existing:
        try:
            loader = await config.load_kube_config(
                config_file=":".join(existing),
                context=options.context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, AssertionError, KeyError, TypeError, ValueError, OSError) as exc:
            context = f" context {options.context!r}:" if options.context else ""
            detail = str(exc) or "the context is missing or incomplete"
            raise CLIError(
                f"cannot use the kubeconfig {':'.join(existing)}:{context} {detail}", ExitCode.UNREACHABLE
            ) from exc
        current = loader.current_context or {}
        context_namespace = (current.get("context") or {}).get("namespace")
        namespace = namespace or context_namespace or "default"
    elif options.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise CLIError(f"cannot use the in-cluster configuration: {exc}", ExitCode.UNREACHABLE) from exc
        namespace = namespace or _in_cluster_namespace()
    else:
        raise CLIError(
            f"no kubeconfig found at {paths}: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config",
            ExitCode.UNREACHABLE,
        )
    api = client.ApiClient(configuration)
    api.user_agent = user_agent_header("gastown")
    try:
        kube = KubeClient(api, request_timeout=REQUEST_TIMEOUT)
        yield Cluster(api, kube, namespace=namespace or "default", server=str(configuration.host))
    finally:
        await api.close()


def polecat_reference(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace, name, uid) of a Polecat dict."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
