"""Informers: a LIST+WATCH mirror of one resource kind in memory, with change handlers.

An :class:`Informer` keeps ``namespace/name -> object`` for one resource (Polecats, or
the Pods the operator owns) and tells its handlers about every change. The reconciler
reads this cache instead of the apiserver; handlers only enqueue keys.

How it stays right (the client-go reflector's contract, in asyncio):

* **LIST, then WATCH from the list's resourceVersion.** The list is paginated; its
  resourceVersion is where the watch starts, so no change between the two is lost.
  A relist replaces the cache: objects that vanished produce DELETED events.
* **Bookmarks.** Watches ask for ``allowWatchBookmarks``; a BOOKMARK carries no object,
  only a newer resourceVersion to resume from after a reconnect.
* **410 Gone** (the resourceVersion was compacted away, e.g. after a long outage)
  means events were lost: relist. Any other failure (connection refused while the
  apiserver restarts, 5xx, 429, a dropped stream) resumes the watch from the last
  resourceVersion after a jittered exponential backoff (:mod:`gastown.backoff`);
  nothing is replayed twice and nothing is skipped.
* **Inactivity watchdog.** The apiserver sends a bookmark about every minute while its
  watch cache for the resource moves on, so a watch silent for longer than
  ``watchdog`` seconds (70 by default) may be stalled (a proxy that stopped
  forwarding, a half-open TCP connection) and is restarted. A quiet resource's watch
  can be that silent too, so a warning is logged only if the apiserver does not
  answer a small LIST either; an idle watch's restart is logged at debug level.
* **Server-side timeouts.** Each watch asks the server to end it after a randomized
  5-10 minutes so load spreads across apiserver replicas; it then resumes seamlessly.
* **Newest wins.** Objects written by the operator itself can be put in the cache
  straight from the write's response (:meth:`Informer.write_through`), so the next
  reconcile does not act on a stale copy; the echo of that write from the watch is
  then recognised by its resourceVersion and does not wake handlers again.
* **Small cache.** An optional ``transform`` slims every object before it is stored
  (drop managedFields, keep only what the reconciler reads); identity fields
  (namespace, name, resourceVersion) are always kept. The slim object is stored as
  compact JSON bytes deflated against an earlier object of the kind
  (:mod:`gastown.controller.compact`: ~50 bytes for a typical Polecat, against ~5 KiB
  for the same dict), and inflated and parsed on :meth:`Informer.get` (a few
  microseconds; a reconcile reads a handful). Every
  ``get`` returns a fresh dict, so no caller can corrupt the cache by mutating it.

Objects are plain dicts parsed with orjson: the generated model classes cost far more
CPU to build than the apiserver takes to send them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import orjson
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.paths import resource_path
from gastown.backoff import Backoff, BackoffState
from gastown.controller.compact import DictionaryCodec
from gastown.kube import Fault, KubeClient, classify, error_message

logger = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Obj = dict[str, Any]
Transform = Callable[[Obj], Obj]

LIST_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """Which resource an informer mirrors (``group`` "" is the core API)."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None = None) -> str:
        """The collection's REST path, across all namespaces when ``namespace`` is None."""
        return resource_path(self.group, self.version, self.plural, namespace=namespace)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change to the cache: the (slim) object as it is now, or as it last was if DELETED.

    Level-based handlers need no more: they enqueue a key and the reconciler reads the
    cache. There is deliberately no "old" object (keeping one would double the cache).
    """

    type: EventType
    key: str
    obj: Obj


class EventHandler(Protocol):
    """Called synchronously for every cache change; must be cheap (enqueue a key)."""

    def __call__(self, event: WatchEvent) -> None: ...


class InformerObserver(Protocol):
    """Metric hooks of an informer."""

    def on_relist(self, resource: str) -> None: ...
    def on_watch_restart(self, resource: str, reason: str) -> None: ...
    def on_event(self, resource: str, type: str) -> None: ...


class NullInformerObserver:
    """Records nothing."""

    def on_relist(self, resource: str) -> None:
        """Nothing."""

    def on_watch_restart(self, resource: str, reason: str) -> None:
        """Nothing."""

    def on_event(self, resource: str, type: str) -> None:
        """Nothing."""


@dataclass(frozen=True, slots=True)
class InformerOptions:
    """Timing of list/watch; the defaults suit production, tests shorten them."""

    watchdog: float = 70.0
    """Seconds a watch may stay silent (no event, no bookmark) before it is restarted."""
    min_watch_timeout: int = 300
    """Server-side watch timeout is drawn from [min, 2*min) seconds."""
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    request_timeout: float = 60.0
    """Bound on one LIST page."""


def object_key(obj: Obj) -> str:
    """``namespace/name`` of an object (``name`` alone for cluster-scoped ones)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "")
    return f"{namespace}/{name}" if namespace else str(name)


def resource_version(obj: Obj | None) -> str:
    """``metadata.resourceVersion`` or ""."""
    if obj is None:
        return ""
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _is_newer(candidate: str, current: str) -> bool:
    """Whether ``candidate`` is a later resourceVersion than ``current``.

    resourceVersions are opaque, but every apiserver backed by etcd uses integers, and
    comparing them is what lets a write-through coexist with a lagging watch. When
    either is not an integer, the candidate is taken as newer (plain mirror behaviour).
    """
    if not current:
        return True
    try:
        return int(candidate) > int(current)
    except ValueError:
        return candidate != current


class _ExpiredError(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


class _SilentWatchError(Exception):
    """The watch sent nothing for longer than the watchdog allows."""


class Informer:
    """Mirror of one resource kind, in one or more namespaces (see the module doc).

    ``namespaces`` empty means all namespaces (one cluster-wide watch); otherwise one
    list+watch per namespace feeds the shared cache. Call :meth:`run` in a task owned
    by the caller; cancel it to stop. :attr:`synced` is set once every namespace has
    been listed.
    """

    def __init__(
        self,
        client: KubeClient,
        kind: ResourceKind,
        *,
        namespaces: list[str] | None = None,
        label_selector: str | None = None,
        transform: Transform | None = None,
        options: InformerOptions | None = None,
        observer: InformerObserver | None = None,
        name: str | None = None,
    ) -> None:
        self._client = client
        self.kind = kind
        self.name = name or kind.plural
        self._scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._label_selector = label_selector
        self._transform = transform
        self._options = options or InformerOptions()
        self._observer: InformerObserver = observer or NullInformerObserver()
        # key -> (resourceVersion, the slim object as JSON bytes compressed by _codec)
        self._store: dict[str, tuple[str, bytes]] = {}
        self._codec = DictionaryCodec()
        self._handlers: list[EventHandler] = []
        self._synced_scopes: set[str | None] = set()
        self.synced = asyncio.Event()
        self.last_resource_version: dict[str | None, str] = {}
        self._resume_override: dict[str | None, str] = {}

    # -- cache ----------------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        """Register a handler; it sees changes from now on (add it before :meth:`run`)."""
        self._handlers.append(handler)

    def get(self, key: str) -> Obj | None:
        """A fresh copy of the cached object for ``namespace/name``, or None."""
        entry = self._store.get(key)
        if entry is None:
            return None
        obj: Obj = orjson.loads(self._codec.decode(entry[1]))
        return obj

    def get_by_name(self, namespace: str, name: str) -> Obj | None:
        """A fresh copy of the cached object ``namespace``/``name``, or None."""
        return self.get(f"{namespace}/{name}")

    def cached_resource_version(self, key: str) -> str | None:
        """The resourceVersion of the cached object, without parsing it."""
        entry = self._store.get(key)
        return entry[0] if entry is not None else None

    def keys(self) -> list[str]:
        """Every cached key (a snapshot)."""
        return list(self._store)

    def values(self) -> Iterator[Obj]:
        """Iterate over copies of the cached objects (a snapshot of the keys)."""
        for _, blob in list(self._store.values()):
            yield orjson.loads(self._codec.decode(blob))

    def __len__(self) -> int:
        """Number of cached objects."""
        return len(self._store)

    def _put(self, key: str, slim: Obj) -> None:
        self._store[key] = (resource_version(slim), self._codec.encode(orjson.dumps(slim)))

    def resume_from(self, resource_version: str) -> None:
        """Make each watch's next reconnect start from ``resource_version``.

        For fault tests: resuming from a version long compacted away is what a watch
        faces after a long outage, and the apiserver answers it with 410 Gone.
        """
        for scope in self._scopes:
            self._resume_override[scope] = resource_version

    def write_through(self, obj: Obj) -> None:
        """Store an object the operator just wrote (the write's response), if it is newer.

        Handlers are not told: the writer already knows, and the watch's echo of the
        same resourceVersion will be recognised as no change.
        """
        slim = self._slim(obj)
        key = object_key(slim)
        current = self.cached_resource_version(key)
        if current is None or _is_newer(resource_version(slim), current):
            self._put(key, slim)

    def _slim(self, raw: Obj) -> Obj:
        if self._transform is None:
            return raw
        slim = self._transform(raw)
        # Identity must survive any transform: keys, resourceVersion ordering.
        raw_meta = raw.get("metadata") or {}
        meta = slim.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
            slim["metadata"] = meta
        for field in ("name", "namespace", "resourceVersion", "uid"):
            if field in raw_meta and field not in meta:
                meta[field] = raw_meta[field]
        return slim

    def _emit(self, event: WatchEvent) -> None:
        self._observer.on_event(self.name, event.type)
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                logger.exception("informer handler failed", extra={"informer": self.name, "key": event.key})

    def _apply(self, raw: Obj) -> None:
        """ADDED/MODIFIED: store if newer, and tell handlers."""
        slim = self._slim(raw)
        key = object_key(slim)
        current = self.cached_resource_version(key)
        if current is not None and not _is_newer(resource_version(slim), current):
            return  # the echo of a write-through, or a replay: nothing changed
        self._put(key, slim)
        self._emit(WatchEvent("ADDED" if current is None else "MODIFIED", key, slim))

    def _remove(self, raw: Obj) -> None:
        slim = self._slim(raw)  # the object's final state, as the DELETED event carries it
        key = object_key(slim)
        self._store.pop(key, None)
        self._emit(WatchEvent("DELETED", key, slim))

    # -- list / watch ---------------------------------------------------------------

    async def run(self) -> None:
        """List and watch every scope until cancelled (one task per scope, in one task group)."""
        async with anyio.create_task_group() as group:
            for scope in self._scopes:
                group.start_soon(self._run_scope, scope, name=f"informer-{self.name}-{scope or 'all'}")

    async def _run_scope(self, scope: str | None) -> None:
        backoff = Backoff(self._options.backoff_base, self._options.backoff_cap, jitter=0.5).state()
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list(scope)
                    self.last_resource_version[scope] = rv
                    self._synced_scopes.add(scope)
                    if len(self._synced_scopes) == len(self._scopes):
                        self.synced.set()
                    backoff.reset()
                started = asyncio.get_running_loop().time()
                rv = self._resume_override.pop(scope, rv)
                rv = await self._watch(scope, rv, backoff)
                self._observer.on_watch_restart(self.name, "closed")
                if asyncio.get_running_loop().time() - started < 1.0:
                    # A stream the server ends at once (shutting down, overloaded): do
                    # not spin; healthy streams last minutes.
                    await asyncio.sleep(backoff.next_delay())
            except _ExpiredError:
                logger.info("watch expired (410 Gone); relisting", extra={"informer": self.name})
                self._observer.on_watch_restart(self.name, "expired")
                rv = None
            except asyncio.CancelledError:
                raise
            except _SilentWatchError:
                self._observer.on_watch_restart(self.name, "watchdog")
                # Reconnect at once either way; warn only if the apiserver is silent too.
                where = {"informer": self.name, "namespace": scope}
                silent = await self._apiserver_silent(scope)
                if silent is None:
                    logger.debug(
                        "watch idle for %.0fs (apiserver answers); reconnecting",
                        self._options.watchdog,
                        extra=where,
                    )
                else:
                    logger.warning(
                        "watch silent for %.0fs and the apiserver does not answer (%s); restarting",
                        self._options.watchdog,
                        silent,
                        extra=where,
                    )
            except Exception as exc:
                if classify(exc) is Fault.GONE:
                    # The list's continue token expired mid-pagination.
                    rv = None
                    continue
                delay = backoff.next_delay()
                self._observer.on_watch_restart(self.name, "error")
                logger.warning(
                    "%s failed: %s; retrying in %.2fs",
                    "list" if rv is None else "watch",
                    error_message(exc),
                    delay,
                    extra={"informer": self.name, "namespace": scope},
                )
                await asyncio.sleep(delay)

    async def _apiserver_silent(self, scope: str | None) -> str | None:
        """After the watchdog fired: None if the apiserver answers a small LIST, else why not.

        A watch of a quiet resource can go a whole watchdog period without a byte: the
        apiserver sends bookmarks only as its watch cache for that resource moves on,
        and an idle one (no Pods at all, say) may not move for minutes. That is a
        healthy idle watch, restarted without a warning. A stalled path or a hung
        apiserver fails this probe too, and that is worth a warning.
        """
        query: dict[str, str | int | bool] = {"limit": 1}
        if self._label_selector:
            query["labelSelector"] = self._label_selector
        try:
            await self._client.get(
                self.kind.path(scope),
                query=query,
                request_timeout=min(self._options.request_timeout, self._options.watchdog),
            )
        except Exception as exc:
            return error_message(exc) or type(exc).__name__
        return None

    async def _list(self, scope: str | None) -> str:
        """List every object in ``scope``, replace that part of the cache, return the list's RV."""
        path = self.kind.path(scope)
        items: dict[str, Obj] = {}
        list_rv = ""
        continue_token: str | None = None
        while True:
            query: dict[str, str | int | bool] = {"limit": LIST_PAGE_SIZE}
            if self._label_selector:
                query["labelSelector"] = self._label_selector
            if continue_token:
                query["continue"] = continue_token
            page = await self._client.get(path, query=query, request_timeout=self._options.request_timeout)
            for raw in page.get("items") or []:
                slim = self._slim(raw)
                items[object_key(slim)] = slim
            meta = page.get("metadata") or {}
            list_rv = str(meta.get("resourceVersion", list_rv))
            continue_token = meta.get("continue") or None
            if not continue_token:
                break
        self._replace(scope, items)
        self._observer.on_relist(self.name)
        logger.debug(
            "listed %d objects at resourceVersion %s",
            len(items),
            list_rv,
            extra={"informer": self.name, "namespace": scope},
        )
        return list_rv

    def _replace(self, scope: str | None, items: dict[str, Obj]) -> None:
        """Make the cache's part for ``scope`` equal ``items``, emitting the differences."""
        prefix = f"{scope}/" if scope else None
        for key in [k for k in self._store if (prefix is None or k.startswith(prefix)) and k not in items]:
            _, blob = self._store.pop(key)
            self._emit(WatchEvent("DELETED", key, orjson.loads(self._codec.decode(blob))))
        for key, slim in items.items():
            current = self.cached_resource_version(key)
            if current is not None and not _is_newer(resource_version(slim), current):
                continue  # unchanged, or a write-through newer than the list
            self._put(key, slim)
            self._emit(WatchEvent("ADDED" if current is None else "MODIFIED", key, slim))

    async def _watch(self, scope: str | None, rv: str, backoff: BackoffState) -> str:
        """Watch from ``rv`` until the server ends the stream; return the last RV seen.

        Raises ``_ExpiredError`` on 410, ``_SilentWatchError`` when the watchdog fires.
        """
        timeout_seconds = random.randint(
            self._options.min_watch_timeout, 2 * self._options.min_watch_timeout - 1
        )
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": rv,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        if self._label_selector:
            query["labelSelector"] = self._label_selector
        try:
            async with self._client.stream(
                self.kind.path(scope), query=query, inactivity_timeout=self._options.watchdog
            ) as body:
                while True:
                    try:
                        line = await body.readline()
                    except TimeoutError as exc:
                        raise _SilentWatchError from exc
                    if not line:
                        return rv  # the server closed the stream (timeoutSeconds, restart)
                    if line.isspace():
                        continue
                    rv = self._handle_line(line, rv)
                    backoff.reset()
        except ApiException as exc:
            if classify(exc) is Fault.GONE:
                raise _ExpiredError from exc
            raise
        finally:
            self.last_resource_version[scope] = rv

    def _handle_line(self, line: bytes, rv: str) -> str:
        event = orjson.loads(line)
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410 or obj.get("reason") in ("Expired", "Gone"):
                raise _ExpiredError(obj.get("message", "resourceVersion expired"))
            raise ApiException(status=code or 500, reason=f"watch error: {obj.get('message', obj)}")
        new_rv = resource_version(obj) or rv
        if kind == "BOOKMARK":
            return new_rv
        if kind in ("ADDED", "MODIFIED"):
            self._apply(obj)
        elif kind == "DELETED":
            self._remove(obj)
        return new_rv
