"""The operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP.

Kubelet probes and Prometheus scrape these. Liveness means the event loop answers;
readiness is decided by the manager (caches synced when leading, or standing by as a
healthy non-leader — a standby must be Ready so that it serves the webhook). Metrics
come from the given registries in the Prometheus text format.

When the health and metrics ports are equal both are served by one site; port 0
binds an ephemeral port (tests), reported by :attr:`OpsServer.ports`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

ReadyCheck = Callable[[], tuple[bool, str]]


class OpsServer:
    """aiohttp sites for health and metrics; :meth:`start` and :meth:`stop` are owned by the manager."""

    def __init__(
        self,
        *,
        host: str,
        health_port: int,
        metrics_port: int,
        ready: ReadyCheck,
        registries: Sequence[CollectorRegistry],
    ) -> None:
        self._host = host
        self._health_port = health_port
        self._metrics_port = metrics_port
        self._ready = ready
        self._registries = list(registries)
        self._runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    def _health_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    def _metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, detail = self._ready()
        return web.Response(status=200 if ready else 503, text=f"{detail}\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        body = b"".join(generate_latest(registry) for registry in self._registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        """Bind and serve."""
        if self._health_port == self._metrics_port and self._health_port != 0:
            app = self._health_app()
            app.router.add_get("/metrics", self._metrics)
            port = await self._serve(app, self._health_port)
            self.ports = {"health": port, "metrics": port}
            return
        self.ports = {
            "health": await self._serve(self._health_app(), self._health_port),
            "metrics": await self._serve(self._metrics_app(), self._metrics_port),
        }

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self._host, port)
        await site.start()
        bound = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound = int(address[1])
                break
        logger.info("ops endpoints listening on %s:%d", self._host, bound)
        return bound

    async def stop(self) -> None:
        """Stop serving."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
