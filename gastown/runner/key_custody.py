"""Keeping the deploy key away from the agent that runs as the same uid next to it.

The clone step installs the key in ``$HOME/.ssh`` (see :mod:`gastown.runner.git_ssh`); the
run step then takes custody of it for the agent's whole run:

* :func:`take_credentials` reads the key and known_hosts into memory, deletes the key
  file, and makes this process non-dumpable, so neither the file system nor
  ``/proc/<runner>/{mem,environ,fd}`` nor ptrace give it to a same-uid process;
* :func:`sweep_container` (the Pod's container only) kills whatever the agent left
  running, detached or not, before the key touches the disk again;
* :meth:`HeldCredentials.installed` writes it to a fresh 0600 file in a new 0700
  directory for the push and removes both afterwards.

Standard library only: the agent image installs the package without dependencies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gastown.runner.git_ssh import KEY_FILE_NAME, KNOWN_HOSTS_FILE_NAME, SSHIdentity

_PR_SET_DUMPABLE = 4
_SWEEP_ROUNDS = 100


@dataclass(frozen=True, slots=True)
class HeldCredentials:
    """The key (None: no key was installed) and known_hosts, held in memory only."""

    key: bytes | None
    known_hosts: bytes

    @contextlib.contextmanager
    def installed(self) -> Iterator[SSHIdentity]:
        """An identity whose files exist only inside this block (a new private directory)."""
        directory = Path(tempfile.mkdtemp(prefix="gastown-push-"))  # mode 0700, a name nobody chose
        try:
            known_hosts = directory / KNOWN_HOSTS_FILE_NAME
            _write(known_hosts, self.known_hosts, 0o600)
            key_file = None
            if self.key is not None:
                key_file = directory / KEY_FILE_NAME
                _write(key_file, self.key, 0o600)
            yield SSHIdentity(key_file=key_file, known_hosts_file=known_hosts)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def take_credentials(identity: SSHIdentity) -> HeldCredentials:
    """Read ``identity``'s files into memory, delete the key file, become non-dumpable."""
    make_non_dumpable()
    key = None
    if identity.key_file is not None:
        with contextlib.suppress(FileNotFoundError):
            key = identity.key_file.read_bytes()
        identity.key_file.unlink(missing_ok=True)
    try:
        known_hosts = identity.known_hosts_file.read_bytes()
    except FileNotFoundError:
        known_hosts = b""  # strict checking then refuses every host, and says so
    return HeldCredentials(key=key, known_hosts=known_hosts)


def make_non_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; False (and a note on stderr) where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        ok = False
    if not ok:
        sys.stderr.write("gastown-agent: could not make the runner non-dumpable (prctl failed)\n")
    return ok


def is_dumpable() -> bool:
    """``prctl(PR_GET_DUMPABLE)``, for tests and diagnostics."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(3, 0, 0, 0, 0)) == 1


def sweep_container() -> None:
    """SIGKILL every process of this PID namespace but PID 1 and us, until none is left.

    ``kill(-1, ...)`` reaches every process we may signal except init and ourselves; in the
    agent container (its own PID namespace, tini as PID 1) that is whatever the agent left
    behind, including what it detached with ``setsid``. Repeated until only zombies (which
    tini reaps) remain, so a process forking in a loop cannot outrun it.
    """
    me = os.getpid()
    for _ in range(_SWEEP_ROUNDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(-1, signal.SIGKILL)
        if not _others_alive(me):
            return
        time.sleep(0.02)
    sys.stderr.write("gastown-agent: processes the agent left could not all be stopped\n")


def _others_alive(me: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (1, me):
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state not in ("Z", "X"):
            return True
    return False


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
