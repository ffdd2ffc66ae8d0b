"""Hostile strings through every field that reaches a shell arrive literally or are rejected.

Over a real sshd (the remote login shell parses every command line) into real tmux;
Gas Town's gt is the stand-in ``tests/fakes/gt`` (the real one needs a Dolt server).
Each hostile string tries to create a file in a canary directory by command
substitution, backticks, ``;``, quote breaking or a newline; the tests check that
the text arrives byte for byte and that the canary directory stays empty.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gastown.api.models import Phase, Polecat
from gastown.executors.base import UserError
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.ssh import SSHPool
from gastown.executors.local.tmux import TmuxCommands, TmuxDriver, town_socket_name
from gastown.settings import Settings, SSHSettings
from tests.fixtures.sshd import FAKE_GT, gt_calls, kill_tmux_server, make_polecat, make_town

pytestmark = pytest.mark.sshd


def hostile(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"$(touch {c}/subst)",
        f"`touch {c}/backtick`",
        f"; touch {c}/semicolon",
        f"' ; touch {c}/squote ; '",
        f'" ; touch {c}/dquote ; "',
        f"line\ntouch {c}/newline",
        f"$(touch {c}/a)`touch {c}/b`;touch {c}/c'\"\\",
        "-n --help $HOME ${PATH} * ?",
    ]


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.mkdir()
    return path


@pytest.fixture
async def executor(ssh_settings: SSHSettings, tmux_socket: str) -> AsyncIterator[LocalExecutor]:
    ex = LocalExecutor(Settings(ssh=ssh_settings, tmux_socket=tmux_socket, gt_binary=str(FAKE_GT)))
    try:
        yield ex
    finally:
        await ex.aclose()


async def settle(ex: LocalExecutor, p: Polecat) -> Phase | None:
    for _ in range(300):
        obs = await ex.observe(p)
        if obs.phase in (Phase.DONE, Phase.FAILED):
            return obs.phase
        await asyncio.sleep(0.05)
    return None


async def test_argv_over_ssh_arrives_literally(ssh_settings: SSHSettings, canary: Path) -> None:
    strings = hostile(canary)
    async with SSHPool(ssh_settings) as pool:
        res = await pool.run(["printf", "%s\\0", *strings], env={"X": strings[0]}, cwd=str(canary))
        env = await pool.run(["sh", "-c", 'printf %s "$X"'], env={"X": strings[-3]})
    assert res.stdout.split("\0")[:-1] == strings
    assert env.stdout == strings[-3]
    assert list(canary.iterdir()) == []


async def test_task_workdir_and_names_reach_the_tmux_agent_literally(
    executor: LocalExecutor, canary: Path, tmp_path: Path
) -> None:
    strings = hostile(canary)
    task = "\n".join(strings) + "\n"
    workdir = tmp_path / "work $(touch x) `y` ; 'q' \"dq\""
    workdir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    command = (
        f'cat "$GASTOWN_TASK_FILE" > {out}/task; pwd > {out}/cwd; '
        f'printf %s "$GASTOWN_POLECAT" > {out}/polecat'
    )
    p = make_polecat(
        "inject", task=task, local={"dispatcher": "tmux", "command": command, "workDir": str(workdir)}
    )
    # A name that slipped past Kubernetes' validation (built unchecked).
    odd_name = "inj.ect;touch"
    p = p.model_copy(update={"metadata": p.metadata.model_copy(update={"name": odd_name})})
    obs = await executor.dispatch(p)
    assert obs.local is not None and obs.local.tmuxSession is not None
    assert ";" not in obs.local.tmuxSession and "." not in obs.local.tmuxSession
    assert await settle(executor, p) is Phase.DONE
    assert (out / "task").read_text() == task
    assert (out / "cwd").read_text() == f"{workdir}\n"
    assert (out / "polecat").read_text() == f"default/{odd_name}"
    assert list(canary.iterdir()) == []
    assert list(workdir.iterdir()) == []  # nothing ran in the work directory either
    await executor.release(p, force=False)


async def test_the_command_runs_exactly_as_written_once(
    executor: LocalExecutor, canary: Path, tmp_path: Path
) -> None:
    # spec.local.command IS code (the Polecat author's); the operator must neither
    # re-quote nor evaluate it a second time.
    out = tmp_path / "out.txt"
    command = (
        f"printf '%s\\n' \"it's \\\"quoted\\\"\" '$(touch {canary}/never)' >> {out}\n"
        f"echo second-line >> {out}"
    )
    p = make_polecat("exact", local={"dispatcher": "tmux", "command": command, "workDir": str(tmp_path)})
    await executor.dispatch(p)
    assert await settle(executor, p) is Phase.DONE
    assert out.read_text() == f'it\'s "quoted"\n$(touch {canary}/never)\nsecond-line\n'
    assert list(canary.iterdir()) == []
    await executor.release(p, force=False)


async def test_send_keys_types_text_literally(
    ssh_settings: SSHSettings, tmux_socket: str, canary: Path, tmp_path: Path
) -> None:
    target = tmp_path / "typed"
    async with SSHPool(ssh_settings) as pool:

        async def run(argv: object, **kw: object) -> object:
            return await pool.run(argv, **kw)  # type: ignore[arg-type]

        driver = TmuxDriver(run, TmuxCommands(socket=tmux_socket))  # type: ignore[arg-type]
        session = "gastown-inject-keys"
        assert await driver.new_session(session, cwd=str(tmp_path), command=["sh", "-c", f"cat > {target}"])
        text = " ".join(s for s in hostile(canary) if "\n" not in s)
        await driver.send_keys(session, text)
        for _ in range(200):
            if target.exists() and target.read_text() == text + "\n":
                break
            await asyncio.sleep(0.05)
        assert target.read_text() == text + "\n"
        assert await driver.kill_session(session)
    assert list(canary.iterdir()) == []


async def test_gt_gets_the_task_on_stdin_and_a_hostile_town_path_literally(
    ssh_settings: SSHSettings, canary: Path, tmp_path: Path
) -> None:
    strings = hostile(canary)
    task = "\n".join(strings)
    town = make_town(
        tmp_path / "town $(touch x) ; `y` 'q'", {"demo": "de"}, agent="sleep 600\n", beads=["de-inj"]
    )
    ex = LocalExecutor(Settings(ssh=ssh_settings, gt_binary=str(FAKE_GT)))
    p = make_polecat("gtinject", bead="de-inj", task=task, local={"dispatcher": "gt", "townRoot": str(town)})
    try:
        obs = await ex.dispatch(p)
        assert obs.phase is Phase.WORKING
        sling = next(c for c in gt_calls(town) if c["argv"][:1] == ["sling"])
        assert sling["argv"] == ["sling", "de-inj", "demo", "--stdin"]
        assert sling["GT_TOWN_ROOT"] == str(town) and sling["cwd"] == str(town)
        assert (town / ".fake-gt" / "args" / "demo" / "obsidian.txt").read_text() == task
        assert obs.local is not None
        assert obs.local.tmuxSocket == town_socket_name(str(town), os.path.realpath(town))
        assert list(canary.iterdir()) == []
        assert (await ex.release(p, force=True)).done
    finally:
        await ex.aclose()
        await kill_tmux_server(town_socket_name(str(town), os.path.realpath(town)))


@pytest.mark.parametrize(
    "spec",
    [
        {"beadID": "de-1; touch CANARY"},
        {"beadID": "$(touch CANARY)"},
        {"rig": "demo`touch CANARY`"},
        {"rig": "demo\ntouch CANARY"},
    ],
)
async def test_hostile_bead_or_rig_is_rejected_before_any_command(
    ssh_settings: SSHSettings, canary: Path, tmp_path: Path, spec: dict[str, str]
) -> None:
    town = make_town(tmp_path / "town", {"demo": "de"})
    ex = LocalExecutor(Settings(ssh=ssh_settings, gt_binary=str(FAKE_GT), town_root=str(town)))
    base = make_polecat("bad", local={"dispatcher": "gt"})
    values = {k: v.replace("CANARY", str(canary / "x")) for k, v in spec.items()}
    bad = base.model_copy(update={"spec": base.spec.model_copy(update=values)})  # skips validation
    try:
        with pytest.raises(UserError):
            await ex.dispatch(bad)
        with pytest.raises(UserError):
            await ex.observe(bad)
    finally:
        await ex.aclose()
    assert gt_calls(town) == []
    assert list(canary.iterdir()) == []
