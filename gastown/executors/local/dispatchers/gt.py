"""The ``gt`` dispatcher: Gas Town's ``gt sling`` starts the agent, gt reports on it.

Never twice: gt names the polecat (from its name pool), so the only durable link
between a Polecat and its gt polecat is (rig, beadID) -> the polecat whose
``issue`` is the bead, plus the name recorded in ``status.local.polecatName``.
Dispatch therefore:

1. returns at once if the status already names a polecat;
2. looks for a polecat with ``issue == beadID`` in ``gt polecat list`` (a sling
   whose status write was lost to a crash) and adopts it;
3. only then runs ``gt sling``, parses ``Polecat <Name> spawned`` and confirms the
   name with a fresh ``list``. The caller records the name in status at once.

Mapping of gt's states: working -> Working; idle, done -> Done; stuck, stalled,
review-needed -> Stuck; zombie -> Failed. A polecat that was dispatched and is no
longer listed was cleaned up by Gas Town after ``gt done`` -> Done (never
"not dispatched", which would sling again).

Re-slings by gt: when a polecat's session dies, slinging its bead again (by anyone)
makes gt spawn a NEW polecat and leaves the old one idle with no issue. So the
recorded name is ours only while its issue is the bead (or empty with no other
polecat on the bead); when another polecat holds the bead, that one is followed
(reason ``Reslung``) rather than the idle old one read as Done.

Slinging: ``gt sling`` can take minutes (it waits for the agent's prompt); a timeout
or a dropped connection is reported as Dispatching/``SlingUnconfirmed`` and the next
look searches ``gt polecat list`` for the bead before any new sling. A bead gt does
not have, or a closed one, is a UserError saying how to create or reopen it; the
operator never creates beads itself (the bead is the user's unit of work in Gas
Town, with its own title, type and priority; see README).

Deletion: ``gt polecat check-recovery`` decides only for an *idle* polecat; a
stopped one whose bead is still hooked reads NEEDS_RECOVERY (``not-idle``) however
safe its work is, and gt's plain nuke refuses it. So: SAFE_TO_NUKE -> nuke; any
other verdict -> the operator looks at the worktree itself (uncommitted files,
stashes, commits no remote has; gt's runtime files excepted). All pushed -> ``gt
polecat nuke --force`` (nothing is lost: the work is on the remote; the Event says
so), also for a WORKING one: deleting a Polecat ends its work. Anything unpushed ->
kept, session and worktree untouched, with a condition and Event naming what would
be lost and how to push it or force.
"""

from __future__ import annotations

from dataclasses import replace

from gastown.api.models import (
    ANNOTATION_FORCE_DELETE,
    TERMINAL_PHASES,
    DesiredState,
    LocalStatus,
    Phase,
    Polecat,
    ResultStatus,
)
from gastown.executors.base import Observation, Release, UserError
from gastown.executors.local.dispatchers.base import SessionRef, observation
from gastown.executors.local.gt import GtClient, GtPolecat, GtRecovery
from gastown.executors.local.runner import Runner
from gastown.executors.local.tmux import TmuxCommands, TmuxDriver, gt_socket_name

_PHASES: dict[str, tuple[Phase, str]] = {
    "working": (Phase.WORKING, "Working"),
    "idle": (Phase.DONE, "Idle"),
    "done": (Phase.DONE, "Done"),
    "stuck": (Phase.STUCK, "Stuck"),
    "stalled": (Phase.STUCK, "Stalled"),
    "review-needed": (Phase.STUCK, "ReviewNeeded"),
    "zombie": (Phase.FAILED, "Zombie"),
}

_EXPLAIN: dict[str, str] = {
    "working": "is working",
    "idle": "finished its work (idle, sandbox kept for reuse)",
    "done": "finished its work (gt done)",
    "stuck": "asked for help (stuck): attach to its session to see what it needs",
    "stalled": "stalled: its session died with work assigned; Gas Town's Witness restarts it, or attach "
    "and check",
    "review-needed": "needs review: its session is alive without assigned work",
    "zombie": "is a zombie: its session exists without a worktree; nuke it with gt polecat nuke",
}


class GtDispatcher:
    """Dispatches through ``gt`` in the Polecat's town; one GtClient per town."""

    def __init__(
        self,
        run: Runner,
        *,
        host: str,
        gt_binary: str = "gt",
        default_town_root: str | None = None,
        poll_interval: float = 5.0,
        list_ttl: float | None = None,
        tmux_binary: str = "tmux",
    ) -> None:
        self._run = run
        self.tmux_binary = tmux_binary
        self.host = host
        self.gt_binary = gt_binary
        self.default_town_root = default_town_root
        self.poll_interval = poll_interval
        self.list_ttl = list_ttl if list_ttl is not None else min(2.0, poll_interval / 2)
        self._clients: dict[str, GtClient] = {}
        self._sessions: dict[tuple[str, str, str], str] = {}  # (town, rig, name) -> tmux session

    def client(self, polecat: Polecat) -> GtClient:
        local = polecat.spec.local
        town = (local.townRoot if local is not None else None) or self.default_town_root
        if not town:
            raise UserError(
                "TownNotConfigured",
                "dispatcher gt needs a Gas Town town: set spec.local.townRoot, or GASTOWN_TOWN_ROOT on the "
                "operator, or use dispatcher tmux",
            )
        client = self._clients.get(town)
        if client is None:
            client = self._clients[town] = GtClient(
                self._run, town_root=town, gt_binary=self.gt_binary, list_ttl=self.list_ttl
            )
        return client

    async def _socket(self, client: GtClient) -> str:
        info = await client.town()
        return gt_socket_name(info.root, info.canonical_root, info.gt_tmux_socket)

    async def _session(self, client: GtClient, rig: str, name: str) -> str | None:
        """gt's tmux session of a polecat (``<rig prefix>-<name>``), asked once and remembered."""
        key = (client.town_root, rig, name)
        if key not in self._sessions:
            status = await client.status(rig, name)
            if status is None or not status.session_id:
                return None
            self._sessions[key] = status.session_id
        return self._sessions[key]

    async def _find(self, client: GtClient, polecat: Polecat) -> GtPolecat | None:
        rig, bead = polecat.spec.rig, polecat.spec.beadID
        recorded = polecat.status.local.polecatName if polecat.status and polecat.status.local else None
        items = await client.list_polecats(rig)
        holder = next((i for i in items if i.issue == bead and not i.zombie), None)
        if recorded:
            for item in items:
                if item.name == recorded and item.issue == bead:
                    return item
            if holder is not None:
                return holder  # gt re-slung the bead to another polecat: follow it
            for item in items:
                # gt reuses names: a polecat of that name on another bead is not ours.
                if item.name == recorded and item.issue == "":
                    return item
            return None
        return holder

    async def _local(self, client: GtClient, polecat: Polecat, item: GtPolecat | None) -> LocalStatus:
        name = item.name if item is not None else self._recorded(polecat)
        session = None
        if item is not None:
            session = item.session_name or await self._session(client, polecat.spec.rig, item.name)
        return LocalStatus(
            polecatName=name,
            tmuxSocket=await self._socket(client),
            tmuxSession=session,
            host=self.host,
            sessionActive=item.session_running if item is not None else False,
        )

    @staticmethod
    def _recorded(polecat: Polecat) -> str | None:
        return polecat.status.local.polecatName if polecat.status and polecat.status.local else None

    def _obs(self, phase: Phase | None, reason: str, message: str, local: LocalStatus) -> Observation:
        return observation(phase, reason, message, local=local, poll_interval=self.poll_interval)

    async def observe(self, polecat: Polecat) -> Observation:
        obs = await self._observe(polecat)
        local = obs.local
        if obs.phase is Phase.WORKING and local is not None and local.sessionActive and local.tmuxSession:
            # gt's last_activity is this tmux session's activity; asked of tmux, not of gt
            # (one cheap call, epoch seconds, no host time zone).
            driver = TmuxDriver(
                self._run, TmuxCommands(socket=local.tmuxSocket or "", binary=self.tmux_binary)
            )
            return replace(obs, last_activity=await driver.activity(local.tmuxSession))
        if obs.phase not in TERMINAL_PHASES or local is None or not local.polecatName:
            return obs
        return await self._with_result(polecat, obs, local.polecatName)

    async def _with_result(self, polecat: Polecat, obs: Observation, name: str) -> Observation:
        """``status.result`` from the polecat's worktree (branch, HEAD, pushed), looked at once:
        a Polecat whose status has a result gets none again; a polecat gt already removed
        has only the message."""
        if polecat.status is not None and polecat.status.result is not None:
            return obs
        client = self.client(polecat)
        status = await client.status(polecat.spec.rig, name)
        facts = (
            await client.git_facts(status.clone_path) if status is not None and status.clone_path else None
        )
        what = obs.message or f"polecat {polecat.spec.rig}/{name}"
        return replace(obs, result=facts.result(what) if facts is not None else ResultStatus(message=what))

    async def _observe(self, polecat: Polecat) -> Observation:
        client = self.client(polecat)
        item = await self._find(client, polecat)
        local = await self._local(client, polecat, item)
        rig = polecat.spec.rig
        if item is None:
            recorded = self._recorded(polecat)
            if recorded is None:
                message = f"no polecat of rig {rig} works on {polecat.spec.beadID}"
                return self._obs(None, "NotDispatched", message, local)
            if polecat.spec.desiredState == DesiredState.TERMINATED:
                return self._obs(Phase.TERMINATED, "Terminated", f"polecat {rig}/{recorded} is gone", local)
            return self._obs(
                Phase.DONE,
                "PolecatCleanedUp",
                f"polecat {rig}/{recorded} is no longer in gt polecat list: Gas Town cleaned it up after "
                "its work ended",
                local,
            )
        if polecat.spec.desiredState == DesiredState.TERMINATED and not item.session_running:
            message = f"polecat {rig}/{item.name}'s session was stopped"
            return self._obs(Phase.TERMINATED, "Terminated", message, local)
        phase, reason = _PHASES.get(item.state, (Phase.STUCK, "UnknownState"))
        explain = _EXPLAIN.get(item.state, f"is in state {item.state!r}, which this operator does not know")
        recorded = self._recorded(polecat)
        if recorded and recorded != item.name:
            return self._obs(
                phase,
                "Reslung",
                f"gt re-slung bead {polecat.spec.beadID} from polecat {rig}/{recorded} to {rig}/{item.name}, "
                f"which {explain}",
                local,
            )
        return self._obs(phase, reason, f"polecat {rig}/{item.name} {explain}", local)

    async def dispatch(self, polecat: Polecat) -> Observation:
        current = await self.observe(polecat)
        if current.phase is not None:
            return current  # already slung (recorded, or found by its bead): never twice
        client = self.client(polecat)
        rig, bead = polecat.spec.rig, polecat.spec.beadID
        slung = await client.sling(bead, rig, task=polecat.spec.task)
        confirmed = await client.find_by_issue(rig, bead, fresh=True)
        name = confirmed.name if confirmed is not None else slung.name
        local = await self._local(client, polecat, confirmed)
        local = local.model_copy(update={"polecatName": name})
        if slung.unknown and confirmed is None:
            return self._obs(
                Phase.DISPATCHING,
                "SlingUnconfirmed",
                f"gt sling {bead} {rig} did not answer ({slung.detail}); gt waits minutes for the agent's "
                f"prompt, so it may still be slinging: the bead's polecat is looked for before any new sling",
                local,
            )
        if name is None:
            return self._obs(
                Phase.DISPATCHING,
                "SlingUnconfirmed",
                f"gt sling {bead} {rig} succeeded but no polecat with issue {bead} is listed yet",
                local,
            )
        if slung.already_hooked:
            message = f"bead {bead} was already hooked to polecat {rig}/{name} (gt sling was a no-op)"
            return self._obs(Phase.WORKING, "AlreadyHooked", message, local)
        return self._obs(Phase.WORKING, "Slung", f"gt sling {bead} {rig} spawned polecat {rig}/{name}", local)

    async def terminate(self, polecat: Polecat) -> Observation:
        client = self.client(polecat)
        item = await self._find(client, polecat)
        if item is not None and item.session_running:
            await client.stop_session(polecat.spec.rig, item.name)
        stopped = await self.observe(polecat)
        if item is None or stopped.result is not None:
            return stopped
        return await self._with_result(polecat, stopped, item.name)  # stopped, not ended: record it too

    async def release(self, polecat: Polecat, *, force: bool) -> Release:
        client = self.client(polecat)
        rig = polecat.spec.rig
        item = await self._find(client, polecat)
        if item is None:
            return Release(done=True, reason="NothingToClean", message=f"no polecat of rig {rig} to clean up")
        address = f"{rig}/{item.name}"
        recovery = await client.check_recovery(rig, item.name)
        if recovery is None:
            return Release(done=True, reason="NothingToClean", message=f"polecat {address} no longer exists")
        if recovery.safe:
            return await self._nuke(client, rig, item.name, force=False, why="gt: SAFE_TO_NUKE")
        if force:
            return await self._nuke(
                client, rig, item.name, force=True, why=f"forced despite {recovery.verdict}"
            )
        status = await client.status(rig, item.name)
        facts = (
            await client.git_facts(status.clone_path) if status is not None and status.clone_path else None
        )
        if facts is not None and facts.all_pushed:
            why = (
                f"gt: {_verdict(recovery)}, but its work is pushed ({facts.describe()}): nuked with gt's "
                "--force, nothing lost"
            )
            return await self._nuke(client, rig, item.name, force=True, why=why, reason="NukedWorkPushed")
        lost = facts.describe() if facts is not None else "its worktree could not be inspected"
        path = status.clone_path if status is not None and status.clone_path else f"<town>/{rig}/polecats/..."
        return Release(
            done=False,
            reason="UnsafeToNuke",
            message=(
                f"polecat {address} has work that would be lost ({lost}; gt: {_verdict(recovery)}). Push it "
                f"(`git -C {path} push origin HEAD`, after committing), then deletion continues; or set the "
                f"annotation {ANNOTATION_FORCE_DELETE}=true to delete anyway (LOSES WORK)"
            ),
        )

    async def _nuke(
        self, client: GtClient, rig: str, name: str, *, force: bool, why: str, reason: str = "Nuked"
    ) -> Release:
        await client.nuke(rig, name, force=force)
        self._sessions.pop((client.town_root, rig, name), None)
        return Release(done=True, reason=reason, message=f"polecat {rig}/{name} nuked ({why})")

    async def session_ref(self, polecat: Polecat) -> SessionRef | None:
        client = self.client(polecat)
        item = await self._find(client, polecat)
        if item is None:
            return None
        session = item.session_name or await self._session(client, polecat.spec.rig, item.name)
        if session is None:
            return None
        return SessionRef(socket=await self._socket(client), session=session)


def _verdict(recovery: GtRecovery) -> str:
    """``VERDICT (reason; blockers)`` as gt gave it."""
    details = "; ".join(filter(None, [recovery.reason, *recovery.blockers, recovery.cleanup_status]))
    return f"{recovery.verdict} ({details})" if details else recovery.verdict
