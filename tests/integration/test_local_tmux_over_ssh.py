"""Local mode's tmux dispatcher end to end, over a real sshd (key auth) into real tmux.

Real parts: OpenSSH's sshd on 127.0.0.1 with its own host key, asyncssh with the
host key pinned, tmux on a socket of this test session. The "agent" is a shell
command (no real coding agent can run here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gastown.api.models import TERMINAL_PHASES, DesiredState, Phase, Polecat
from gastown.devcluster.sshd import UserSshd
from gastown.executors.base import TransientError, UserError
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.ssh import SSHPool
from gastown.settings import Settings, SSHSettings
from tests.fixtures.sshd import make_polecat, settings_for
from tests.support.engine import observe_until

pytestmark = pytest.mark.sshd


@pytest.fixture
async def executor(ssh_settings: SSHSettings, tmux_socket: str) -> AsyncIterator[LocalExecutor]:
    ex = LocalExecutor(Settings(ssh=ssh_settings, tmux_socket=tmux_socket, local_poll_interval=0.2))
    try:
        yield ex
    finally:
        await ex.aclose()


async def tmux_has(socket: str, session: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "has-session", "-t", f"={session}", stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


def tmux_polecat(name: str, workdir: Path, command: str, task: str | None = "the task") -> Polecat:
    return make_polecat(
        name, task=task, local={"dispatcher": "tmux", "command": command, "workDir": str(workdir)}
    )


async def test_session_runs_the_command_to_done_and_is_removed_on_release(
    executor: LocalExecutor, tmux_socket: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    p = tmux_polecat(
        "happy",
        tmp_path,
        f'echo "agent sees: $(cat "$GASTOWN_TASK_FILE")"; pwd > cwd.txt; '
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo finished",
    )
    assert (await executor.observe(p)).phase is None

    started = await executor.dispatch(p)
    assert started.phase is Phase.WORKING
    assert started.local is not None
    session = started.local.tmuxSession
    assert session == "gastown-default-happy"
    assert started.local.tmuxSocket == tmux_socket
    assert started.local.host == "127.0.0.1"
    assert await tmux_has(tmux_socket, session)
    assert (await executor.observe(p)).phase is Phase.WORKING

    gate.touch()
    done = await observe_until(executor, p, TERMINAL_PHASES)
    assert done.phase is Phase.DONE, done
    assert done.requeue_after is None
    assert (tmp_path / "cwd.txt").read_text().strip() == str(tmp_path)
    lines = [line async for line in executor.logs(p, follow=False)]
    assert "agent sees: the task" in lines
    assert lines[-1] == "finished"

    released = await executor.release(p, force=False)
    assert released.done
    assert not await tmux_has(tmux_socket, session)
    assert (await executor.observe(p)).phase is None


async def test_non_zero_exit_is_failed(executor: LocalExecutor, tmp_path: Path) -> None:
    p = tmux_polecat("sad", tmp_path, "echo broken >&2; exit 3")
    await executor.dispatch(p)
    obs = await observe_until(executor, p, TERMINAL_PHASES)
    assert obs.phase is Phase.FAILED
    assert "exited 3" in obs.message
    await executor.release(p, force=False)


async def test_dispatch_is_idempotent_even_after_the_work_finished(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    p = tmux_polecat("once", tmp_path, f"echo run >> {runs}")
    first, second = await asyncio.gather(executor.dispatch(p), executor.dispatch(p))
    assert {first.phase, second.phase} <= {Phase.WORKING, Phase.DONE}
    assert (await observe_until(executor, p, TERMINAL_PHASES)).phase is Phase.DONE
    again = await executor.dispatch(p)  # e.g. the status write was lost: must not run again
    assert again.phase is Phase.DONE
    assert runs.read_text() == "run\n"
    await executor.release(p, force=False)


async def test_terminate_kills_the_session(executor: LocalExecutor, tmux_socket: str, tmp_path: Path) -> None:
    p = tmux_polecat("stopme", tmp_path, "sleep 600")
    await executor.dispatch(p)
    obs = await executor.terminate(p)
    assert obs.phase is Phase.TERMINATED
    assert not await tmux_has(tmux_socket, "gastown-default-stopme")
    stopped = p.model_copy(
        update={"spec": p.spec.model_copy(update={"desiredState": DesiredState.TERMINATED})}
    )
    assert (await executor.observe(stopped)).phase is Phase.TERMINATED
    await executor.release(p, force=False)


async def test_a_killed_session_is_failed_not_rerun(
    executor: LocalExecutor, tmux_socket: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    p = tmux_polecat("killed", tmp_path, f"echo run >> {runs}; sleep 600")
    await executor.dispatch(p)
    for _ in range(200):
        if runs.exists():
            break
        await asyncio.sleep(0.05)
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", tmux_socket, "kill-session", "-t", "=gastown-default-killed"
    )
    await proc.wait()
    obs = await executor.dispatch(p)
    assert obs.phase is Phase.FAILED and obs.reason == "SessionLost"
    assert runs.read_text() == "run\n"
    await executor.release(p, force=False)


async def test_follow_streams_until_the_session_ends(executor: LocalExecutor, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    p = tmux_polecat("follow", tmp_path, f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two")
    await executor.dispatch(p)
    executor.follow_interval = 0.05
    seen: list[str] = []
    async for line in executor.logs(p, follow=True):
        seen.append(line)
        if line == "one":
            gate.touch()
    assert seen[0] == "one" and seen[-1] == "two"
    await executor.release(p, force=False)


async def test_missing_workdir_or_command_is_a_user_error(executor: LocalExecutor, tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        await executor.dispatch(tmux_polecat("nodir", tmp_path / "absent", "true"))
    assert info.value.reason == "WorkDirMissing"
    with pytest.raises(UserError) as info:
        await executor.dispatch(make_polecat("nocmd", local={"dispatcher": "tmux"}))
    assert info.value.reason == "CommandMissing"


async def test_default_workdir_is_created_under_the_state_dir(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    out = tmp_path / "where"
    p = make_polecat("nowd", local={"dispatcher": "tmux", "command": f"pwd > {out}"})
    await executor.dispatch(p)
    assert (await observe_until(executor, p, TERMINAL_PHASES)).phase is Phase.DONE
    assert out.read_text().strip().endswith("/.gastown/sessions/gastown-default-nowd/work")
    await executor.release(p, force=False)


async def test_exact_targets_never_hit_a_prefix_namesake(
    executor: LocalExecutor, tmux_socket: str, tmp_path: Path
) -> None:
    long = tmux_polecat("abc", tmp_path, "sleep 600")
    short = tmux_polecat("ab", tmp_path, "sleep 600")
    await executor.dispatch(long)
    assert (await executor.observe(short)).phase is None  # "=gastown-default-ab" is not a prefix match
    await executor.release(short, force=False)  # kills nothing
    assert await tmux_has(tmux_socket, "gastown-default-abc")
    await executor.release(long, force=False)


async def test_many_commands_share_one_connection(ssh_settings: SSHSettings) -> None:
    async with SSHPool(ssh_settings) as pool:
        results = await asyncio.gather(
            *(pool.run(["sh", "-c", "sleep 0.1; echo $0", f"n{i}"]) for i in range(20))
        )
        assert [r.stdout.strip() for r in results] == [f"n{i}" for i in range(20)]
        assert pool.link(pool.default_target()).connects == 1


async def test_channels_beyond_the_servers_max_sessions_are_refused_not_fatal(sshd: UserSshd) -> None:
    # OpenSSH allows MaxSessions=10 channels per connection; ask for more at once.
    async with SSHPool(settings_for(sshd, max_sessions=14)) as pool:
        results = await asyncio.gather(
            *(pool.run(["sleep", "0.5"]) for _ in range(14)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, TransientError)]
        assert refused and all(r.reason == "SSHChannelRefused" for r in refused)
        assert "GASTOWN_SSH_MAX_SESSIONS" in refused[0].message
        assert (await pool.run(["echo", "ok"])).stdout == "ok\n"
        assert pool.link(pool.default_target()).connects == 1  # the connection was kept


async def test_command_timeout_is_transient(ssh_settings: SSHSettings) -> None:
    async with SSHPool(ssh_settings) as pool:
        with pytest.raises(TransientError) as info:
            await pool.run(["sleep", "30"], time_limit=0.5)
        assert info.value.reason == "SSHCommandTimeout"
        assert (await pool.run(["echo", "still fine"])).stdout == "still fine\n"


async def test_unauthorized_key_is_a_user_error(sshd: UserSshd, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)
    )
    await proc.wait()
    async with SSHPool(settings_for(sshd, key_file=other)) as pool:
        with pytest.raises(UserError) as info:
            await pool.run(["true"])
    assert info.value.reason == "SSHAuthFailed"
    assert "authorized_keys" in info.value.message


async def test_host_key_mismatch_is_a_user_error(sshd: UserSshd, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor"
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)
    )
    await proc.wait()
    key_type, key = impostor.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.host}]:{sshd.port} {key_type} {key}\n")
    async with SSHPool(settings_for(sshd, known_hosts_file=known)) as pool:
        with pytest.raises(UserError) as info:
            await pool.run(["true"])
    assert info.value.reason == "HostKeyMismatch"
    assert f"[{sshd.host}]:{sshd.port}" in info.value.message


async def test_unknown_host_is_refused_too(sshd: UserSshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    async with SSHPool(settings_for(sshd, known_hosts_file=empty)) as pool:
        with pytest.raises(UserError) as info:
            await pool.run(["true"])
    assert info.value.reason == "HostKeyMismatch"


async def test_nothing_listening_is_transient(sshd: UserSshd) -> None:
    async with SSHPool(settings_for(sshd, port=1), connect_attempts=2, backoff_base=0.01) as pool:
        with pytest.raises(TransientError) as info:
            await pool.run(["true"])
    assert info.value.reason == "SSHUnreachable"


async def test_release_keeps_the_default_work_directory_unless_forced(
    executor: LocalExecutor, sshd: UserSshd, tmux_socket: str
) -> None:
    """Without a workDir the session works in the state directory's ``work/``; deleting
    the Polecat must not lose it: it is moved to a uid-specific kept path, which a new
    Polecat of the same name (whose dispatch clears the old state directory) cannot
    touch. Only force-delete removes the work."""
    assert sshd.home is not None
    state = sshd.home / ".gastown" / "sessions" / "gastown-default-keeper"
    first = make_polecat("keeper", local={"dispatcher": "tmux", "command": "echo result > out.txt"})
    await executor.dispatch(first)
    assert (await observe_until(executor, first, TERMINAL_PHASES)).phase is Phase.DONE
    released = await executor.release(first, force=False)
    assert released.done and released.reason == "WorkKept", released
    kept = sshd.home / ".gastown" / "kept" / f"gastown-default-keeper-{first.metadata.uid}"
    assert str(kept) in released.message, released
    assert (kept / "out.txt").read_text() == "result\n"
    assert not state.exists()

    second = make_polecat("keeper", local={"dispatcher": "tmux", "command": "echo again > out.txt"})
    await executor.dispatch(second)
    assert (await observe_until(executor, second, TERMINAL_PHASES)).phase is Phase.DONE
    assert (state / "work" / "out.txt").read_text() == "again\n"
    forced = await executor.release(second, force=True)
    assert forced.done and "deleted (forced)" in forced.message, forced
    assert not state.exists()
    assert not (sshd.home / ".gastown" / "kept" / f"gastown-default-keeper-{second.metadata.uid}").exists()
    assert (kept / "out.txt").read_text() == "result\n"  # the first Polecat's work is still there


async def test_release_never_deletes_a_users_workdir(executor: LocalExecutor, tmp_path: Path) -> None:
    p = tmux_polecat("mine", tmp_path, "echo mine > out.txt")
    await executor.dispatch(p)
    assert (await observe_until(executor, p, TERMINAL_PHASES)).phase is Phase.DONE
    forced = await executor.release(p, force=True)
    assert forced.done and f"{tmp_path} is yours" in forced.message, forced
    assert (tmp_path / "out.txt").read_text() == "mine\n"


async def test_the_result_and_last_activity_are_reported(executor: LocalExecutor, tmp_path: Path) -> None:
    """Done carries status.result (the exit status; the work directory's branch, HEAD and
    whether it is pushed) and a Working observation the session's last activity."""
    repo = tmp_path / "repo"
    origin = tmp_path / "origin.git"
    for argv in (
        ["git", "init", "-q", "--bare", str(origin)],
        ["git", "init", "-q", "-b", "work", str(repo)],
        ["git", "-C", str(repo), "remote", "add", "origin", str(origin)],
    ):
        proc = await asyncio.create_subprocess_exec(*argv)
        assert await proc.wait() == 0
    gate = tmp_path / "go"
    command = (
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo x > f && git add f && "
        "git -c user.email=a@example.invalid -c user.name=a commit -qm work && git push -q origin work"
    )
    p = tmux_polecat("result", repo, command)
    working = await executor.dispatch(p)
    assert working.phase is Phase.WORKING
    seen = await executor.observe(p)
    assert seen.last_activity is not None, seen
    gate.touch()
    done = await observe_until(executor, p, TERMINAL_PHASES)
    assert done.phase is Phase.DONE, done
    assert done.result is not None, done
    assert done.result.branch == "work" and done.result.pushed is True, done.result
    assert done.result.commit and len(done.result.commit) == 40, done.result
    assert done.result.message and "exited 0" in done.result.message, done.result
    await executor.release(p, force=False)
