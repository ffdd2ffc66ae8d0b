"""Local mode's gt dispatcher end to end, over a real sshd into real tmux and real git.

Real parts: OpenSSH's sshd on 127.0.0.1 (key auth, pinned host key), tmux on the
town's own socket, git worktrees and pushes. Stand-ins: Gas Town's ``gt`` is
``tests/fakes/gt`` (the real one needs a Dolt server, which cannot run here; the
stand-in honours gt's commands, flags and JSON), and the agent is a shell script.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gastown.api.models import DesiredState, Phase, Polecat
from gastown.executors.base import Observation, UserError
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.tmux import town_socket_name
from gastown.settings import Settings, SSHSettings
from tests.fixtures.sshd import FAKE_GT, gt_calls, kill_tmux_server, make_polecat, make_town
from tests.support.engine import observe_until

pytestmark = pytest.mark.sshd

# The stand-in agent: shows its task, waits for the test's go-<bead> file, then
# either finishes properly (commit + gt done) or leaves uncommitted work behind.
AGENT = """\
echo "agent $GT_POLECAT on $GT_ISSUE: $(cat "$GT_FAKE_ARGS_FILE")"
while [ ! -e "$GT_TOWN_ROOT/go-$GT_ISSUE" ]; do sleep 0.05; done
if [ -e "$GT_TOWN_ROOT/dirty-$GT_ISSUE" ]; then echo wip > WIP.txt; exit 0; fi
printf 'work\\n' > WORK.md
git add WORK.md && git -c user.email=a@example.invalid -c user.name=a commit -qm work
"$GT_BIN" done
"""


@pytest.fixture
async def town(tmp_path: Path) -> AsyncIterator[Path]:
    root = make_town(tmp_path / "town", {"demo": "de"}, agent=AGENT)
    yield root
    await kill_tmux_server(town_socket_name(str(root), os.path.realpath(root)))


@pytest.fixture
async def executor(ssh_settings: SSHSettings, town: Path) -> AsyncIterator[LocalExecutor]:
    settings = Settings(
        ssh=ssh_settings, gt_binary=str(FAKE_GT), town_root=str(town), local_poll_interval=0.2
    )
    ex = LocalExecutor(settings)
    try:
        yield ex
    finally:
        await ex.aclose()


def gt_polecat(name: str, bead: str, **status_local: object) -> Polecat:
    return make_polecat(
        name,
        bead=bead,
        task=f"task for {bead}",
        local={"dispatcher": "gt"},
        status_local=status_local or None,
    )


def with_name(p: Polecat, obs: Observation) -> Polecat:
    assert obs.local is not None
    return make_polecat(
        p.metadata.name,
        bead=p.spec.beadID,
        task=p.spec.task,
        local={"dispatcher": "gt"},
        status_local=obs.local.model_dump(exclude_none=True),
    )


def slings(town: Path) -> list[list[str]]:
    return [c["argv"] for c in gt_calls(town) if c["argv"][:1] == ["sling"]]


async def tmux_has(socket: str, session: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "has-session", "-t", f"={session}", stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


async def test_sling_work_done_and_nuke(executor: LocalExecutor, town: Path) -> None:
    p = gt_polecat("happy", "de-abc")
    assert (await executor.observe(p)).phase is None

    obs = await executor.dispatch(p)
    assert obs.phase is Phase.WORKING
    assert obs.local is not None
    assert obs.local.polecatName == "Toast"
    socket = town_socket_name(str(town), os.path.realpath(town))
    assert obs.local.tmuxSocket == socket
    assert obs.local.tmuxSession == "de-Toast"
    assert await tmux_has(socket, "de-Toast")  # really on the town's own tmux server
    assert slings(town) == [["sling", "de-abc", "demo", "--stdin"]]
    sling = next(c for c in gt_calls(town) if c["argv"][:1] == ["sling"])
    assert sling["cwd"] == str(town) and sling["GT_TOWN_ROOT"] == str(town)

    p = with_name(p, obs)
    lines = [line async for line in executor.logs(p, follow=False)]
    assert "agent Toast on de-abc: task for de-abc" in lines
    assert executor.attach_command(p)[-6:] == ["tmux", "-L", socket, "attach", "-t", "=de-Toast"]

    (town / "go-de-abc").touch()
    done = await observe_until(executor, p, {Phase.DONE})
    assert done.phase is Phase.DONE, done
    assert done.reason == "Done"

    released = await executor.release(p, force=False)
    assert released.done, released
    assert not (town / "demo" / "polecats" / "Toast").exists()
    assert slings(town) == [["sling", "de-abc", "demo", "--stdin"]]


async def test_never_slung_twice(ssh_settings: SSHSettings, executor: LocalExecutor, town: Path) -> None:
    p = gt_polecat("once", "de-one")
    first, second = await asyncio.gather(executor.dispatch(p), executor.dispatch(p))
    assert first.local is not None and second.local is not None
    assert first.local.polecatName == second.local.polecatName == "Toast"
    assert len(slings(town)) == 1

    # The operator restarts and the status write was lost: the bead finds the polecat.
    restarted = LocalExecutor(executor.settings)
    try:
        again = await restarted.dispatch(p)
    finally:
        await restarted.aclose()
    assert again.phase is Phase.WORKING
    assert again.local is not None and again.local.polecatName == "Toast"
    assert len(slings(town)) == 1

    # With the name recorded, even a finished and cleaned-up polecat is not slung again.
    named = with_name(p, again)
    (town / "go-de-one").touch()
    assert (await observe_until(executor, named, {Phase.DONE})).phase is Phase.DONE
    assert (await executor.release(named, force=False)).done
    assert (await executor.dispatch(named)).phase is Phase.DONE
    assert len(slings(town)) == 1


async def test_one_list_call_per_rig_per_poll(executor: LocalExecutor, town: Path) -> None:
    polecats = [gt_polecat(f"p{i}", f"de-b{i}") for i in range(3)]
    for p in polecats:
        await executor.dispatch(p)
    named = [with_name(p, await executor.observe(p)) for p in polecats]
    await asyncio.sleep(0.15)  # let the short cache expire: the next poll asks gt again
    before = sum(1 for c in gt_calls(town) if c["argv"][:2] == ["polecat", "list"])
    observations = await asyncio.gather(*(executor.observe(p) for p in named))
    after = sum(1 for c in gt_calls(town) if c["argv"][:2] == ["polecat", "list"])
    assert after - before == 1
    assert [o.local.polecatName for o in observations if o.local] == ["Toast", "Furiosa", "Nux"]
    for bead in ("de-b0", "de-b1", "de-b2"):
        (town / f"go-{bead}").touch()


async def test_unpushed_work_blocks_deletion_unless_forced(executor: LocalExecutor, town: Path) -> None:
    p = gt_polecat("dirty", "de-wip")
    p = with_name(p, await executor.dispatch(p))
    (town / "dirty-de-wip").touch()
    (town / "go-de-wip").touch()
    stuck = await observe_until(executor, p, {Phase.STUCK})
    assert stuck.phase is Phase.STUCK and stuck.reason == "Stalled"  # session died with work assigned

    kept = await executor.release(p, force=False)
    assert not kept.done
    assert kept.reason == "UnsafeToNuke"
    assert "has_uncommitted" in kept.message
    assert "gastown.gastown.io/force-delete" in kept.message
    assert (town / "demo" / "polecats" / "Toast" / "WIP.txt").exists()

    forced = await executor.release(p, force=True)
    assert forced.done
    assert not (town / "demo" / "polecats" / "Toast").exists()


async def test_terminate_stops_the_session_and_keeps_the_worktree(
    executor: LocalExecutor, town: Path
) -> None:
    p = gt_polecat("stop", "de-stop")
    p = with_name(p, await executor.dispatch(p))
    await executor.terminate(p)
    stopped = p.model_copy(
        update={"spec": p.spec.model_copy(update={"desiredState": DesiredState.TERMINATED})}
    )
    assert (await executor.observe(stopped)).phase is Phase.TERMINATED
    assert (town / "demo" / "polecats" / "Toast").is_dir()
    assert (await executor.release(stopped, force=True)).done


async def test_setup_errors_say_what_to_fix(ssh_settings: SSHSettings, town: Path, tmp_path: Path) -> None:
    def executor_with(**kw: object) -> LocalExecutor:
        base = {"ssh": ssh_settings, "gt_binary": str(FAKE_GT), "town_root": str(town)}
        return LocalExecutor(Settings(**{**base, **kw}))  # type: ignore[arg-type]

    cases = [
        (executor_with(gt_binary="/nonexistent/gt"), gt_polecat("a", "de-x"), "GtNotInstalled"),
        (executor_with(town_root=str(tmp_path)), gt_polecat("a", "de-x"), "TownNotFound"),
        (executor_with(), make_polecat("a", rig="nosuchrig", local={"dispatcher": "gt"}), "RigNotFound"),
    ]
    for ex, p, reason in cases:
        try:
            with pytest.raises(UserError) as info:
                await ex.dispatch(p)
            assert info.value.reason == reason, info.value.message
        finally:
            await ex.aclose()
    assert slings(town) == []  # each refused before anything was slung
