"""Local mode: dispatch over one pooled SSH connection vs one ``ssh`` process per
command, and the cost of a status poll as Polecats and rigs grow.

No apiserver is involved: the bench drives :class:`LocalExecutor` directly with
``Polecat`` models, exactly as the reconciler calls it (dispatch, observe). What it
talks to is real: a user-level OpenSSH sshd on 127.0.0.1 (key auth, pinned host
key; :class:`gastown.devcluster.sshd.UserSshd`), real tmux servers and real git.
Gas Town's ``gt`` is the stand-in ``tests/fakes/gt`` (the real one needs a Dolt
server); it logs every call to ``<town>/.fake-gt/calls.jsonl``, which is where the
gt call counts come from.

1. Dispatch: N tmux sessions running ``sleep 30``, all started at once (the pool
   bounds them to ``max_sessions`` channels), measured four ways:

   * ``executor_pooled``: ``LocalExecutor.dispatch`` with the tmux dispatcher over
     the executor's one pooled connection (the full, crash-safe dispatch: state
     directory, task file, wrapper script, then ``tmux new-session``);
   * ``executor_ssh_per_command``: the SAME dispatcher code, with every remote
     command run by its own ``ssh`` process (same concurrency bound; fewer
     sessions, as each costs nine ssh handshakes);
   * ``new_session_pooled`` / ``new_session_ssh_per_command``: the single command
     ``tmux -L SOCK new-session -d -s NAME -- sleep 30``, as a pooled channel vs
     ``ssh -p PORT -i KEY ... user@127.0.0.1 <command>``.

   Each reports the burst's total time and per-dispatch latency (which includes
   waiting for a free channel), plus the latency of dispatches done one at a time
   (an idle operator). The pool's one connection is opened before timing (an
   operator keeps it for its lifetime); its handshake time is reported apart.

2. Polling: N Polecats (gt dispatcher) spread over R rigs, each with a live tmux
   session and a git worktree in the stand-in town. One poll = ``observe()`` of
   every Polecat concurrently. Reported per poll: wall time, the operator's own CPU
   time, and the number of ``gt polecat list`` / ``gt polecat status`` calls. The
   target is a call count constant in Polecats and linear in rigs; the wall time
   also contains the stand-in gt's own listing work, which (like the real gt's)
   grows with the polecats of the rig listed. The first poll of a fresh operator
   also asks ``gt polecat status`` once per Polecat (its tmux session name, then
   remembered); it is reported apart from the steady-state polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.harness import summary_ms, write_result
from gastown.api.models import Phase, Polecat
from gastown.devcluster.sshd import UserSshd
from gastown.executors.local.dispatchers.tmux import TmuxDispatcher
from gastown.executors.local.executor import LocalExecutor
from gastown.executors.local.ssh import CommandResult, SSHPool, build_command
from gastown.executors.local.tmux import town_socket_name
from gastown.settings import Settings
from tests.fixtures.sshd import FAKE_GT, kill_tmux_server, make_polecat, make_town, settings_for

SLEEP = ["sleep", "30"]


# Transports.
class MeteredPool(SSHPool):
    """The operator's pool, counting and timing every command it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[tuple[tuple[str, ...], float]] = []

    async def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        started = time.monotonic()
        try:
            return await super().run(argv, **kwargs)
        finally:
            self.commands.append((tuple(argv), time.monotonic() - started))


class SshProcessRunner:
    """The naive transport: one ``ssh`` process (TCP, key exchange, auth) per command.

    Satisfies the executor's ``Runner`` protocol, so the tmux dispatcher runs
    unchanged on top of it. ``-F /dev/null`` keeps user and system ssh configs
    (and a ControlMaster) out, as the pool's ``config=None`` does.
    """

    def __init__(self, sshd: UserSshd, concurrency: int) -> None:
        self.gate = asyncio.Semaphore(concurrency)
        self.calls = 0
        self.prefix = [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(sshd.port),
            "-i",
            str(sshd.client_key_file),
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts_file}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            f"{sshd.user}@{sshd.host}",
        ]

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        command = build_command(argv, env=env, cwd=cwd)
        async with self.gate:
            self.calls += 1
            proc = await asyncio.create_subprocess_exec(
                *self.prefix,
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate((input or "").encode())
        status = proc.returncode if proc.returncode is not None else -1
        return CommandResult(tuple(argv), status, out.decode(errors="replace"), err.decode(errors="replace"))


# Helpers.
async def _local(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _session_count(socket: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "list-sessions", "-F", "#{session_name}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return len(out.split())


async def _timed(fn: Callable[[int], Awaitable[object]], index: int, into: list[float]) -> None:
    started = time.monotonic()
    await fn(index)
    into.append(time.monotonic() - started)


async def _measure(fn: Callable[[int], Awaitable[object]], burst: int, sequential: int) -> dict[str, Any]:
    """``burst`` calls at once, then ``sequential`` calls one after another."""
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(*(_timed(fn, i, latencies) for i in range(burst)))
    total = time.monotonic() - started
    idle: list[float] = []
    for i in range(burst, burst + sequential):
        await _timed(fn, i, idle)
    return {
        "sessions": burst,
        "total_s": round(total, 3),
        "per_s": round(burst / total, 1),
        "burst_latency": summary_ms(latencies),
        "idle_latency": summary_ms(idle),
    }


def _tmux_polecat(namespace: str, index: int) -> Polecat:
    return make_polecat(
        f"d{index:03d}",
        namespace=namespace,
        rig="bench",
        bead=f"bench-{index}",
        task="benchmark: sleep",
        local={"dispatcher": "tmux", "command": shlex.join(SLEEP)},
    )


# 1. Dispatch.
async def bench_dispatch(
    sshd: UserSshd, n: int, sequential: int, naive_n: int, naive_sequential: int
) -> dict[str, Any]:
    """``n`` sessions per variant, except the executor over ssh-per-command: ``naive_n``
    (it runs 9 ssh handshakes per dispatch, ~0.25 s of CPU each here: 100 would take minutes)."""
    run_id = uuid.uuid4().hex[:6]
    sockets = {v: f"gastown-bench-{v}-{run_id}" for v in ("ep", "es", "np", "ns")}
    ssh = settings_for(sshd)
    settings = Settings(ssh=ssh, tmux_socket=sockets["ep"], local_poll_interval=5.0)
    pool = MeteredPool(ssh)
    executor = LocalExecutor(settings, pool=pool)
    naive = SshProcessRunner(sshd, ssh.max_sessions)
    naive_tmux = TmuxDispatcher(naive, host=sshd.host, socket=sockets["es"])
    results: dict[str, Any] = {"max_sessions": ssh.max_sessions}
    try:
        started = time.monotonic()
        await executor.tmux().home()  # opens the one connection (and learns $HOME, as dispatch would)
        results["pool_connect_ms"] = round((time.monotonic() - started) * 1000, 1)
        await naive_tmux.home()

        async def executor_pooled(i: int) -> None:
            await executor.dispatch(_tmux_polecat("pooled", i))

        async def executor_ssh(i: int) -> None:
            await naive_tmux.dispatch(_tmux_polecat("sshproc", i))

        def new_session(socket: str, i: int) -> list[str]:
            return ["tmux", "-L", socket, "new-session", "-d", "-s", f"s{i:03d}", "--", *SLEEP]

        async def new_session_pooled(i: int) -> None:
            res = await pool.run(new_session(sockets["np"], i))
            assert res.ok, res.stderr

        async def new_session_ssh(i: int) -> None:
            res = await naive(new_session(sockets["ns"], i))
            assert res.ok, res.stderr

        variants: list[tuple[str, str, Callable[[int], Awaitable[None]], int, int]] = [
            ("new_session_pooled", "np", new_session_pooled, n, sequential),
            ("new_session_ssh_per_command", "ns", new_session_ssh, n, sequential),
            ("executor_pooled", "ep", executor_pooled, n, sequential),
            ("executor_ssh_per_command", "es", executor_ssh, naive_n, naive_sequential),
        ]
        for name, key, fn, burst, one_by_one in variants:
            pooled_before, naive_before = len(pool.commands), naive.calls
            figures = await _measure(fn, burst, one_by_one)
            commands = len(pool.commands) - pooled_before + naive.calls - naive_before
            figures["remote_commands_per_dispatch"] = round(commands / (burst + one_by_one), 2)
            figures["sessions_alive"] = await _session_count(sockets[key])
            if figures["sessions_alive"] != burst + one_by_one:
                raise RuntimeError(f"{name}: {figures['sessions_alive']} sessions, want {burst + one_by_one}")
            results[name] = figures
            print(
                f"  {name}: {figures['total_s']}s for {burst} ({figures['per_s']}/s), "
                f"idle p50 {figures['idle_latency']['p50_ms']}ms"
            )
        results["ssh_connections_opened_by_pool"] = pool.link(pool.default_target()).connects
        for what in ("new_session", "executor"):
            pooled, naive_figures = results[f"{what}_pooled"], results[f"{what}_ssh_per_command"]
            results[f"{what}_pooled_vs_ssh_per_command"] = {
                "throughput_x": round(pooled["per_s"] / naive_figures["per_s"], 1),
                "idle_latency_p50_x": round(
                    naive_figures["idle_latency"]["p50_ms"] / pooled["idle_latency"]["p50_ms"], 1
                ),
            }
    finally:
        await executor.aclose()
        await pool.close()
        for socket in sockets.values():
            await kill_tmux_server(socket)
    return results


# 2. Polling.
def _seed_worktree(town: Path) -> Path:
    """A clone with one commit pushed to a bare origin (blocking: run it in a thread)."""
    origin, seed = town / ".bench-origin.git", town / ".bench-seed"
    git = ["git", "-c", "user.email=b@example.invalid", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run([*git, "clone", "-q", str(origin), str(seed)], check=True, capture_output=True)
    (seed / "README.md").write_text("bench\n")
    subprocess.run([*git, "add", "README.md"], cwd=seed, check=True)
    subprocess.run([*git, "commit", "-qm", "seed"], cwd=seed, check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], cwd=seed, check=True, capture_output=True)
    return seed


def _add_polecats(town: Path, seed: Path, entries: list[tuple[str, str, str]]) -> None:
    """Polecats as gt leaves them after ``gt sling``, mid-work (an uncommitted file), made
    directly so the stand-in's 10-name pool is no limit. Mid-work also keeps the stand-in's
    per-polecat cost of a list down (one ``git status`` instead of three git commands)."""
    for rig, name, bead in entries:
        worktree = town / rig / "polecats" / name / rig  # gt: polecats/<name>/<rig>
        shutil.copytree(seed, worktree, symlinks=True)
        (worktree / "WIP.md").write_text("work in progress\n")
        state = town / ".fake-gt" / "polecats" / rig / f"{name}.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"issue": bead, "state": "working", "branch": f"polecat/{name}-1"}))


async def _start_sessions(socket: str, sessions: list[str]) -> None:
    """Live agent sessions on the town's tmux server, 50 per tmux invocation."""
    for start in range(0, len(sessions), 50):
        argv = ["tmux", "-L", socket]
        for index, session in enumerate(sessions[start : start + 50]):
            argv += ([";"] if index else []) + ["new-session", "-d", "-s", session, "sleep", "600"]
        await _local(*argv)


def _gt_call_counts(calls_file: Path, skip: int) -> tuple[int, dict[str, int]]:
    lines = calls_file.read_text().splitlines() if calls_file.exists() else []
    counts: dict[str, int] = {}
    for line in lines[skip:]:
        argv = json.loads(line)["argv"]
        key = " ".join(argv[:2])
        counts[key] = counts.get(key, 0) + 1
    return len(lines), counts


async def bench_polling(
    sshd: UserSshd, sizes: list[int], rig_counts: list[int], polls: int
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for rigs in rig_counts:
        with tempfile.TemporaryDirectory(prefix="gastown-bench-town-") as tmp:
            town = make_town(Path(tmp) / "town", {f"rig{r}": f"r{r}" for r in range(rigs)})
            socket = town_socket_name(str(town), os.path.realpath(town))
            calls_file = town / ".fake-gt" / "calls.jsonl"
            seed = await asyncio.to_thread(_seed_worktree, town)
            settings = Settings(
                ssh=settings_for(sshd),
                gt_binary=str(FAKE_GT),
                town_root=str(town),
                local_poll_interval=0.2,  # gt list answers are shared for 0.1 s
            )
            pool = MeteredPool(settings.ssh)
            executor = LocalExecutor(settings, pool=pool)
            polecats: list[Polecat] = []
            try:
                for n in sizes:
                    new = [
                        (f"rig{j % rigs}", f"P{j:04d}", f"r{j % rigs}-b{j:04d}")
                        for j in range(len(polecats), n)
                    ]
                    await asyncio.to_thread(_add_polecats, town, seed, new)
                    await _start_sessions(socket, [f"r{rig[3:]}-{name}" for rig, name, _ in new])
                    polecats += [
                        make_polecat(
                            name.lower(),
                            namespace="bench",
                            rig=rig,
                            bead=bead,
                            local={"dispatcher": "gt"},
                            status_local={"polecatName": name},
                        )
                        for rig, name, bead in new
                    ]
                    key = f"n{n}_r{rigs}"
                    runs[key] = await _polls(executor, pool, polecats, calls_file, polls)
                    runs[key] |= {"polecats": n, "rigs": rigs}
                    print(
                        f"  {n} polecats / {rigs} rigs: poll p50 {runs[key]['wall']['p50_ms']}ms, "
                        f"gt list calls/poll {runs[key]['gt_list_calls_per_poll']}"
                    )
            finally:
                await executor.aclose()
                await pool.close()
                await kill_tmux_server(socket)
    return runs


async def _polls(
    executor: LocalExecutor, pool: MeteredPool, polecats: list[Polecat], calls_file: Path, polls: int
) -> dict[str, Any]:
    ttl = executor.gt().list_ttl

    async def poll() -> tuple[float, float, dict[str, int], list[float]]:
        """Wall and CPU time of one poll, its gt calls, and its gt list commands' durations."""
        await asyncio.sleep(ttl + 0.05)  # let the shared list answer expire: every poll pays for one
        before, _ = _gt_call_counts(calls_file, 0)
        commands_before = len(pool.commands)
        cpu, started = time.process_time(), time.monotonic()
        observations = await asyncio.gather(*(executor.observe(p) for p in polecats))
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        phases = {o.phase for o in observations}
        if phases != {Phase.WORKING}:
            raise RuntimeError(f"expected every Polecat Working, saw {phases}")
        _, counts = _gt_call_counts(calls_file, before)
        list_times = [d for argv, d in pool.commands[commands_before:] if "list" in argv]
        return wall, cpu, counts, list_times

    first_wall, _, first_counts, _ = await poll()
    walls: list[float] = []
    overheads: list[float] = []
    cpus: list[float] = []
    lists: list[int] = []
    statuses: list[int] = []
    list_times: list[float] = []
    for _ in range(polls):
        wall, cpu, counts, times = await poll()
        walls.append(wall)
        overheads.append(wall - max(times, default=0.0))
        cpus.append(cpu)
        lists.append(counts.get("polecat list", 0))
        statuses.append(counts.get("polecat status", 0))
        list_times += times
    return {
        "polls": polls,
        "wall": summary_ms(walls),
        # The poll's wall time beyond its slowest gt list command: what the operator adds.
        "wall_beyond_slowest_gt_list": summary_ms(overheads),
        "operator_cpu_per_poll_ms": round(1000 * sum(cpus) / len(cpus), 1),
        "gt_list_calls_per_poll": round(sum(lists) / len(lists), 2),
        "gt_status_calls_per_poll": round(sum(statuses) / len(statuses), 2),
        "gt_list_command": summary_ms(list_times),
        "first_poll": {
            "wall_ms": round(first_wall * 1000, 1),
            "gt_calls": first_counts,
        },
    }


async def run(*, quick: bool) -> None:
    burst, sequential = (20, 5) if quick else (100, 10)
    naive_burst, naive_sequential = (5, 2) if quick else (10, 3)
    sizes = [10, 50] if quick else [10, 50, 200]
    rig_counts = [1, 5]
    polls = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="gastown-bench-sshd-") as tmp:
        async with UserSshd.start(Path(tmp) / "sshd", home=Path(tmp) / "home") as sshd:
            print("== local: dispatch")
            dispatch = await bench_dispatch(sshd, burst, sequential, naive_burst, naive_sequential)
            print("== local: polling")
            polling = await bench_polling(sshd, sizes, rig_counts, polls)
    write_result(
        "local",
        {
            "quick": quick,
            "dispatch": dispatch,
            "polling": polling,
            "method": (
                "LocalExecutor driven directly (no apiserver), real OpenSSH sshd on 127.0.0.1, real tmux "
                "and git; gt is the stand-in tests/fakes/gt. See bench/local_bench.py."
            ),
        },
    )
