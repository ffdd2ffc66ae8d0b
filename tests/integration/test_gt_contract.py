"""The gt contract the operator relies on, run against the REAL gt and the stand-in alike.

Every test runs twice: against Gas Town's real gt v1.2.1 (with real bd and Dolt, see
``tests/fixtures/real_gt.py``, which names the one shim: bd without
``BEADS_DOLT_DATA_DIR``) and against ``tests/fakes/gt``, the stand-in the fault tests
use where a fault cannot be produced with the real gt. Both are driven the same way:
through the operator's ``LocalExecutor`` over a real sshd, with a scripted agent that
obeys the same control files (``push``, ``commit``, ``dirty``, ``exit``). So whatever
the stand-in claims is checked against the real thing here, and it cannot drift.

What is covered: sling -> Working (name, tmux socket and session as gt reports them),
logs and attach, push + ``gt done`` -> Done, a pushed-work polecat released WITHOUT
force, unpushed work kept until pushed (then released without force) or forced, the
tmux server killed -> Stuck, a missing or closed bead or an agent gt cannot start -> user
error, never slung
twice (concurrent dispatches, a restarted executor), a re-sling by gt followed, the
WORKING verdict, ``session stop`` without a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gastown.api.models import Phase, Polecat
from gastown.executors.base import Observation, UserError
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.gt import GtClient, parse_gt_time
from gastown.executors.local.tmux import town_socket_name
from gastown.settings import Settings, SSHSettings
from tests.fixtures.real_gt import RIG, RealTown
from tests.fixtures.sshd import FAKE_GT, add_fake_beads, close_fake_bead, make_polecat, make_town
from tests.support.engine import observe_until

pytestmark = pytest.mark.sshd

# The stand-in's agent: the same control protocol as the real one (tests/fixtures/real_gt.py).
STAND_IN_AGENT = """\
control="$GT_TOWN_ROOT/control"
bead=$GT_ISSUE
echo "agent $GT_POLECAT on $bead"
echo "READY> "
while :; do
  if [ -e "$control/$bead.push" ]; then
    printf 'work on %s\\n' "$bead" > WORK.md
    git add WORK.md && git -c user.email=a@example.invalid -c user.name=a commit -qm "work on $bead"
    git push -q origin HEAD && echo "pushed $bead"
    "$GT_BIN" done
    echo "done $bead"
    rm -f "$control/$bead.push"
  elif [ -e "$control/$bead.commit" ]; then
    printf 'unpushed work on %s\\n' "$bead" > WORK.md
    git add WORK.md && git -c user.email=a@example.invalid -c user.name=a commit -qm "unpushed $bead"
    echo "committed $bead"
    rm -f "$control/$bead.commit"
  elif [ -e "$control/$bead.dirty" ]; then
    printf 'wip\\n' > WIP.txt && echo "dirty $bead"
    rm -f "$control/$bead.dirty"
  elif [ -e "$control/$bead.exit" ]; then
    echo "exit $bead"
    exit 0
  fi
  sleep 0.1
done
"""


@dataclass
class Town:
    """One gt to test: the real one or the stand-in, behind the same few operations."""

    kind: str
    root: Path
    gt_binary: str
    real: RealTown | None = None

    @property
    def socket(self) -> str:
        return town_socket_name(str(self.root), os.path.realpath(self.root))

    def create_bead(self, title: str) -> str:
        if self.real is not None:
            return self.real.create_bead(title)
        bead = f"de-{uuid.uuid4().hex[:5]}"
        add_fake_beads(self.root, RIG, [bead])
        return bead

    def close_bead(self, bead: str) -> None:
        if self.real is not None:
            self.real.close_bead(bead)
        else:
            close_fake_bead(self.root, RIG, bead)

    @contextlib.contextmanager
    def agent_command(self, command: str) -> Iterator[None]:
        """The town's default agent runs ``command`` for the duration (settings/config.json)."""
        config = self.root / "settings" / "config.json"
        saved = config.read_text() if config.exists() else None
        data = json.loads(saved) if saved else {"default_agent": "scripted"}
        agent = data.get("default_agent") or "scripted"
        data.setdefault("agents", {}).setdefault(agent, {})["command"] = command
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(data, indent=2))
        try:
            yield
        finally:
            if saved is None:
                config.unlink()
            else:
                config.write_text(saved)

    def act(self, bead: str, action: str) -> None:
        (self.root / "control").mkdir(exist_ok=True)
        (self.root / "control" / f"{bead}.{action}").touch()

    def gt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """gt run directly on the host (as a user or Gas Town's own Witness would)."""
        if self.real is not None:
            return self.real.gt(*args, check=False)
        env = {**os.environ, "GT_TOWN_ROOT": str(self.root)}
        return subprocess.run(
            [self.gt_binary, *args], cwd=self.root, env=env, capture_output=True, text=True, check=False
        )

    def polecats(self) -> list[dict[str, Any]]:
        out = self.gt("polecat", "list", RIG, "--json").stdout
        return json.loads(out[out.index("[") :]) if "[" in out else []

    def kill_tmux_server(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)

    def remove_tmux_socket(self) -> None:
        """tmux 3.3 leaves the socket file of a killed server behind."""
        (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / self.socket).unlink(
            missing_ok=True
        )

    def nuke_all(self) -> None:
        for item in self.polecats():
            self.gt("polecat", "nuke", f"{RIG}/{item['name']}", "--force")


@pytest.fixture(params=["real", "stand-in"])
def town(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Town]:
    if request.param == "real":
        real: RealTown = request.getfixturevalue("real_town")
        town = Town("real", real.root, str(real.gt_wrapper), real)
    else:
        root = make_town(tmp_path / "town", {RIG: "de"}, agent=STAND_IN_AGENT)
        town = Town("stand-in", root, str(FAKE_GT))
    try:
        yield town
    finally:
        town.nuke_all()
        if town.real is None:
            town.kill_tmux_server()
            town.remove_tmux_socket()


@pytest.fixture
async def executor(ssh_settings: SSHSettings, town: Town) -> AsyncIterator[LocalExecutor]:
    settings = Settings(
        ssh=ssh_settings, gt_binary=town.gt_binary, town_root=str(town.root), local_poll_interval=0.2
    )
    ex = LocalExecutor(settings)
    try:
        yield ex
    finally:
        await ex.aclose()


def gt_polecat(name: str, bead: str, **status_local: object) -> Polecat:
    return make_polecat(
        name,
        rig=RIG,
        bead=bead,
        task=f"task for {bead}",
        local={"dispatcher": "gt"},
        status_local=status_local or None,
    )


def recorded(p: Polecat, obs: Observation) -> Polecat:
    """``p`` with the status the reconciler would have written from ``obs``."""
    assert obs.local is not None
    return gt_polecat(p.metadata.name, p.spec.beadID, **obs.local.model_dump(exclude_none=True))


async def tmux_has(socket: str, session: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "has-session", "-t", f"={session}", stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


async def lines_of(ex: LocalExecutor, p: Polecat) -> list[str]:
    return [line async for line in ex.logs(p, follow=False)]


async def wait_line(ex: LocalExecutor, p: Polecat, text: str, *, timeout: float = 60) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    lines = await lines_of(ex, p)
    while not any(text in line for line in lines) and loop.time() < deadline:
        await asyncio.sleep(0.2)
        lines = await lines_of(ex, p)
    return lines


async def clone_path(ex: LocalExecutor, town: Town, name: str) -> Path:
    status = await GtClient(ex.runner(), town_root=str(town.root), gt_binary=town.gt_binary).status(RIG, name)
    assert status is not None and status.clone_path, status
    return Path(status.clone_path)


async def dispatched(ex: LocalExecutor, town: Town, name: str) -> tuple[Polecat, Observation, str]:
    bead = town.create_bead(f"contract {name}")
    p = gt_polecat(name, bead)
    obs = await ex.dispatch(p)
    assert obs.phase is Phase.WORKING, obs
    return recorded(p, obs), obs, bead


async def test_sling_reports_what_gt_reports_and_logs_and_attach_work(
    executor: LocalExecutor, town: Town
) -> None:
    bead = town.create_bead("contract sling")
    p = gt_polecat("sling", bead)
    assert (await executor.observe(p)).phase is None
    obs = await executor.dispatch(p)
    assert obs.phase is Phase.WORKING and obs.reason == "Slung", obs
    assert obs.local is not None and obs.local.polecatName
    listed = [i for i in town.polecats() if i.get("issue") == bead]
    assert [i["name"] for i in listed] == [obs.local.polecatName]
    assert obs.local.tmuxSocket == town.socket
    assert obs.local.tmuxSession and await tmux_has(town.socket, obs.local.tmuxSession)

    p = recorded(p, obs)
    seen = await executor.observe(p)  # lastActivity: the session's activity, which gt reports too
    listed_status = json.loads(
        _json_of(town.gt("polecat", "status", f"{RIG}/{obs.local.polecatName}", "--json"))
    )
    reported = parse_gt_time(listed_status.get("last_activity"))
    assert seen.last_activity is not None and reported is not None, (seen, listed_status)
    assert seen.last_activity >= reported - timedelta(seconds=1), (seen.last_activity, reported)
    lines = await wait_line(executor, p, f"on {bead}")
    assert f"agent {obs.local.polecatName} on {bead}" in lines
    assert executor.attach_command(p)[-6:] == [
        "tmux",
        "-L",
        town.socket,
        "attach",
        "-t",
        f"={obs.local.tmuxSession}",
    ]


async def test_pushed_work_is_done_and_released_without_force(executor: LocalExecutor, town: Town) -> None:
    p, obs, bead = await dispatched(executor, town, "pushed")
    assert obs.local is not None and obs.local.polecatName
    worktree = await clone_path(executor, town, obs.local.polecatName)
    town.act(bead, "push")
    done = await observe_until(executor, p, {Phase.DONE}, timeout=60)
    assert done.phase is Phase.DONE, done
    assert done.result is not None and done.result.pushed is True, done.result
    assert done.result.branch and done.result.branch.startswith(f"polecat/{obs.local.polecatName}/"), done

    client = GtClient(executor.runner(), town_root=str(town.root), gt_binary=town.gt_binary)
    recovery = await client.check_recovery(RIG, obs.local.polecatName)
    assert recovery is not None and recovery.verdict == "PENDING_MR", recovery  # gt done: MR open

    released = await executor.release(p, force=False)
    assert released.done, released
    assert released.reason == "NukedWorkPushed", released
    assert not worktree.exists()
    assert all(i.get("name") != obs.local.polecatName for i in town.polecats())


async def test_unpushed_work_is_kept_until_pushed(executor: LocalExecutor, town: Town) -> None:
    p, obs, bead = await dispatched(executor, town, "unpushed")
    assert obs.local is not None and obs.local.polecatName
    worktree = await clone_path(executor, town, obs.local.polecatName)
    town.act(bead, "commit")
    await wait_line(executor, p, f"committed {bead}")

    kept = await executor.release(p, force=False)
    assert not kept.done and kept.reason == "UnsafeToNuke", kept
    assert "1 unpushed commit(s)" in kept.message and "force-delete" in kept.message
    assert (worktree / "WORK.md").exists()
    assert obs.local.tmuxSession and await tmux_has(town.socket, obs.local.tmuxSession)

    push = await asyncio.create_subprocess_exec(
        "git", "push", "-q", "origin", "HEAD", cwd=worktree, env=_git_env(town)
    )
    assert await push.wait() == 0
    released = await executor.release(p, force=False)
    assert released.done and released.reason in ("Nuked", "NukedWorkPushed"), released
    assert not worktree.exists()


async def test_uncommitted_work_is_kept_unless_forced(executor: LocalExecutor, town: Town) -> None:
    p, obs, bead = await dispatched(executor, town, "dirty")
    assert obs.local is not None and obs.local.polecatName
    worktree = await clone_path(executor, town, obs.local.polecatName)
    town.act(bead, "dirty")
    await wait_line(executor, p, f"dirty {bead}")
    kept = await executor.release(p, force=False)
    assert not kept.done and "1 uncommitted file(s)" in kept.message, kept
    forced = await executor.release(p, force=True)
    assert forced.done and "forced" in forced.message
    assert not worktree.exists()


async def test_a_killed_tmux_server_is_stuck_and_work_still_guarded(
    executor: LocalExecutor, town: Town
) -> None:
    p, _, bead = await dispatched(executor, town, "killed")
    town.act(bead, "commit")
    await wait_line(executor, p, f"committed {bead}")
    town.kill_tmux_server()
    stuck = await observe_until(executor, p, {Phase.STUCK}, timeout=60)
    assert stuck.phase is Phase.STUCK and stuck.reason == "Stalled", stuck
    kept = await executor.release(p, force=False)
    assert not kept.done and kept.reason == "UnsafeToNuke", kept


@pytest.mark.parametrize("problem", ["missing", "closed"])
async def test_a_bead_gt_cannot_sling_is_a_user_error(
    executor: LocalExecutor, town: Town, problem: str
) -> None:
    if problem == "missing":
        bead, reason = "de-nosuch", "BeadNotFound"
    else:
        bead, reason = town.create_bead("contract closed"), "BeadClosed"
        town.close_bead(bead)
    with pytest.raises(UserError) as info:
        await executor.dispatch(gt_polecat(problem, bead))
    assert info.value.reason == reason, info.value.message
    assert "spec.beadID" in info.value.message
    assert [i for i in town.polecats() if i.get("issue") == bead] == []


async def test_an_agent_gt_cannot_start_is_a_user_error(executor: LocalExecutor, town: Town) -> None:
    """gt rolls the spawn back and fails: retrying cannot help until the agent is fixed."""
    bead = town.create_bead("contract agent")
    with town.agent_command("/nonexistent/agent"), pytest.raises(UserError) as info:
        await executor.dispatch(gt_polecat("noagent", bead))
    assert info.value.reason == "AgentMisconfigured", info.value.message
    assert "/nonexistent/agent" in info.value.message and "settings/config.json" in info.value.message
    assert [i for i in town.polecats() if i.get("issue") == bead] == []


async def test_never_slung_twice(executor: LocalExecutor, town: Town) -> None:
    bead = town.create_bead("contract once")
    p = gt_polecat("once", bead)
    first, second = await asyncio.gather(executor.dispatch(p), executor.dispatch(p))
    assert first.local is not None and second.local is not None
    assert first.local.polecatName == second.local.polecatName
    restarted = LocalExecutor(executor.settings)  # the operator restarted; the status write was lost
    try:
        again = await restarted.dispatch(p)
    finally:
        await restarted.aclose()
    assert again.local is not None and again.local.polecatName == first.local.polecatName
    assert len([i for i in town.polecats() if i.get("issue") == bead]) == 1


async def test_a_resling_by_gt_is_followed(executor: LocalExecutor, town: Town) -> None:
    p, obs, bead = await dispatched(executor, town, "resling")
    assert obs.local is not None
    old = obs.local.polecatName
    town.kill_tmux_server()
    assert (await observe_until(executor, p, {Phase.STUCK}, timeout=60)).phase is Phase.STUCK
    resling = town.gt("sling", bead, RIG)  # the session died: gt spawns a new polecat for the bead
    assert resling.returncode == 0, resling.stdout + resling.stderr
    now = await executor.observe(p)
    assert now.reason == "Reslung" and now.local is not None, now
    assert now.local.polecatName not in (None, old)
    assert now.phase is Phase.WORKING


async def test_recovery_verdict_of_a_working_polecat_is_working(executor: LocalExecutor, town: Town) -> None:
    _, obs, _ = await dispatched(executor, town, "verdict")
    assert obs.local is not None and obs.local.polecatName
    client = GtClient(executor.runner(), town_root=str(town.root), gt_binary=town.gt_binary)
    recovery = await client.check_recovery(RIG, obs.local.polecatName)
    assert recovery is not None and recovery.verdict == "WORKING", recovery
    await client.stop_session(RIG, obs.local.polecatName)
    await client.stop_session(RIG, obs.local.polecatName)  # no session any more: not an error
    stopped = await client.check_recovery(RIG, obs.local.polecatName)
    assert stopped is not None and stopped.verdict == "NEEDS_RECOVERY" and stopped.reason == "not-idle"


def _json_of(res: subprocess.CompletedProcess[str]) -> str:
    """gt's JSON (warning lines may come first)."""
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout[res.stdout.index("{") :]


def _git_env(town: Town) -> dict[str, str]:
    env = dict(os.environ)
    if town.real is not None:
        env["HOME"] = str(town.real.home)
    return env
