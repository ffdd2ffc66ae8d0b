"""The ``tmux`` dispatcher: no Gas Town needed, the operator runs the agent itself.

For a Polecat it keeps a state directory on the host,
``$HOME/.gastown/sessions/<session>/``, holding:

* ``task.txt``     the task text, written through stdin (``cat > file``) and given
                   to the agent as ``$GASTOWN_TASK_FILE``; never on a command line;
* ``command.sh``   ``spec.local.command`` verbatim (the author's shell line);
* ``run.sh``       the operator's wrapper: marks ``started``, runs command.sh,
                   writes its exit status to ``exit-status`` (atomically);
* ``uid``          the Polecat's UID, so a new Polecat with an old name starts clean.

The session (``gastown-<ns>-<name>`` on the ``tmux_socket`` server) runs run.sh in
the work directory with remain-on-exit on, so its output stays capturable after
the command ends. ``exit-status`` decides Done (0) or Failed (anything else).

Without ``spec.local.workDir`` the session runs in ``<state dir>/work``. That is the
agent's work, so deleting the Polecat keeps it: release removes the session and the
operator's control files and moves a non-empty ``work/`` to
``$HOME/.gastown/kept/<session>-<uid>/`` (uid-specific, so a new Polecat of the same
name, whose dispatch clears the old state directory, cannot delete it) and says where
in the Release message. Only with force-delete is it removed. A user's ``workDir`` is
never deleted by the operator, forced or not.

Never twice: dispatch first looks for the session, then for ``started`` or
``exit-status`` from an earlier run; only when there is neither does it create the
session, and tmux itself refuses a duplicate name.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import replace

from gastown.api.models import TERMINAL_PHASES, DesiredState, LocalStatus, Phase, Polecat, ResultStatus
from gastown.executors.base import Observation, Release, TransientError, UserError
from gastown.executors.local.dispatchers.base import SessionRef, observation
from gastown.executors.local.gt import read_git_facts
from gastown.executors.local.runner import Runner
from gastown.executors.local.tmux import TmuxCommands, TmuxDriver, session_name

STATE_SUBDIR = ".gastown/sessions"
KEPT_SUBDIR = ".gastown/kept"

# Constant scripts; every variable part is a positional argument ($1...).
_WRITE_FILE = 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"'
_READ_STATE = r"""
d=$1
if [ -f "$d/uid" ]; then printf 'uid=%s\n' "$(cat -- "$d/uid")"; fi
if [ -f "$d/started" ]; then echo started; fi
if [ -f "$d/exit-status" ]; then printf 'exit=%s\n' "$(cat -- "$d/exit-status")"; fi
exit 0
"""
_HOME = 'printf %s "$HOME"'
_REMOVE_DIR = 'rm -rf -- "$1"'
_MKDIR = 'mkdir -p -- "$1"'
# Release without force: move a non-empty work/ aside (never over an earlier copy),
# drop the control files, then the state directory if nothing else is left in it.
# Prints "kept" when the kept copy exists afterwards.
_KEEP_WORK = r"""
d=$1 kept=$2
if [ -d "$d/work" ] && [ -n "$(ls -A -- "$d/work" 2>/dev/null)" ] && [ ! -e "$kept" ]; then
  mkdir -p -- "$(dirname -- "$kept")" && mv -- "$d/work" "$kept" || exit 1
fi
rm -f -- "$d/uid" "$d/started" "$d/exit-status" "$d/task.txt" "$d/command.sh" "$d/run.sh" "$d"/*.tmp
rmdir -- "$d/work" 2>/dev/null
rmdir -- "$d" 2>/dev/null
if [ -e "$kept" ]; then echo kept; fi
exit 0
"""


def run_script(*, tmux_binary: str, state_dir: str) -> str:
    """The wrapper the session runs. Only operator-chosen paths, each quoted."""
    q = shlex.quote
    exit_file = f"{state_dir}/exit-status"
    exit_tmp = q(exit_file + ".tmp")
    return "\n".join(
        [
            "#!/bin/sh",
            "# Written by gastown-operator: runs command.sh and records its exit status.",
            f'{q(tmux_binary)} set-option -w -t "$TMUX_PANE" remain-on-exit on >/dev/null 2>&1',
            f": > {q(state_dir + '/started')}",
            f"/bin/sh {q(state_dir + '/command.sh')}",
            "status=$?",
            f"printf '%s\\n' \"$status\" > {exit_tmp} && mv -f {exit_tmp} {q(exit_file)}",
            'exit "$status"',
            "",
        ]
    )


class _State:
    """What the state directory says about earlier runs."""

    def __init__(self, text: str) -> None:
        self.uid: str | None = None
        self.started = False
        self.exit_status: int | None = None
        for line in text.splitlines():
            if line.startswith("uid="):
                self.uid = line[4:].strip()
            elif line == "started":
                self.started = True
            elif line.startswith("exit="):
                value = line[5:].strip()
                self.exit_status = int(value) if value.lstrip("-").isdigit() else -1

    def belongs_to(self, polecat: Polecat) -> bool:
        return self.uid is None or not polecat.metadata.uid or self.uid == polecat.metadata.uid


class TmuxDispatcher:
    """Starts ``spec.local.command`` in a tmux session of its own over SSH."""

    def __init__(
        self,
        run: Runner,
        *,
        host: str,
        socket: str,
        tmux_binary: str = "tmux",
        poll_interval: float = 5.0,
    ) -> None:
        self._run = run
        self.host = host
        self.socket = socket
        self.tmux_binary = tmux_binary
        self.poll_interval = poll_interval
        self.tmux = TmuxDriver(run, TmuxCommands(socket=socket, binary=tmux_binary))
        self._home: str | None = None

    # Paths.
    async def home(self) -> str:
        if self._home is None:
            res = await self._run(["sh", "-c", _HOME], idempotent=True)
            home = res.stdout.strip()
            if res.exit_status != 0 or not home.startswith("/"):
                raise TransientError("RemoteHomeUnknown", f"cannot read $HOME on {self.host}: {res.stderr}")
            self._home = home.rstrip("/") or "/"
        return self._home

    async def state_dir(self, polecat: Polecat) -> str:
        return f"{await self.home()}/{STATE_SUBDIR}/{self.session(polecat)}"

    def session(self, polecat: Polecat) -> str:
        return session_name(polecat.metadata.namespace, polecat.metadata.name)

    def _local(self, polecat: Polecat, active: bool | None) -> LocalStatus:
        return LocalStatus(
            tmuxSocket=self.socket, tmuxSession=self.session(polecat), host=self.host, sessionActive=active
        )

    # Remote state.
    async def _read_state(self, state_dir: str) -> _State:
        res = await self._run(["sh", "-c", _READ_STATE, "gastown-state", state_dir], idempotent=True)
        if res.exit_status != 0:
            raise TransientError("StateUnreadable", f"cannot read {state_dir} on {self.host}: {res.stderr}")
        return _State(res.stdout)

    async def _write_file(self, path: str, content: str) -> None:
        res = await self._run(["sh", "-c", _WRITE_FILE, "gastown-write", path], input=content)
        if res.exit_status != 0:
            raise TransientError("WriteFailed", f"cannot write {path} on {self.host}: {res.stderr.strip()}")

    async def _remove_dir(self, state_dir: str) -> None:
        if f"/{STATE_SUBDIR}/" not in state_dir:  # never anything but our own directory
            raise AssertionError(f"refusing to remove {state_dir}")
        await self._run(["sh", "-c", _REMOVE_DIR, "gastown-rm", state_dir], idempotent=True)

    # Dispatcher.
    async def observe(self, polecat: Polecat) -> Observation:
        name = self.session(polecat)
        state_dir = await self.state_dir(polecat)
        state, active, activity = await asyncio.gather(
            self._read_state(state_dir), self.tmux.has_session(name), self.tmux.activity(name)
        )
        if not state.belongs_to(polecat):
            state = _State("")  # an earlier Polecat's leftovers: not ours
        judged = replace(self._judge(polecat, state, active), last_activity=activity if active else None)
        return await self._with_result(polecat, judged, state, state_dir)

    async def _with_result(
        self, polecat: Polecat, obs: Observation, state: _State, state_dir: str
    ) -> Observation:
        """A terminal observation with ``status.result``: the exit status and, when the work
        directory is a git repository, its branch, HEAD and whether HEAD is pushed. Looked at
        once: a Polecat whose status has a result gets none again (terminal phases are not
        observed again anyway)."""
        if obs.phase not in TERMINAL_PHASES or (
            polecat.status is not None and polecat.status.result is not None
        ):
            return obs
        local_spec = polecat.spec.local
        workdir = local_spec.workDir if local_spec is not None and local_spec.workDir else f"{state_dir}/work"
        if state.exit_status is not None:
            what = f"the command exited {state.exit_status}"
        else:
            what = f"the command was stopped before it ended ({obs.message.rstrip('. ')})"
        facts = await read_git_facts(self._run, workdir)
        return replace(obs, result=facts.result(what) if facts is not None else ResultStatus(message=what))

    def _judge(self, polecat: Polecat, state: _State, active: bool) -> Observation:
        name = self.session(polecat)
        local = self._local(polecat, active)
        if state.exit_status == 0:
            return self._obs(Phase.DONE, "Completed", f"the command in tmux session {name} exited 0", local)
        if state.exit_status is not None:
            return self._obs(
                Phase.FAILED,
                "CommandFailed",
                f"the command in tmux session {name} exited {state.exit_status}; see its output with "
                "`gastown logs`",
                local,
            )
        if polecat.spec.desiredState == DesiredState.TERMINATED and not active:
            return self._obs(Phase.TERMINATED, "Terminated", f"tmux session {name} was stopped", local)
        if active:
            return self._obs(Phase.WORKING, "SessionRunning", f"tmux session {name} is running", local)
        if state.started:
            return self._obs(
                Phase.FAILED,
                "SessionLost",
                f"tmux session {name} ended without recording an exit status (killed, or the host "
                "restarted); delete and recreate the Polecat to run it again",
                local,
            )
        return self._obs(None, "NotDispatched", f"no tmux session {name} yet", local)

    def _obs(self, phase: Phase | None, reason: str, message: str, local: LocalStatus) -> Observation:
        return observation(phase, reason, message, local=local, poll_interval=self.poll_interval)

    async def dispatch(self, polecat: Polecat) -> Observation:
        local_spec = polecat.spec.local
        command = local_spec.command if local_spec is not None else None
        if not command:
            raise UserError(
                "CommandMissing",
                "spec.local.command is required with dispatcher tmux: give the command the session runs",
            )
        current = await self.observe(polecat)
        if current.phase is not None:
            return current  # running or ran before: never a second run

        name = self.session(polecat)
        state_dir = await self.state_dir(polecat)
        workdir = local_spec.workDir if local_spec is not None and local_spec.workDir else None
        # Leftovers of an earlier Polecat, or of a start that never ran, go first.
        await asyncio.gather(self._remove_dir(state_dir), self._check_workdir(workdir))
        if workdir is None:
            workdir = f"{state_dir}/work"
            await self._run(["sh", "-c", _MKDIR, "gastown-mkdir", workdir])
        task_file = f"{state_dir}/task.txt"
        wrapper = run_script(tmux_binary=self.tmux_binary, state_dir=state_dir)
        await asyncio.gather(
            self._write_file(f"{state_dir}/uid", polecat.metadata.uid),
            self._write_file(task_file, polecat.spec.task or ""),
            self._write_file(f"{state_dir}/command.sh", command + "\n"),
            self._write_file(f"{state_dir}/run.sh", wrapper),
        )
        env = {
            "GASTOWN_TASK_FILE": task_file,
            "GASTOWN_POLECAT": f"{polecat.metadata.namespace}/{polecat.metadata.name}",
            "GASTOWN_RIG": polecat.spec.rig,
            "GASTOWN_BEAD_ID": polecat.spec.beadID,
        }
        created = await self.tmux.new_session(
            name, cwd=workdir, command=["/bin/sh", f"{state_dir}/run.sh"], env=env
        )
        reason = "SessionStarted" if created else "SessionRunning"
        message = f"tmux session {name} runs the command"
        return self._obs(Phase.WORKING, reason, message, self._local(polecat, True))

    async def _check_workdir(self, workdir: str | None) -> None:
        if workdir is None:
            return
        res = await self._run(["test", "-d", workdir], idempotent=True)
        if res.exit_status != 0:
            raise UserError(
                "WorkDirMissing",
                f"spec.local.workDir {workdir!r} is not a directory on {self.host}: create it or fix "
                "the path",
            )

    async def terminate(self, polecat: Polecat) -> Observation:
        name = self.session(polecat)
        await self.tmux.kill_session(name)
        state_dir = await self.state_dir(polecat)
        state = await self._read_state(state_dir)
        if state.exit_status is not None and state.belongs_to(polecat):
            return await self._with_result(polecat, self._judge(polecat, state, False), state, state_dir)
        message = f"tmux session {name} was stopped"
        stopped = self._obs(Phase.TERMINATED, "Terminated", message, self._local(polecat, False))
        return await self._with_result(polecat, stopped, state, state_dir)

    async def kept_dir(self, polecat: Polecat) -> str:
        """Where release without force keeps the default work directory of ``polecat``."""
        uid = polecat.metadata.uid or "no-uid"
        return f"{await self.home()}/{KEPT_SUBDIR}/{self.session(polecat)}-{uid}"

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        name = self.session(polecat)
        await self.tmux.kill_session(name)
        state_dir = await self.state_dir(polecat)
        state = await self._read_state(state_dir)
        local_spec = polecat.spec.local
        user_workdir = local_spec.workDir if local_spec is not None and local_spec.workDir else None
        if user_workdir is not None:
            where = f"; the work directory {user_workdir} is yours and was left as it is"
        elif force:
            where = f"; its work directory {state_dir}/work was deleted (forced)"
        else:
            where = "; its work directory was empty, nothing to keep"
        if not state.belongs_to(polecat):
            return Release(done=True, reason="SessionRemoved", message=f"tmux session {name} removed")
        if force or user_workdir is not None:
            await self._remove_dir(state_dir)
            return Release(done=True, reason="SessionRemoved", message=f"tmux session {name} removed{where}")
        kept = await self.kept_dir(polecat)
        res = await self._run(["sh", "-c", _KEEP_WORK, "gastown-keep", state_dir, kept], idempotent=True)
        if res.exit_status != 0:
            raise TransientError(
                "KeepWorkFailed",
                f"cannot move the work directory {state_dir}/work to {kept} on {self.host}: "
                f"{res.stderr.strip()}",
            )
        if res.stdout.strip() == "kept":
            return Release(
                done=True,
                reason="WorkKept",
                message=(
                    f"tmux session {name} removed; its work directory was kept at {kept} on {self.host} "
                    "(remove it when you no longer need it)"
                ),
            )
        return Release(done=True, reason="SessionRemoved", message=f"tmux session {name} removed{where}")

    async def session_ref(self, polecat: Polecat) -> SessionRef | None:
        return SessionRef(socket=self.socket, session=self.session(polecat))
