"""One pooled SSH connection per target host, with commands multiplexed as channels.

Local mode runs every tmux and gt command on the target host over SSH, many
Polecats at once. Opening a TCP+SSH handshake per command would be slow and would
trip sshd's ``MaxStartups``; instead each target gets ONE connection and every
command is a channel on it. OpenSSH caps channels per connection (``MaxSessions``,
default 10), so a semaphore bounded by ``SSHSettings.max_sessions`` queues the rest.
sshd frees a session slot only after reaping the command, a moment after the
channel closed, so a burst can see an open refused even below the cap: a refused
open (the command never started) is retried a few times within ~0.15 s.

Contract of :meth:`SSHPool.run`:

* commands are argv lists; the pool joins them with ``shlex.join`` so every
  element reaches the remote program as one literal argument. Environment values
  and the working directory are quoted the same way. Free text (task
  descriptions) goes through ``input`` (stdin), never the command line.
* host keys are always checked against the configured known_hosts (or the user's
  default ones); there is no "accept any key" mode.
* errors are typed: a refused key or an unknown/mismatched host key is a
  :class:`UserError` saying what to fix; a drop, refusal or timeout is a
  :class:`TransientError` the reconciler retries with backoff.
* a dead connection is replaced on the next call: connecting retries a few times
  with jittered exponential backoff (:mod:`gastown.backoff`). A command whose connection dropped mid-way is
  NOT re-run unless the caller says it is idempotent (a re-run ``gt sling`` would
  dispatch twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from gastown.backoff import Backoff
from gastown.executors.base import ExecutorError, TransientError, UserError
from gastown.settings import SSHSettings

if TYPE_CHECKING:
    from gastown.metrics import SSHObserver

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# asyncssh raises these when the transport goes away under a channel.
_DROPS: tuple[type[BaseException], ...] = (
    asyncssh.ConnectionLost,
    asyncssh.DisconnectError,
    ConnectionError,
    BrokenPipeError,
    EOFError,
)

# Anything else failing a connect is the network's or the server's fault, not the user's.
_CONNECT_FAULTS: tuple[type[BaseException], ...] = (*_DROPS, OSError, TimeoutError, asyncssh.Error)

# A refused channel open is retried this often, after ~10, 20, 40, 80 ms (at most ~0.15 s in all).
_CHANNEL_RETRIES = 4
_CHANNEL_RETRY = Backoff(base=0.01, cap=0.1, jitter=0.5)


@dataclass(frozen=True, slots=True)
class SSHTarget:
    """Where commands run, and with which credentials. The pool's key."""

    host: str
    port: int
    user: str
    key_file: Path | None
    known_hosts_file: Path | None

    @classmethod
    def from_settings(cls, settings: SSHSettings) -> SSHTarget:
        if settings.host is None:
            raise UserError(
                "LocalModeDisabled",
                "local mode has no SSH target: set GASTOWN_SSH_HOST (and _PORT, _USER, _KEY_FILE, "
                "_KNOWN_HOSTS_FILE) on the operator",
            )
        return cls(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            key_file=settings.key_file,
            known_hosts_file=settings.known_hosts_file,
        )

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How the host appears in known_hosts: ``[host]:port`` unless port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Exit status and output of one remote command."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def build_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> str:
    """The remote command line for ``argv``: every piece quoted, nothing spliced.

    ``cwd`` becomes ``cd -- DIR &&``; ``env`` becomes ``env NAME=VALUE ...`` so the
    remote shell never expands the values. Pure; the shell-safety unit tests pin it.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    for part in (*argv, *(env or {}).values(), cwd or ""):
        if "\x00" in part:
            raise UserError(
                "InvalidArgument", "a command argument contains a NUL byte, which no shell can pass"
            )
    words = list(argv)
    if env:
        for name in env:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    line = shlex.join(words)
    if cwd is not None:
        line = f"cd -- {shlex.quote(cwd)} && {line}"
    return line


class _NoObserver:
    """The SSHObserver used when no metrics are wanted (tests, the CLI)."""

    def on_connect(self, ok: bool) -> None:
        pass

    def on_disconnect(self) -> None:
        pass

    def channel(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def on_command(self, program: str, result: str, seconds: float) -> None:
        pass

    def on_failure(self, reason: str) -> None:
        pass


class _Link:
    """The one connection to a target, opened lazily and replaced when it dies."""

    def __init__(self, target: SSHTarget, settings: SSHSettings, observer: SSHObserver) -> None:
        self.target = target
        self.settings = settings
        self.observer = observer
        self.sessions = asyncio.Semaphore(settings.max_sessions)
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self.connects = 0  # successful handshakes, for tests and metrics

    def alive(self) -> asyncssh.SSHClientConnection | None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return None
        return conn

    async def connection(self, *, attempts: int, backoff: Backoff) -> asyncssh.SSHClientConnection:
        conn = self.alive()
        if conn is not None:
            return conn
        async with self._lock:
            conn = self.alive()
            if conn is not None:
                return conn
            last: TransientError | None = None
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(backoff.delay(attempt - 1))
                try:
                    conn = await self._connect()
                except ExecutorError as exc:
                    self.observer.on_connect(False)
                    self.observer.on_failure(exc.reason)
                    if not isinstance(exc, TransientError):
                        raise
                    last = exc
                    log.info(
                        "ssh connect to %s failed (attempt %d): %s", self.target.address, attempt + 1, exc
                    )
                    continue
                self._conn = conn
                self.connects += 1
                self.observer.on_connect(True)
                return conn
            assert last is not None
            raise last

    def discard(self, conn: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed under a command; the next call reconnects."""
        if self._conn is conn:
            self._conn = None
            self.observer.on_disconnect()
        conn.abort()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.observer.on_disconnect()
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)

    async def _connect(self) -> asyncssh.SSHClientConnection:
        t = self.target
        options: dict[str, Any] = {
            "port": t.port,
            "username": t.user,
            # Host keys are ALWAYS checked: the configured file, else ~/.ssh/known_hosts.
            "known_hosts": str(t.known_hosts_file) if t.known_hosts_file is not None else (),
            "config": None,  # no ~/.ssh/config surprises in the operator
            "agent_path": None,
            "keepalive_interval": self.settings.keepalive_interval,
            "keepalive_count_max": 3,
            "connect_timeout": self.settings.command_timeout,
            "login_timeout": self.settings.command_timeout,
        }
        if t.key_file is not None:
            options["client_keys"] = [str(t.key_file)]
        try:
            return await asyncssh.connect(t.host, **options)
        except asyncssh.PermissionDenied as exc:
            key = t.key_file or "the default keys in ~/.ssh"
            raise UserError(
                "SSHAuthFailed",
                f"ssh to {t.address} refused key authentication ({exc.reason}): add the public key of "
                f"{key} to ~{t.user}/.ssh/authorized_keys on {t.host}, or set GASTOWN_SSH_KEY_FILE / "
                "GASTOWN_SSH_USER to a key and user it accepts",
            ) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            where = t.known_hosts_file or "~/.ssh/known_hosts"
            raise UserError(
                "HostKeyMismatch",
                f"the host key of {t.host}:{t.port} is not the one in {where} ({exc.reason}): if the host "
                f"was legitimately re-keyed, replace its '{t.known_hosts_name}' entry (ssh-keyscan -p "
                f"{t.port} {t.host}); otherwise someone may be impersonating the host",
            ) from exc
        except asyncssh.KeyImportError as exc:
            raise UserError(
                "SSHKeyInvalid", f"cannot load the SSH private key {t.key_file}: {exc}; mount a valid key"
            ) from exc
        except FileNotFoundError as exc:
            raise UserError(
                "SSHFileMissing",
                f"an SSH file is missing ({exc.filename}): check GASTOWN_SSH_KEY_FILE and "
                "GASTOWN_SSH_KNOWN_HOSTS_FILE",
            ) from exc
        except _CONNECT_FAULTS as exc:
            raise TransientError(
                "SSHUnreachable",
                f"cannot connect to {t.address}: {exc or type(exc).__name__}",
                host=t.address,
            ) from exc


class SSHPool:
    """Connections by target; ``run`` executes one argv as one channel.

    Owns its connections: call :meth:`close` (or ``async with``) on shutdown.
    """

    def __init__(
        self,
        settings: SSHSettings,
        *,
        connect_attempts: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        observer: SSHObserver | None = None,
    ) -> None:
        self.settings = settings
        self.observer: SSHObserver = observer or _NoObserver()
        self._links: dict[SSHTarget, _Link] = {}
        self._connect_attempts = connect_attempts
        self._connect_backoff = Backoff(base=backoff_base, cap=backoff_cap, jitter=0.5)

    async def __aenter__(self) -> SSHPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def default_target(self) -> SSHTarget:
        return SSHTarget.from_settings(self.settings)

    def link(self, target: SSHTarget) -> _Link:
        link = self._links.get(target)
        if link is None:
            link = self._links[target] = _Link(target, self.settings, self.observer)
        return link

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links))

    async def run(
        self,
        argv: Sequence[str],
        *,
        target: SSHTarget | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        """Run ``argv`` on the target and return its exit status and output.

        A non-zero exit is returned, not raised: callers decide what it means.
        ``idempotent`` lets a command whose connection dropped be re-run once on a
        fresh connection; leave it False for anything with side effects.
        """
        target = target or self.default_target()
        command = build_command(argv, env=env, cwd=cwd)
        limit = time_limit if time_limit is not None else self.settings.command_timeout
        link = self.link(target)
        drops_left = 1 if idempotent else 0
        refusals = 0
        while True:
            async with link.sessions:
                conn = await link.connection(attempts=self._connect_attempts, backoff=self._connect_backoff)
                program = argv[0]
                started = time.monotonic()
                try:
                    with self.observer.channel():
                        result = await self._exec(conn, tuple(argv), command, input, limit)
                    self.observer.on_command(
                        program, "ok" if result.ok else "nonzero", time.monotonic() - started
                    )
                    return result
                except TimeoutError as exc:
                    self.observer.on_command(program, "timeout", time.monotonic() - started)
                    self.observer.on_failure("SSHCommandTimeout")
                    raise TransientError(
                        "SSHCommandTimeout",
                        f"{shlex.join(argv)!s:.200} did not finish within {limit:g}s on {target.address}",
                    ) from exc
                except asyncssh.ChannelOpenError as exc:
                    # The server refused one more channel; the connection itself is fine, and
                    # the command never started, so retrying is safe even for side effects.
                    refusals += 1
                    if refusals > _CHANNEL_RETRIES:
                        raise TransientError(
                            "SSHChannelRefused",
                            f"{target.address} refused a session channel ({exc.reason}): keep "
                            "GASTOWN_SSH_MAX_SESSIONS below the server's MaxSessions",
                        ) from exc
                except _DROPS as exc:
                    self.observer.on_command(program, "dropped", time.monotonic() - started)
                    self.observer.on_failure("SSHConnectionLost")
                    link.discard(conn)
                    if not drops_left:
                        raise TransientError(
                            "SSHConnectionLost",
                            f"the SSH connection to {target.address} dropped: {exc}",
                            host=target.address,
                        ) from exc
                    drops_left -= 1
                    log.info("ssh connection to %s dropped; retrying idempotent command", target.address)
                    continue
            # A refusal under max_sessions is sshd lagging: it frees a closed channel's
            # session slot only after reaping the command, so for a moment it still counts
            # channels this side has closed. Wait (holding no slot) and open again.
            await asyncio.sleep(_CHANNEL_RETRY.delay(refusals - 1))

    @staticmethod
    async def _exec(
        conn: asyncssh.SSHClientConnection,
        argv: tuple[str, ...],
        command: str,
        input: str | None,
        limit: float,
    ) -> CommandResult:
        process: asyncssh.SSHClientProcess[str] | None = None
        try:
            async with asyncio.timeout(limit):
                process = await conn.create_process(command, encoding="utf-8", errors="replace")
                if input:
                    process.stdin.write(input)
                process.stdin.write_eof()  # a command reading stdin sees EOF, never hangs
                stdout, stderr = await process.communicate()
                status = process.returncode  # exit status, or -N when killed by signal N
        finally:
            if process is not None:
                process.close()  # frees the channel (a MaxSessions slot) even on timeout
        if status is None:
            # No exit status: the channel closed under us (e.g. the server went away).
            raise asyncssh.ConnectionLost("channel closed without an exit status")
        return CommandResult(
            argv=argv, exit_status=status, stdout=str(stdout or ""), stderr=str(stderr or "")
        )


class BoundRunner:
    """``SSHPool.run`` fixed to one target: what the tmux driver and gt client call."""

    def __init__(self, pool: SSHPool, target: SSHTarget) -> None:
        self.pool = pool
        self.target = target

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        return await self.pool.run(
            argv,
            target=self.target,
            input=input,
            env=env,
            cwd=cwd,
            time_limit=time_limit,
            idempotent=idempotent,
        )
