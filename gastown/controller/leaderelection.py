"""Leader election on a ``coordination.k8s.io/v1`` Lease: one replica reconciles.

Every replica serves the admission webhook; only the holder of the Lease runs the
informers and workers. The protocol is client-go's, written small so that it can do
what ``kubernetes_asyncio.leaderelection`` does not (release on shutdown, survive any
error, keep campaigning after a loss):

* **Acquire.** A candidate reads the Lease every ``retry_period`` (jittered). It takes
  it when it does not exist, when ``holderIdentity`` is empty (released), or when the
  record has not changed for ``leaseDurationSeconds`` *as measured on the candidate's
  own clock since it last saw the record change* — so clock skew between nodes does
  not matter. Writes are a create, or a replace carrying the resourceVersion read,
  so two candidates cannot both win.
* **Renew.** The leader rewrites ``renewTime`` every ``retry_period``. If it cannot
  renew for ``renew_deadline`` seconds (shorter than the lease duration) it gives up
  leadership *before* anyone else may take it, and its ``on_stopped_leading`` stops
  the controllers. It then campaigns again.
* **Release.** On graceful shutdown the leader clears ``holderIdentity`` and sets
  ``leaseDurationSeconds: 1``; a standby sees the empty holder on its next poll and
  takes over within about one retry period instead of a whole lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.paths import resource_path
from gastown.kube import Fault, KubeClient, classify, error_message

logger = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Where the Lease is and how long things take (seconds)."""

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease_duration > renew_deadline > retry_period > 0, got "
                f"{self.lease_duration} > {self.renew_deadline} > {self.retry_period}"
            )


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for a Lease and calls back on gaining and losing it.

    Run :meth:`run` in a task owned by the caller. ``on_started_leading`` is awaited
    when the Lease is won (it should start work and return); ``on_stopped_leading``
    when it is lost or released (it should stop work and return). Cancel the task to
    stop campaigning; call :meth:`release` first for a graceful hand-over.
    """

    def __init__(
        self,
        client: KubeClient,
        config: LeaseConfig,
        *,
        on_started_leading: Callback,
        on_stopped_leading: Callback,
    ) -> None:
        self._client = client
        self.config = config
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._path = resource_path(
            "coordination.k8s.io", "v1", "leases", namespace=config.namespace, name=config.name
        )
        self._collection = resource_path("coordination.k8s.io", "v1", "leases", namespace=config.namespace)
        self._lease: dict[str, Any] | None = None
        self._observed_spec: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._leading = False
        self._last_renew = 0.0
        self._lock = asyncio.Lock()
        self._stopping = False

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the Lease now."""
        return self._leading

    async def run(self) -> None:
        """Campaign, lead, and campaign again after a loss, until cancelled."""
        try:
            while not self._stopping:
                await self._campaign()
                if self._stopping:
                    break
                await self._lead()
        finally:
            if self._leading:
                self._leading = False
                await asyncio.shield(self._on_stopped())

    def _sleep_time(self) -> float:
        return self.config.retry_period * random.uniform(0.8, 1.0)

    async def _campaign(self) -> None:
        while not self._stopping:
            try:
                async with self._lock:
                    acquired = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lease %s: %s", self.config.name, error_message(exc))
                acquired = False
            if acquired:
                self._leading = True
                self._last_renew = time.monotonic()
                logger.info(
                    "became leader", extra={"lease": self.config.name, "identity": self.config.identity}
                )
                await self._on_started()
                return
            await asyncio.sleep(self._sleep_time())

    async def _lead(self) -> None:
        while self._leading and not self._stopping:
            await asyncio.sleep(self.config.retry_period)
            if self._stopping:
                return
            try:
                async with self._lock:
                    if not self._leading:
                        return
                    renewed = await asyncio.wait_for(
                        self._try_acquire_or_renew(),
                        max(self.config.renew_deadline - (time.monotonic() - self._last_renew), 0.1),
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lease %s renewal failed: %s", self.config.name, error_message(exc))
                renewed = False
            if renewed:
                self._last_renew = time.monotonic()
            elif time.monotonic() - self._last_renew >= self.config.renew_deadline or self._held_by_other():
                logger.error(
                    "lost leadership (could not renew for %.1fs)",
                    time.monotonic() - self._last_renew,
                    extra={"lease": self.config.name},
                )
                self._leading = False
                await self._on_stopped()
                return

    def _held_by_other(self) -> bool:
        if self._lease is None:
            return False
        holder = (self._lease.get("spec") or {}).get("holderIdentity")
        return bool(holder) and holder != self.config.identity

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt: True when this replica holds the Lease afterwards."""
        now = datetime.now(UTC)
        timeout = max(self.config.retry_period, 1.0)
        try:
            lease = await self._client.get(self._path, request_timeout=timeout)
        except ApiException as exc:
            if classify(exc) is not Fault.NOT_FOUND:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                "spec": self._spec(now, transitions=0, acquire=now),
            }
            try:
                self._lease = await self._client.create(self._collection, body, request_timeout=timeout)
            except ApiException as create_exc:
                if classify(create_exc) is Fault.CONFLICT:
                    return False
                raise
            self._observe(self._lease)
            return True

        self._lease = lease
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.config.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
            if time.monotonic() - self._observed_at < duration:
                logger.debug(
                    "lease %s is held by %s",
                    self.config.name,
                    holder,
                    extra={"lease": self.config.name, "identity": self.config.identity, "holder": holder},
                )
                return False  # held, and renewed recently by our clock
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.config.identity:
            new_spec = self._spec(now, transitions=transitions, acquire=spec.get("acquireTime") or now)
        else:
            new_spec = self._spec(now, transitions=transitions + 1, acquire=now)
        body = {**lease, "spec": new_spec}
        try:
            self._lease = await self._client.replace(self._path, body, request_timeout=timeout)
        except ApiException as exc:
            if classify(exc) is Fault.CONFLICT:
                return False  # someone else wrote first
            raise
        self._observe(self._lease)
        return True

    def _spec(self, now: datetime, *, transitions: int, acquire: datetime | str) -> dict[str, Any]:
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(round(self.config.lease_duration), 1),
            "acquireTime": acquire if isinstance(acquire, str) else _micro_time(acquire),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed_spec:
            self._observed_spec = record
            self._observed_at = time.monotonic()

    async def release(self) -> bool:
        """Give the Lease up now (graceful shutdown): clear the holder, 1 s duration.

        Stops campaigning. Returns True when the Lease was released (or not held).
        """
        self._stopping = True
        async with self._lock:
            if not self._leading:
                return True
            self._leading = False
            lease = self._lease
            released = False
            if lease is not None:
                now = _micro_time(datetime.now(UTC))
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") == self.config.identity:
                    spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=now, acquireTime=now)
                    try:
                        self._lease = await self._client.replace(
                            self._path,
                            {**lease, "spec": spec},
                            request_timeout=max(self.config.retry_period, 1.0),
                        )
                        released = True
                        logger.info("released the leader lease", extra={"lease": self.config.name})
                    except Exception as exc:
                        logger.warning("could not release the lease: %s", error_message(exc))
            await self._on_stopped()
            return released
