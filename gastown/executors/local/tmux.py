"""tmux on the target host: pure command builders and a small async driver.

Two traps shape this module:

* ``-t foo`` is a PREFIX match in tmux: ``kill-session -t foo`` kills ``foobar``
  when ``foo`` is gone. Every session command here targets ``=name`` (exact) and
  every pane command ``=name:`` (exact session, current window).
* each Gas Town town runs its agents on its own tmux server (``tmux -L SOCKET``);
  a client on the default socket sees none of them. :func:`gt_socket_name`
  derives the socket exactly as gt does (``internal/session/registry.go``).

Builders return argv lists (no shell strings); the SSH layer quotes them.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gastown.executors.base import TransientError
from gastown.executors.local.runner import Runner

_SAFE_SESSION = re.compile(r"[^A-Za-z0-9_-]+")
_SOCKET_SANITIZE = re.compile(r"[^a-z0-9-]+")
SESSION_PREFIX = "gastown"
_MAX_SESSION = 100

# What tmux prints when the server for a socket is not running (no sessions at all).
_NO_SERVER = ("no server running", "error connecting to", "No such file or directory")


# Naming.
def session_name(namespace: str, name: str) -> str:
    """Deterministic tmux session of a Polecat: ``gastown-<namespace>-<name>``.

    tmux rejects ``:`` and ``.`` in session names and the name lands in shells, so
    anything outside ``[A-Za-z0-9_-]`` becomes ``-``; when that changed the text (or
    it had to be shortened) a hash of the original keeps distinct Polecats apart.
    """
    raw = f"{SESSION_PREFIX}-{namespace}-{name}"
    clean = _SAFE_SESSION.sub("-", raw)
    if clean == raw and len(raw) <= _MAX_SESSION:
        return raw
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    return f"{clean[: _MAX_SESSION - 9]}-{digest}"


def sanitize_town_name(name: str) -> str:
    """gt's sanitizeTownName: lowercase, runs of other chars -> '-', trimmed, else 'default'."""
    cleaned = _SOCKET_SANITIZE.sub("-", name.lower()).strip("-")
    return cleaned or "default"


def town_socket_name(town_root: str, canonical_town_root: str | None = None) -> str:
    """gt's townSocketName: ``<sanitized basename>-<first 6 hex of sha256(canonical path)>``.

    As in gt, the basename is taken from the town path as gt sees it (its working
    directory, symlinks NOT resolved) and the hash from the canonical path (symlinks
    resolved, filepath.EvalSymlinks; when that fails, the cleaned absolute path).
    Resolve the canonical path ON THE TARGET HOST (``realpath``), not here.
    """
    base = sanitize_town_name(posixpath.basename(posixpath.normpath(town_root)))
    canonical = canonical_town_root or posixpath.normpath(town_root)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:6]
    return f"{base}-{digest}"


def gt_socket_name(town_root: str, canonical_town_root: str | None, gt_tmux_socket_env: str | None) -> str:
    """The socket gt uses: ``GT_TMUX_SOCKET`` verbatim unless unset/"default"/"auto"."""
    if gt_tmux_socket_env in (None, "", "default", "auto"):
        return town_socket_name(town_root, canonical_town_root)
    return gt_tmux_socket_env


def exact_session(name: str) -> str:
    """Target of session commands: exact match, never a prefix."""
    return f"={name}"


def exact_pane(name: str) -> str:
    """Target of pane commands: the exact session's current window/pane."""
    return f"={name}:"


# Builders.
@dataclass(frozen=True, slots=True)
class TmuxCommands:
    """argv builders for one tmux server (``binary -L socket``)."""

    socket: str
    binary: str = "tmux"

    def base(self, *args: str) -> list[str]:
        return [self.binary, "-L", self.socket, *args]

    def new_session(
        self, name: str, *, cwd: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> list[str]:
        """Detached session running ``command`` (an argv: tmux execs it, no shell)."""
        argv = self.base("new-session", "-d", "-s", name, "-c", cwd, "-x", "200", "-y", "50")
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, *command]

    def has_session(self, name: str) -> list[str]:
        return self.base("has-session", "-t", exact_session(name))

    def kill_session(self, name: str) -> list[str]:
        return self.base("kill-session", "-t", exact_session(name))

    def capture_pane(self, name: str, *, history: bool = True) -> list[str]:
        argv = self.base("capture-pane", "-p", "-J", "-t", exact_pane(name))
        if history:
            argv[-2:-2] = ["-S", "-"]
        return argv

    def send_text(self, name: str, text: str) -> list[str]:
        """Type ``text`` literally (-l, and -- so a leading '-' is not a flag)."""
        return self.base("send-keys", "-t", exact_pane(name), "-l", "--", text)

    def send_enter(self, name: str) -> list[str]:
        return self.base("send-keys", "-t", exact_pane(name), "Enter")

    def list_sessions(self) -> list[str]:
        return self.base("list-sessions", "-F", "#{session_name}")

    def pane_state(self, name: str) -> list[str]:
        """``<pane_dead> <pane_dead_status>`` of the session's pane."""
        return self.base("list-panes", "-t", exact_pane(name), "-F", "#{pane_dead} #{pane_dead_status}")

    def activity(self, name: str) -> list[str]:
        """``<session_activity> <window_activity>`` (epoch seconds) of the session's pane.

        ``session_activity`` is what gt reports as ``last_activity``; ``window_activity``
        also moves with the pane's output, which is how an agent shows it works.
        """
        return self.base(
            "display-message", "-p", "-t", exact_pane(name), "#{session_activity} #{window_activity}"
        )

    def set_remain_on_exit(self, name: str) -> list[str]:
        return self.base("set-option", "-w", "-t", exact_pane(name), "remain-on-exit", "on")


# Driver.
def _no_server(stderr: str) -> bool:
    return any(marker in stderr for marker in _NO_SERVER)


@dataclass(frozen=True, slots=True)
class PaneState:
    dead: bool
    exit_status: int | None


class TmuxDriver:
    """Runs the builders' argv through a runner and interprets tmux's answers."""

    def __init__(self, run: Runner, commands: TmuxCommands) -> None:
        self._run = run
        self.commands = commands

    async def has_session(self, name: str) -> bool:
        res = await self._run(self.commands.has_session(name), idempotent=True)
        if res.exit_status == 0:
            return True
        if "can't find session" in res.stderr or _no_server(res.stderr) or not res.stderr.strip():
            return False
        raise TransientError("TmuxFailed", f"tmux has-session {name}: {res.stderr.strip()}")

    async def new_session(
        self, name: str, *, cwd: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> bool:
        """Create the session; False if it already existed (never a second one)."""
        res = await self._run(self.commands.new_session(name, cwd=cwd, command=command, env=env))
        if res.exit_status == 0:
            return True
        if "duplicate session" in res.stderr:
            return False
        raise TransientError("TmuxFailed", f"tmux new-session {name}: {res.stderr.strip()}")

    async def kill_session(self, name: str) -> bool:
        """Kill exactly ``name``; False if it was not there."""
        res = await self._run(self.commands.kill_session(name), idempotent=True)
        if res.exit_status == 0:
            return True
        if "can't find session" in res.stderr or _no_server(res.stderr):
            return False
        raise TransientError("TmuxFailed", f"tmux kill-session {name}: {res.stderr.strip()}")

    async def capture(self, name: str, *, history: bool = True) -> str | None:
        """The pane's text, or None when the session does not exist."""
        res = await self._run(self.commands.capture_pane(name, history=history), idempotent=True)
        if res.exit_status == 0:
            return res.stdout
        if "can't find" in res.stderr or _no_server(res.stderr):
            return None
        raise TransientError("TmuxFailed", f"tmux capture-pane {name}: {res.stderr.strip()}")

    async def send_keys(self, name: str, text: str) -> None:
        """Type ``text`` literally, then Enter."""
        for argv in (self.commands.send_text(name, text), self.commands.send_enter(name)):
            res = await self._run(argv)
            if res.exit_status != 0:
                raise TransientError("TmuxFailed", f"tmux send-keys {name}: {res.stderr.strip()}")

    async def list_sessions(self) -> list[str]:
        res = await self._run(self.commands.list_sessions(), idempotent=True)
        if res.exit_status == 0:
            return [line for line in res.stdout.splitlines() if line]
        if _no_server(res.stderr):
            return []
        raise TransientError("TmuxFailed", f"tmux list-sessions: {res.stderr.strip()}")

    async def activity(self, name: str) -> datetime | None:
        """The session's last activity (the later of session and window), None without a session."""
        res = await self._run(self.commands.activity(name), idempotent=True)
        if res.exit_status != 0:
            return None
        stamps = [int(word) for word in res.stdout.split() if word.isdigit()]
        return datetime.fromtimestamp(max(stamps), UTC) if stamps else None

    async def pane_state(self, name: str) -> PaneState | None:
        res = await self._run(self.commands.pane_state(name), idempotent=True)
        if res.exit_status != 0:
            return None
        first = (res.stdout.splitlines() or [""])[0].split()
        if not first:
            return None
        dead = first[0] == "1"
        status = int(first[1]) if dead and len(first) > 1 and first[1].lstrip("-").isdigit() else None
        return PaneState(dead=dead, exit_status=status)
