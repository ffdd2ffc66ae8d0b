"""What a process tree made: processes (including daemons that left the tree) and the
TCP ports they listen on, read from /proc, so a test can check that none remain.

A "process it made" is a descendant of the root pid, or any process whose command
line or environment names the run's work directory (daemons such as tmux servers
reparent to init, but carry ``TMUX_TMPDIR``/``TMUX`` pointing there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    start_time: int
    """Clock ticks after boot; with the pid, identifies the process (pids are reused)."""
    cmdline: str
    pgrp: int
    """Process group: a terminal's Ctrl-C signals its whole foreground group."""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _mentions(pid: int, needle: bytes) -> bool:
    for name in ("cmdline", "environ"):
        try:
            if needle in Path(f"/proc/{pid}/{name}").read_bytes():
                return True
        except OSError:
            continue
    return False


def made_by(root: int, workdir: Path) -> list[Proc]:
    """Live (not zombie) processes descending from ``root`` or naming ``workdir``, ``root`` excluded."""
    parents: dict[int, int] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 1:
            parents[pid] = int(fields[1])
    descendants: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in descendants:
                descendants.add(pid)
                frontier.append(pid)
    needle = str(workdir).encode()
    me = os.getpid()
    found: list[Proc] = []
    for pid in parents:
        if pid in (root, me) or not (pid in descendants or _mentions(pid, needle)):
            continue
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            continue
        found.append(Proc(pid, int(fields[19]), _cmdline(pid), int(fields[2])))
    return found


def still_running(procs: list[Proc]) -> list[Proc]:
    """Those of ``procs`` still alive (same pid and start time, not a zombie)."""
    alive = []
    for proc in procs:
        fields = _stat_fields(proc.pid)
        if fields is not None and fields[0] != "Z" and int(fields[19]) == proc.start_time:
            alive.append(proc)
    return alive


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _listening() -> list[tuple[int, str]]:
    """(port, inode) of every listening TCP socket on this machine."""
    found: list[tuple[int, str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[9]))
    return found


def listening_ports(pids: Iterable[int]) -> set[int]:
    """TCP ports that the processes ``pids`` listen on."""
    inodes: set[str] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    return {port for port, inode in _listening() if inode in inodes}


def ports_still_listening(ports: set[int]) -> set[int]:
    """Those of ``ports`` that something on this machine still listens on."""
    return {port for port, _ in _listening() if port in ports}
