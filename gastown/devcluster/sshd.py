"""A real, user-level OpenSSH server on 127.0.0.1 for local mode (tests and ``dev``).

Local mode reaches tmux over SSH even when the target is the operator's own host,
so the test suite and ``gastown-operator dev`` need an sshd they can start without
touching the system one: its own port, host key, config, authorized keys and pid
file, all under one work directory. Key authentication only; the host key is
pinned in a ``known_hosts`` file under ``[127.0.0.1]:PORT`` so clients check it.

``restart()`` keeps the port and the host key, and (by default) drops established
connections too, the way a host reboot or a crashed sshd would: that is what the
reconnect tests need to exercise. tmux servers started through it are daemons and
survive, as they would on a real host (``env={"TMUX_TMPDIR": ...}`` puts their
sockets where their starter can find and stop them).

sshd runs in a session of its own (a terminal's Ctrl-C reaches only its starter,
which stops it) and gets SIGKILL if its starter dies.

Contract: ``async with UserSshd.start(workdir) as sshd: ...`` or
``sshd = await UserSshd.launch(workdir)`` ... ``await sshd.stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gastown.devcluster import processes
from gastown.devcluster.pdeathsig import die_with_parent

SSHD_BINARY = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
_READY_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


class SshdError(RuntimeError):
    """The test sshd could not be set up or started; the message says what to do."""


def sshd_available() -> str | None:
    """None when a user-level sshd can run here, else the reason it cannot."""
    if not SSHD_BINARY.exists():
        return f"{SSHD_BINARY} is missing: apt-get install openssh-server"
    if shutil.which(SSH_KEYGEN) is None:
        return "ssh-keygen is missing: apt-get install openssh-client"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("sshd")
        except KeyError:
            return "sshd's privilege-separation user 'sshd' is missing: apt-get install openssh-server"
    return None


def _make_dir(path: Path, mode: int = 0o700) -> Path:
    path = path.resolve()
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SshdError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    return out.decode()


async def _keygen(path: Path, comment: str) -> None:
    if await asyncio.to_thread(path.exists):
        return
    await _run(SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the per-connection sshd processes)."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@dataclass
class UserSshd:
    """A running (or stopped) user-level sshd. Build with ``launch`` or ``start``."""

    workdir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = field(default_factory=lambda: pwd.getpwuid(os.getuid()).pw_name)
    home: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of every session (sshd ``SetEnv``), e.g. ``TMUX_TMPDIR``."""
    authorized_key_options: str = ""
    """authorized_keys options for the client key, e.g. ``restrict,command="git-shell ..."``."""
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    # Files, all under workdir.
    @property
    def host_key_file(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def client_key_file(self) -> Path:
        """Private key the client authenticates with (its .pub is authorized)."""
        return self.workdir / "client_ed25519_key"

    @property
    def authorized_keys_file(self) -> Path:
        return self.workdir / "authorized_keys"

    @property
    def known_hosts_file(self) -> Path:
        """known_hosts with exactly this server's host key under ``[host]:port``."""
        return self.workdir / "known_hosts"

    @property
    def config_file(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def host_key_line(self) -> str:
        """The known_hosts line for this server: ``[host]:port ssh-ed25519 AAAA...``."""
        key_type, key_b64 = self.host_key_file.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_b64}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # Lifecycle.
    @classmethod
    async def launch(
        cls,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
        authorized_key_options: str = "",
    ) -> UserSshd:
        """Create keys and config under ``workdir`` and start sshd; return it running.

        ``home``, when given, becomes $HOME of every session (sshd's ``SetEnv``): the
        sessions then see none of the user's dotfiles, so tests are isolated from
        them (and from their shell start-up cost). Sessions still start in the
        user's real home directory. ``env`` adds more ``SetEnv`` variables. ``host`` is
        the address it listens on (e.g. the real node's bridge gateway, where Pods reach it).
        """
        reason = sshd_available()
        if reason is not None:
            raise SshdError(reason)
        workdir = await asyncio.to_thread(_make_dir, workdir)
        if home is not None:
            home = await asyncio.to_thread(_make_dir, home)
        values = {**({"HOME": str(home)} if home is not None else {}), **(env or {})}
        for key, value in values.items():
            if not key.isidentifier() or any(ch.isspace() or ch in "\"'\\" for ch in value):
                raise SshdError(f"SetEnv {key}={value}: needs a plain name, a value without spaces/quotes")
        sshd = cls(
            workdir=workdir,
            port=port or _free_port(host),
            host=host,
            home=home,
            env=dict(env or {}),
            authorized_key_options=authorized_key_options,
        )
        await sshd._prepare()
        await sshd._spawn()
        return sshd

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, workdir: Path, *, port: int | None = None, home: Path | None = None, host: str = "127.0.0.1"
    ) -> AsyncIterator[UserSshd]:
        """``async with UserSshd.start(workdir) as sshd``: launched on entry, stopped on exit."""
        sshd = await cls.launch(workdir, port=port, home=home, host=host)
        try:
            yield sshd
        finally:
            await sshd.stop()

    async def stop(self, *, drop_connections: bool = True, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the listener and, by default, every connection it accepted."""
        proc = self._process
        if proc is None:
            return
        children = await asyncio.to_thread(_children_of, proc.pid) if drop_connections else []
        await processes.terminate(proc, timeout=timeout)
        if self._process is proc:
            self._process = None
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    def kill_now(self) -> None:
        """SIGKILL the listener at once (a running :meth:`stop` then returns quickly)."""
        processes.kill_now(self._process)

    async def restart(self) -> None:
        """Stop and start again on the same port with the same host key."""
        await self.stop()
        await self._spawn()

    # Internals.
    async def _prepare(self) -> None:
        if os.geteuid() == 0:
            await asyncio.to_thread(_make_dir, PRIVSEP_DIR, 0o755)
        await _keygen(self.host_key_file, "gastown-test-sshd-host")
        await _keygen(self.client_key_file, "gastown-test-client")
        await asyncio.to_thread(self._write_files)

    def _write_files(self) -> None:
        key = self.client_key_file.with_suffix(".pub").read_text()
        options = f"{self.authorized_key_options} " if self.authorized_key_options else ""
        self.authorized_keys_file.write_text(options + key)
        self.authorized_keys_file.chmod(0o600)
        self.known_hosts_file.write_text(self.host_key_line + "\n")
        self.config_file.write_text(self._config_text())

    def _config_text(self) -> str:
        values = {**({"HOME": str(self.home)} if self.home is not None else {}), **self.env}
        extra = ["SetEnv " + " ".join(f"{key}={value}" for key, value in values.items())] if values else []
        return "\n".join(
            [
                *extra,
                f"ListenAddress {self.host}",
                f"Port {self.port}",
                f"HostKey {self.host_key_file}",
                f"AuthorizedKeysFile {self.authorized_keys_file}",
                f"PidFile {self.pid_file}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {self.user}",
                "MaxSessions 10",
                "MaxStartups 100:30:200",
                "LoginGraceTime 30",
                "ClientAliveInterval 15",
                "PrintMotd no",
                "PrintLastLog no",
                "UseDNS no",
                "X11Forwarding no",
                "Subsystem sftp internal-sftp",
                "LogLevel INFO",
                "",
            ]
        )

    async def _spawn(self) -> None:
        log = self.log_file.open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(SSHD_BINARY),
                "-D",
                "-e",
                "-f",
                str(self.config_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        try:
            await asyncio.wait_for(self._wait_ready(), _READY_TIMEOUT)
        except (TimeoutError, SshdError):
            await self.stop()
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise SshdError(f"sshd on {self.host}:{self.port} did not come up; its log:\n{tail}") from None
        except BaseException:  # cancelled (Ctrl-C while starting): leave nothing running
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        """Ready means: the listener answers with an SSH banner."""
        delay = 0.02
        while True:
            proc = self._process
            if proc is None or proc.returncode is not None:
                raise SshdError("sshd exited during start")
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            try:
                banner = await asyncio.wait_for(reader.readline(), 5)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if banner.startswith(b"SSH-2.0-"):
                return
            await asyncio.sleep(delay)
