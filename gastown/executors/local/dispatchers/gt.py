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

Deletion runs ``gt polecat check-recovery`` and nukes only on SAFE_TO_NUKE, unless
forced; otherwise it keeps the Polecat and says what to do.
"""

from __future__ import annotations

from gastown.api.models import ANNOTATION_FORCE_DELETE, DesiredState, LocalStatus, Phase, Polecat
from gastown.executors.base import Observation, Release, UserError
from gastown.executors.local.dispatchers.base import SessionRef, observation
from gastown.executors.local.gt import GtClient, GtPolecat
from gastown.executors.local.runner import Runner
from gastown.executors.local.tmux import gt_socket_name

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
    ) -> None:
        self._run = run
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
        rig = polecat.spec.rig
        recorded = polecat.status.local.polecatName if polecat.status and polecat.status.local else None
        items = await client.list_polecats(rig)
        if recorded:
            for item in items:
                # gt reuses names: a polecat of that name on another bead is not ours.
                if item.name == recorded and item.issue in ("", polecat.spec.beadID):
                    return item
            return None
        for item in items:
            if item.issue == polecat.spec.beadID and not item.zombie:
                return item
        return None

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
        return self._obs(phase, reason, f"polecat {rig}/{item.name} {explain}", local)

    async def dispatch(self, polecat: Polecat) -> Observation:
        current = await self.observe(polecat)
        if current.phase is not None:
            return current  # already slung (recorded, or found by its bead): never twice
        client = self.client(polecat)
        rig, bead = polecat.spec.rig, polecat.spec.beadID
        printed = await client.sling(bead, rig, task=polecat.spec.task)
        confirmed = await client.find_by_issue(rig, bead, fresh=True)
        name = confirmed.name if confirmed is not None else printed
        local = await self._local(client, polecat, confirmed)
        local = local.model_copy(update={"polecatName": name})
        if name is None:
            return self._obs(
                Phase.DISPATCHING,
                "SlingUnconfirmed",
                f"gt sling {bead} {rig} succeeded but no polecat with issue {bead} is listed yet",
                local,
            )
        return self._obs(Phase.WORKING, "Slung", f"gt sling {bead} {rig} spawned polecat {rig}/{name}", local)

    async def terminate(self, polecat: Polecat) -> Observation:
        client = self.client(polecat)
        item = await self._find(client, polecat)
        if item is not None and item.session_running:
            await client.stop_session(polecat.spec.rig, item.name)
        return await self.observe(polecat)

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
        if recovery.safe or force:
            await client.nuke(rig, item.name, force=force and not recovery.safe)
            self._sessions.pop((client.town_root, rig, item.name), None)
            why = "safe to nuke" if recovery.safe else f"forced despite {recovery.verdict}"
            return Release(done=True, reason="Nuked", message=f"polecat {address} nuked ({why})")
        blockers = "; ".join(recovery.blockers) or recovery.reason or recovery.cleanup_status or "unknown"
        return Release(
            done=False,
            reason="UnsafeToNuke",
            message=(
                f"polecat {address} has work that would be lost ({recovery.verdict}: {blockers}). Push or "
                f"submit it (see `gt polecat check-recovery {address}`), then deletion continues; or set the "
                f"annotation {ANNOTATION_FORCE_DELETE}=true to delete anyway (LOSES WORK)"
            ),
        )

    async def session_ref(self, polecat: Polecat) -> SessionRef | None:
        client = self.client(polecat)
        item = await self._find(client, polecat)
        if item is None:
            return None
        session = item.session_name or await self._session(client, polecat.spec.rig, item.name)
        if session is None:
            return None
        return SessionRef(socket=await self._socket(client), session=session)
