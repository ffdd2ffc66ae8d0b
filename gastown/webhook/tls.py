"""TLS for the webhook from certificate files that are reloaded when they change.

cert-manager (or the operator's own :mod:`gastown.webhook.certs`) rotates the serving
certificate by rewriting ``tls.crt``/``tls.key``; a mounted Secret changes by an atomic
symlink swap. aiohttp has no reload of its own, but OpenSSL lets a live ``SSLContext``
take a new pair: calling ``load_cert_chain()`` again makes every *new* handshake use it,
while established connections carry on. So:

* poll the files' identity (inode, mtime, size, following symlinks) every few seconds;
* on a change, copy both files once (so cert and key come from the same moment, even
  mid-swap), check the pair on a scratch context, and only then load it into the live
  context: a half-written or mismatched pair never replaces a working one;
* file I/O runs in a worker thread; the live context is only touched on the event loop
  thread, where handshakes happen, so the two never race.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int, int], tuple[int, int, int, int]]


def server_context() -> ssl.SSLContext:
    """A server-side context with modern defaults (TLS 1.2+, no client certificates)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class _Staged:
    """A private copy of a cert/key pair that loaded cleanly on a scratch context."""

    directory: Path
    stamp: _Stamp

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"


class CertReloader:
    """Owns the webhook's ``SSLContext`` and keeps it in step with two files.

    Create it (the first load is synchronous and raises if the pair is unusable: better
    not to serve at all than to serve nothing), hand :attr:`context` to the server, and
    run :meth:`run` as a task that its owner cancels on shutdown.
    """

    def __init__(self, cert_file: Path, key_file: Path, *, poll_interval: float = 5.0) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.poll_interval = poll_interval
        self.context = server_context()
        self.reloads = 0
        self._stamp: _Stamp | None = None
        self._failed_stamp: _Stamp | None = None
        self._lock = asyncio.Lock()  # one check at a time (the poller and explicit callers)
        staged = self._stage()
        try:
            self.context.load_cert_chain(staged.cert, staged.key)
            self._stamp = staged.stamp
        finally:
            shutil.rmtree(staged.directory, ignore_errors=True)

    def _file_stamp(self) -> _Stamp:
        def one(path: Path) -> tuple[int, int, int, int]:
            st = os.stat(path)  # follows symlinks: a ..data swap changes the target's inode
            return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

        return one(self.cert_file), one(self.key_file)

    def _stage(self) -> _Staged:
        """Copy the pair into a private directory and prove it loads (blocking I/O)."""
        before = self._file_stamp()
        cert, key = self.cert_file.read_bytes(), self.key_file.read_bytes()
        if self._file_stamp() != before:
            raise OSError("the certificate files changed while being read; will retry")
        directory = Path(tempfile.mkdtemp(prefix="gastown-tls-"))
        try:
            staged = _Staged(directory, before)
            fd = os.open(staged.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
            staged.cert.write_bytes(cert)
            server_context().load_cert_chain(staged.cert, staged.key)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return staged

    def _stage_if_changed(self) -> _Staged | None:
        try:
            stamp = self._file_stamp()
        except OSError as exc:
            log.warning("cannot stat webhook certificate files (%s); keeping the current pair", exc)
            return None
        if stamp in (self._stamp, self._failed_stamp):
            return None
        try:
            return self._stage()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._failed_stamp = stamp
            log.error(
                "new webhook certificate in %s does not load (%s); keeping the current pair",
                self.cert_file,
                exc,
            )
            return None

    async def check(self) -> bool:
        """Reload if the files changed; True when a new pair is now served."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> bool:
        staged = await asyncio.to_thread(self._stage_if_changed)
        if staged is None:
            return False
        try:
            try:
                # On the loop thread, between handshakes. The pair was proven on a scratch
                # context, so this cannot leave the live context half-updated.
                self.context.load_cert_chain(staged.cert, staged.key)
            except (OSError, ssl.SSLError) as exc:  # pragma: no cover - proven loadable just before
                log.error("loading the new webhook certificate failed (%s); keeping the current pair", exc)
                self._failed_stamp = staged.stamp
                return False
            # Recorded before any await: the next handshake may already present the new pair.
            self._stamp = staged.stamp
            self._failed_stamp = None
            self.reloads += 1
        finally:
            await asyncio.to_thread(shutil.rmtree, staged.directory, True)
        log.info("webhook certificate reloaded from %s", self.cert_file)
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.check()
            except Exception:  # keep serving the current pair whatever happens
                log.exception("checking the webhook certificate files failed")
