"""``LocalExecutor``: Polecats as tmux sessions on the operator host, reached over SSH.

The executor chooses the dispatcher of each Polecat (``spec.local.dispatcher``:
``gt`` by default, or ``tmux``), serialises the operations of one Polecat (a
per-Polecat lock, so a duplicate queue entry cannot race a dispatch) and offers
the user-facing views: ``logs`` captures the tmux pane, ``attach_command`` is the
exact ``ssh -t ... tmux -L SOCKET attach -t =SESSION`` a human runs.

It owns one :class:`SSHPool` (unless given one) and must be closed with
:meth:`close`. It needs a finalizer: deleting a Polecat must kill its session and,
with gt, refuse to lose unpushed work.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gastown.api.models import BEAD_ID, DNS1123_LABEL, Dispatcher, LocalSpec, Polecat
from gastown.executors.base import Observation, Release, UserError
from gastown.executors.local.dispatchers.base import Dispatcher as DispatcherImpl
from gastown.executors.local.dispatchers.gt import GtDispatcher
from gastown.executors.local.dispatchers.tmux import TmuxDispatcher
from gastown.executors.local.ssh import BoundRunner, SSHPool, SSHTarget
from gastown.executors.local.tmux import PaneState, TmuxCommands, TmuxDriver, session_name
from gastown.settings import Settings

if TYPE_CHECKING:
    from gastown.metrics import SSHObserver

_BEAD = re.compile(BEAD_ID)
_DEAD = PaneState(dead=True, exit_status=None)
_RIG = re.compile(DNS1123_LABEL)


def check_fields(polecat: Polecat) -> None:
    """Re-check the fields that reach the host, even if the model was built unchecked.

    The CRD schema and the webhook already enforce these; this is the last line
    before a shell, so a Polecat that slipped past them is refused, not run.
    """
    spec = polecat.spec
    if not _BEAD.fullmatch(spec.beadID):
        raise UserError("InvalidBeadID", f"spec.beadID {spec.beadID!r} must match {BEAD_ID}")
    if not _RIG.fullmatch(spec.rig):
        raise UserError("InvalidRig", f"spec.rig {spec.rig!r} must be a DNS-1123 label ({DNS1123_LABEL})")
    local = spec.local or LocalSpec()
    for field, value in (("townRoot", local.townRoot), ("workDir", local.workDir)):
        if value is not None and (not value.startswith("/") or "\x00" in value):
            raise UserError("InvalidPath", f"spec.local.{field} must be an absolute path without NUL bytes")
    if local.command is not None and "\x00" in local.command:
        raise UserError("InvalidCommand", "spec.local.command must not contain NUL bytes")


def pane_lines(capture: str) -> list[str]:
    """The lines of a captured pane without the screen's unused rows and tmux's
    "Pane is dead (status N, ...)" banner (the exit status is in the Polecat's status)."""
    lines = capture.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[-1].startswith("Pane is dead"):
        lines.pop()
        while lines and not lines[-1].strip():
            lines.pop()
    return lines


class LocalExecutor:
    """The local-mode implementation of :class:`gastown.executors.base.Executor`."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: SSHPool | None = None,
        follow_interval: float = 1.0,
        ssh_observer: SSHObserver | None = None,
    ) -> None:
        self.settings = settings
        self._own_pool = pool is None
        self.pool = pool if pool is not None else SSHPool(settings.ssh, observer=ssh_observer)
        self.follow_interval = follow_interval
        self._runner: BoundRunner | None = None
        self._gt: GtDispatcher | None = None
        self._tmux: TmuxDispatcher | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        """Close the SSH connections (only a pool this executor created)."""
        if self._own_pool:
            await self.pool.close()

    @property
    def needs_finalizer(self) -> bool:
        return True

    @property
    def finalizer_with_dispatch(self) -> bool:
        """No: a tmux session must never exist without its cleanup (see the protocol)."""
        return False

    # Wiring.
    def runner(self) -> BoundRunner:
        if self._runner is None:
            self._runner = BoundRunner(self.pool, SSHTarget.from_settings(self.settings.ssh))
        return self._runner

    @property
    def host(self) -> str:
        return self.runner().target.host

    def gt(self) -> GtDispatcher:
        if self._gt is None:
            self._gt = GtDispatcher(
                self.runner(),
                host=self.host,
                gt_binary=self.settings.gt_binary,
                default_town_root=self.settings.town_root,
                poll_interval=self.settings.local_poll_interval,
                tmux_binary=self.settings.tmux_binary,
            )
        return self._gt

    def tmux(self) -> TmuxDispatcher:
        if self._tmux is None:
            self._tmux = TmuxDispatcher(
                self.runner(),
                host=self.host,
                socket=self.settings.tmux_socket,
                tmux_binary=self.settings.tmux_binary,
                poll_interval=self.settings.local_poll_interval,
            )
        return self._tmux

    def dispatcher(self, polecat: Polecat) -> DispatcherImpl:
        check_fields(polecat)
        local = polecat.spec.local or LocalSpec()
        return self.tmux() if local.dispatcher == Dispatcher.TMUX else self.gt()

    def _lock(self, polecat: Polecat) -> asyncio.Lock:
        key = polecat.metadata.uid or polecat.key
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # Executor.
    async def observe(self, polecat: Polecat) -> Observation:
        return await self.dispatcher(polecat).observe(polecat)

    async def dispatch(self, polecat: Polecat) -> Observation:
        async with self._lock(polecat):
            return await self.dispatcher(polecat).dispatch(polecat)

    async def terminate(self, polecat: Polecat) -> Observation:
        async with self._lock(polecat):
            return await self.dispatcher(polecat).terminate(polecat)

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        async with self._lock(polecat):
            result = await self.dispatcher(polecat).release(polecat, force=force)
        if result.done:
            self._locks.pop(polecat.metadata.uid or polecat.key, None)
        return result

    async def logs(self, polecat: Polecat, *, follow: bool) -> AsyncIterator[str]:
        """The pane's lines (history included); with ``follow``, new lines until the session ends."""
        ref = await self.dispatcher(polecat).session_ref(polecat)
        if ref is None:
            return
        driver = TmuxDriver(self.runner(), TmuxCommands(socket=ref.socket, binary=self.settings.tmux_binary))
        emitted = 0
        while True:
            # Look at the pane's state BEFORE capturing: after a capture that saw it
            # dead, nothing more can appear, so the last lines are never missed.
            finished = not follow or (await driver.pane_state(ref.session) or _DEAD).dead
            text = await driver.capture(ref.session)
            if text is None:
                return
            lines = pane_lines(text)
            if len(lines) < emitted:
                emitted = 0  # history was cleared: start over rather than lose lines
            for line in lines[emitted:]:
                yield line
            emitted = len(lines)
            if finished:
                return
            await asyncio.sleep(self.follow_interval)

    def attach_command(self, polecat: Polecat) -> list[str]:
        """``ssh -t -p PORT user@host tmux -L SOCKET attach -t =SESSION``.

        The remote words are shell-quoted because ssh hands them to the remote
        shell as one line; names the operator chose need no quotes and get none.
        """
        check_fields(polecat)
        local_spec = polecat.spec.local or LocalSpec()
        status = polecat.status.local if polecat.status is not None else None
        socket = status.tmuxSocket if status is not None else None
        session = status.tmuxSession if status is not None else None
        if local_spec.dispatcher == Dispatcher.TMUX:
            socket = socket or self.settings.tmux_socket
            session = session or session_name(polecat.metadata.namespace, polecat.metadata.name)
        if not socket or not session:
            raise UserError(
                "NotAttachable",
                f"Polecat {polecat.key} has no tmux session yet (status.local.tmuxSession is empty); wait "
                "until it is Working",
            )
        ssh = self.settings.ssh
        if ssh.host is None:
            raise UserError("LocalModeDisabled", "local mode has no SSH target (GASTOWN_SSH_HOST)")
        remote = [self.settings.tmux_binary, "-L", socket, "attach", "-t", f"={session}"]
        return ["ssh", "-t", "-p", str(ssh.port), f"{ssh.user}@{ssh.host}", *(shlex.quote(w) for w in remote)]
