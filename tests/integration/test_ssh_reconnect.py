"""sshd restarted mid-run: the pool reconnects and nothing is dispatched twice.

Real parts: a dedicated OpenSSH sshd on 127.0.0.1 (restarted on the same port with
the same host key, dropping every established connection, as a host reboot or a
crashed sshd would), real tmux, and the stand-in gt (``tests/fakes/gt``; the real
gt needs a Dolt server, which cannot run here).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gastown.api.models import Phase, Polecat
from gastown.devcluster.sshd import UserSshd
from gastown.executors.base import Observation, TransientError
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.ssh import SSHPool
from gastown.executors.local.tmux import town_socket_name
from gastown.settings import Settings
from tests.fixtures.sshd import (
    FAKE_GT,
    gt_calls,
    kill_tmux_server,
    make_polecat,
    make_town,
    require_sshd,
    settings_for,
)

pytestmark = pytest.mark.sshd
T = TypeVar("T")


@pytest.fixture
async def own_sshd(tmp_path: Path) -> AsyncIterator[UserSshd]:
    """An sshd of this test alone: restarting it must not disturb the other tests."""
    require_sshd()
    async with UserSshd.start(tmp_path / "sshd", home=tmp_path / "home") as server:
        yield server


async def retrying(call: Callable[[], Awaitable[T]], attempts: int = 50) -> T:
    """Call until the transient faults of a reconnect pass (bounded by attempts)."""
    last: TransientError | None = None
    for _ in range(attempts):
        try:
            return await call()
        except TransientError as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"still failing after {attempts} attempts: {last}")


async def test_pool_reconnects_after_a_restart(own_sshd: UserSshd) -> None:
    async with SSHPool(settings_for(own_sshd)) as pool:
        link = pool.link(pool.default_target())
        assert (await pool.run(["echo", "before"])).stdout == "before\n"
        await own_sshd.restart()
        assert (await pool.run(["echo", "after"], idempotent=True)).stdout == "after\n"
        assert link.connects == 2


async def test_a_command_cut_by_the_restart_is_not_rerun(own_sshd: UserSshd, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    async with SSHPool(settings_for(own_sshd)) as pool:
        script = f"echo ran >> {marks}; sleep 30"
        running = asyncio.create_task(pool.run(["sh", "-c", script], time_limit=60))
        try:
            for _ in range(200):
                if marks.exists():
                    break
                await asyncio.sleep(0.05)
            await own_sshd.restart()
            with pytest.raises(TransientError) as info:
                await running
        finally:
            running.cancel()
        assert info.value.reason == "SSHConnectionLost"
        assert marks.read_text() == "ran\n"  # side-effecting commands are never retried by the pool
        assert (await pool.run(["true"])).ok


async def test_outage_is_transient_and_recovers(own_sshd: UserSshd) -> None:
    async with SSHPool(settings_for(own_sshd), connect_attempts=2, backoff_base=0.01) as pool:
        await own_sshd.stop()
        with pytest.raises(TransientError) as info:
            await pool.run(["true"])
        assert info.value.reason in ("SSHUnreachable", "SSHConnectionLost")
        await own_sshd.restart()
        assert (await pool.run(["true"])).ok


async def test_tmux_polecat_survives_a_restart_and_runs_once(own_sshd: UserSshd, tmp_path: Path) -> None:
    socket = f"gastown-reconnect-{os.getpid()}"
    runs = tmp_path / "runs"
    gate = tmp_path / "go"
    settings = Settings(ssh=settings_for(own_sshd), tmux_socket=socket, local_poll_interval=0.2)
    ex = LocalExecutor(settings)
    command = f"echo run >> {runs}; while [ ! -e {gate} ]; do sleep 0.05; done"
    p = make_polecat("survivor", local={"dispatcher": "tmux", "command": command, "workDir": str(tmp_path)})
    late = make_polecat("late", local={"dispatcher": "tmux", "command": f"echo late >> {runs}"})
    try:
        assert (await ex.dispatch(p)).phase is Phase.WORKING
        await own_sshd.restart()
        # The reconciler keeps reconciling: observe, then dispatch (a no-op when running).
        assert (await retrying(lambda: ex.observe(p))).phase is Phase.WORKING
        assert (await retrying(lambda: ex.dispatch(p))).phase is Phase.WORKING

        await own_sshd.stop()  # an outage: dispatching fails transiently, never half-done
        with pytest.raises(TransientError):
            await ex.dispatch(late)
        await own_sshd.restart()
        await retrying(lambda: ex.dispatch(late))
        await retrying(lambda: ex.dispatch(late))

        gate.touch()
        for polecat in (p, late):
            obs = await retrying(lambda polecat=polecat: settled(ex, polecat))  # type: ignore[misc]
            assert obs.phase is Phase.DONE
        assert sorted(runs.read_text().splitlines()) == ["late", "run"]
    finally:
        await ex.aclose()
        await kill_tmux_server(socket)


async def settled(ex: LocalExecutor, p: Polecat) -> Observation:
    for _ in range(300):
        obs = await ex.observe(p)
        if obs.phase in (Phase.DONE, Phase.FAILED):
            return obs
        await asyncio.sleep(0.05)
    return obs


async def test_gt_polecat_is_slung_once_across_a_restart(own_sshd: UserSshd, tmp_path: Path) -> None:
    town = make_town(tmp_path / "town", {"demo": "de"}, agent="sleep 600\n", beads=["de-rec"])
    settings = Settings(ssh=settings_for(own_sshd), gt_binary=str(FAKE_GT), town_root=str(town))
    ex = LocalExecutor(settings)
    p = make_polecat("gtsurvivor", bead="de-rec", local={"dispatcher": "gt"})
    try:
        first = await ex.dispatch(p)
        assert first.local is not None and first.local.polecatName == "obsidian"
        await own_sshd.restart()
        # The status write was lost too (worst case): the bead still finds the polecat.
        again = await retrying(lambda: ex.dispatch(p))
        assert again.local is not None and again.local.polecatName == "obsidian"
        assert [c["argv"][:1] for c in gt_calls(town)].count(["sling"]) == 1
        assert (await retrying(lambda: ex.release(p, force=True))).done
    finally:
        await ex.aclose()
        await kill_tmux_server(town_socket_name(str(town), os.path.realpath(town)))
