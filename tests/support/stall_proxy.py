"""A TCP proxy that can go silent: the connections stay open but nothing flows.

This is the failure a watchdog exists for. A NAT or load balancer that forgets a
connection, a half-open TCP link after a network partition, a proxy that stops
forwarding: the client's socket is still ESTABLISHED, no FIN or RST ever arrives, and
a watch simply hears nothing, forever. Closing the connection would not show it (the
client notices a close at once).

``StallProxy`` forwards bytes both ways between clients and ``upstream``. After
:meth:`stall`, every connection open at that moment stops forwarding in both
directions and is held open (until :meth:`close`); connections made afterwards work
normally, so a client that gives up on a silent connection and reconnects recovers
(unless ``stall(new_connections=True)``: then new ones go silent too, like an
apiserver that hangs).
TLS passes through untouched (the proxy never sees inside it), so the client still
verifies the apiserver's certificate, which names 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Connection:
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            writer.close()


class StallProxy:
    """``127.0.0.1:<port>`` → ``upstream_host:upstream_port``; use as an async context manager."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._stalled: set[_Connection] = set()
        self._stall_new = False
        self.accepted = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> StallProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stall(self, *, new_connections: bool = False) -> int:
        """Freeze every open connection (and, if asked, every later one); returns how many."""
        self._stall_new = new_connections
        for conn in self._connections:
            conn.stalled.set()
        self._stalled |= self._connections
        self._connections = set()
        return len(self._stalled)

    @property
    def stalled_connections(self) -> int:
        return len(self._stalled)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        everything = self._connections | self._stalled
        self._connections, self._stalled = set(), set()
        for conn in everything:
            for task in conn.tasks:
                task.cancel()
            conn.close()
        for conn in everything:
            await asyncio.gather(*conn.tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.close()
            return
        self.accepted += 1
        conn = _Connection(client_writer, upstream_writer)
        if self._stall_new:
            conn.stalled.set()
            self._stalled.add(conn)
            return
        self._connections.add(conn)
        conn.tasks = [
            asyncio.create_task(self._pump(client_reader, upstream_writer, conn)),
            asyncio.create_task(self._pump(upstream_reader, client_writer, conn)),
        ]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        try:
            while not conn.stalled.is_set():
                data = await reader.read(65536)
                if not data or conn.stalled.is_set():
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if conn.stalled.is_set():
            return  # hold the connection open and silent; close() ends it
        self._connections.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()
