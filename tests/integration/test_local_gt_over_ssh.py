"""What only the stand-in gt can show: the exact calls the operator makes.

The behaviours (sling, Done, deletion, Stuck, never twice, re-sling...) are in
``test_gt_contract.py``, run against the real gt v1.2.1 AND this stand-in. Here the
stand-in's record of every call (``calls.jsonl``) pins what the real gt cannot
report: the argv and working directory of a sling, the task on stdin, one ``polecat
list`` per rig per poll, and that setup errors stop before any sling.

Real parts: OpenSSH's sshd on 127.0.0.1, tmux on the town's own socket, git.
Stand-in: ``tests/fakes/gt`` (checked against the real gt by the contract suite).
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

pytestmark = pytest.mark.sshd

BEADS = ["de-abc", "de-b0", "de-b1", "de-b2", "de-stop", "de-x"]

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
    root = make_town(tmp_path / "town", {"demo": "de"}, agent=AGENT, beads=BEADS)
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
    assert [o.local.polecatName for o in observations if o.local] == ["obsidian", "quartz", "jasper"]
    for bead in ("de-b0", "de-b1", "de-b2"):
        (town / f"go-{bead}").touch()


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
    assert (town / "demo" / "polecats" / "obsidian" / "demo").is_dir()
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


async def test_sling_runs_in_the_town_with_the_task_on_stdin(executor: LocalExecutor, town: Path) -> None:
    p = gt_polecat("happy", "de-abc")
    obs = await executor.dispatch(p)
    assert obs.phase is Phase.WORKING
    assert slings(town) == [["sling", "de-abc", "demo", "--stdin"]]
    sling = next(c for c in gt_calls(town) if c["argv"][:1] == ["sling"])
    assert sling["cwd"] == str(town) and sling["GT_TOWN_ROOT"] == str(town)
    assert [c["stdin"] for c in gt_calls(town) if c["argv"] == ["<stdin>"]] == ["task for de-abc"]
