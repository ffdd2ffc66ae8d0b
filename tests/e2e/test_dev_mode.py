"""``gastown-operator dev`` as a newcomer lives it, in a real terminal (issue 19).

Real parts: a pseudo-terminal (``tests/support/pty_terminal.py``: dev is its session
leader, so Ctrl-C is the byte ``\\x03`` turned into SIGINT for the foreground process
group by the kernel, and closing it is a real hangup), the test lab, OpenSSH's sshd,
tmux, git, and a fresh ``env -i`` shell that runs the printed ``source`` line. What
"leaves nothing" means is read from /proc (``tests/support/leftovers.py``): every
process that descends from dev or names its directory (the tmux servers it started
are daemons outside its tree), every TCP port they listen on, and the directory.

Simulated, and said so by dev itself: the kubernetes-mode example's Pod runs on the
lab's kwok node (no container runs) until the lab has a real node.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import uuid
from pathlib import Path

import pytest

from gastown.devcluster import binaries, tmux_servers
from tests.fixtures.lab import require_lab
from tests.fixtures.sshd import kill_tmux_server, require_sshd
from tests.support import leftovers
from tests.support.pty_terminal import PtyTerminal

pytestmark = [pytest.mark.lab, pytest.mark.sshd]

DEV = [sys.executable, "-m", "gastown.cli.operator", "dev"]
STARTING = r"starting the test lab .* in (\S+)"
READY = r"Ctrl-C stops everything and removes (\S+)"
SHELL_READY = r"leaving the shell \(exit\) stops everything and removes (\S+)"
STOPPING = r"stopping the operator, the lab"
STOP_LIMIT = 10.0  # the bound for a clean stop after Ctrl-C or a hangup
START_LIMIT = 240.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GASTOWN_", "TMUX"))}
    env.pop("KUBECONFIG", None)
    return {**env, "TERM": "xterm", "PYTHONUNBUFFERED": "1"}


async def _fresh_shell(script: str, home: Path) -> tuple[int, str]:
    """``script`` in a new login-less shell that knows nothing: no venv, no lab, no variables."""
    proc = await asyncio.create_subprocess_exec(
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME={home}",
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def _tmux(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def _clean_up(term: PtyTerminal, workdir: Path | None) -> None:
    """After a failed test: kill dev (the kernel then kills the lab and the sshds), and
    whatever would outlive it: the tmux servers it started, its directory."""
    await term.kill()
    if workdir is not None:
        tmux_servers.kill_now(workdir / "tmux")
        shutil.rmtree(workdir, ignore_errors=True)


async def _start_dev() -> tuple[PtyTerminal, Path]:
    require_lab()
    require_sshd()
    term = await PtyTerminal.start(DEV, env=_env())
    try:
        match = await term.wait_for(READY, START_LIMIT)
    except BaseException:
        started = re.search(STARTING, term.text)
        await _clean_up(term, Path(started.group(1)) if started else None)
        raise
    return term, Path(match.group(1))


async def _stops_cleanly(term: PtyTerminal, workdir: Path, stop: str) -> None:
    """Do ``stop`` to the terminal; dev must exit 0 within the bound and leave nothing."""
    made = leftovers.made_by(term.proc.pid, workdir)
    names = " ".join(p.cmdline for p in made)
    for part in ("etcd", "kube-apiserver", "kwok", "sshd", "tmux"):
        assert part in names, f"no {part} among the processes dev made: {made}"
    # Ctrl-C goes to the terminal's foreground process group: only dev may be in it.
    in_foreground = [p for p in made if p.pgrp == term.foreground_group()]
    assert in_foreground == [], f"these would get the terminal's Ctrl-C too: {in_foreground}"
    ports = leftovers.listening_ports([term.proc.pid, *(p.pid for p in made)])
    assert len(ports) >= 6, ports  # etcd x2, apiserver, 2 sshds, webhook, metrics, health

    if stop == "ctrl-c":
        term.ctrl_c()
    elif stop == "ctrl-c twice":
        term.ctrl_c()
        await term.wait_for(STOPPING, STOP_LIMIT)
        term.ctrl_c()
    elif stop == "hangup":
        term.close()
    elif stop == "sigterm":
        term.proc.send_signal(signal.SIGTERM)
    rc = await term.wait_exit(STOP_LIMIT)

    assert rc == 0, term.text
    assert leftovers.still_running(made) == [], term.text
    assert leftovers.made_by(term.proc.pid, workdir) == []
    assert leftovers.ports_still_listening(ports) == set(), term.text
    assert not workdir.exists(), term.text


async def test_printed_next_steps_work_in_a_new_terminal_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    term, workdir = await _start_dev()
    outer = f"user-terminal-{uuid.uuid4().hex[:6]}"
    try:
        shown = term.text
        # Both modes, as dev shows them; the simulated one says so.
        assert re.search(r"hello-kubernetes\s+hello\s+kubernetes\s+Working", shown), shown
        assert re.search(r"hello-local\s+hello\s+local\s+Working", shown), shown
        assert "SIMULATED" in shown, shown
        [source] = re.findall(r"^\s+(source \S+)\s*$", shown, re.MULTILINE)

        # A new terminal: nothing but /usr/bin:/bin on PATH, no variables. Paste the line.
        rc, out = await _fresh_shell(
            f"{source} && command -v gastown kubectl && gastown list && kubectl get pcat", tmp_path
        )
        assert rc == 0, out
        gastown_path, kubectl_path = out.splitlines()[:2]
        assert Path(gastown_path).parent == Path(sys.executable).parent, out
        assert Path(kubectl_path).parent == binaries.bin_dir(), f"kubectl is not the lab's: {out}"
        assert re.search(r"hello-local\s+hello\s+local\s+Working", out), out
        assert re.search(r"hello-kubernetes\s+hello\s+kubernetes\s+Working", out), out
        assert out.count("hello-") >= 4, out  # both in `gastown list` and in `kubectl get pcat`

        # The kubernetes example's git server, reached exactly as its Pod would: the key from
        # the Secret, the host key from the ConfigMap, the URL from the Polecat.
        rc, out = await _fresh_shell(
            f"{source} && cd {tmp_path} && set -e\n"
            "kubectl get secret hello-git-ssh -o jsonpath='{.data.ssh-privatekey}' | base64 -d > key\n"
            "chmod 600 key\n"
            "kubectl get configmap hello-git-known-hosts -o jsonpath='{.data.known_hosts}' > known_hosts\n"
            "url=$(kubectl get pcat hello-kubernetes -o jsonpath='{.spec.kubernetes.gitRepository}')\n"
            'GIT_SSH_COMMAND="ssh -i $PWD/key -o IdentitiesOnly=yes -o UserKnownHostsFile=$PWD/known_hosts '
            '-o StrictHostKeyChecking=yes -o BatchMode=yes" git ls-remote "$url"',
            tmp_path,
        )
        assert rc == 0, out
        assert "refs/heads/main" in out, out

        # And the attach step, in a terminal of its own: the agent's pane shows up.
        attach = (
            f"env -i PATH=/usr/bin:/bin HOME={tmp_path} TERM=xterm "
            f"bash -c '{source} && gastown attach hello-local'"
        )
        rc, out = await _tmux("-L", outer, "new-session", "-d", "-s", outer, "-x", "200", "-y", "50", attach)
        assert rc == 0, out
        screen = ""
        for _ in range(150):
            _, screen = await _tmux("-L", outer, "capture-pane", "-p", "-t", f"={outer}:")
            if "Polecat at work" in screen and "step" in screen:
                break
            await asyncio.sleep(0.1)
        assert "Say hello from a tmux session on this host." in screen, screen
        await kill_tmux_server(outer)

        await _stops_cleanly(term, workdir, "ctrl-c")
        assert "stopped in" in term.text
        assert "Unclosed" not in term.text, term.text
        assert "WARNING" not in term.text and "Traceback" not in term.text, term.text
    finally:
        await kill_tmux_server(outer)
        await _clean_up(term, workdir)


async def test_a_second_ctrl_c_during_the_stop_still_leaves_nothing() -> None:
    term, workdir = await _start_dev()
    try:
        await _stops_cleanly(term, workdir, "ctrl-c twice")
    finally:
        await _clean_up(term, workdir)


@pytest.mark.parametrize("stop", ["hangup", "sigterm"])
async def test_closing_the_terminal_or_sigterm_stops_dev_and_leaves_nothing(stop: str) -> None:
    term, workdir = await _start_dev()
    try:
        await _stops_cleanly(term, workdir, stop)
    finally:
        await _clean_up(term, workdir)


async def test_ctrl_c_while_the_lab_starts_leaves_nothing() -> None:
    require_lab()
    require_sshd()
    term = await PtyTerminal.start(DEV, env=_env())
    workdir: Path | None = None
    try:
        match = await term.wait_for(STARTING, 60)
        workdir = Path(match.group(1))
        # Wait until etcd runs at least, so the stop has something to stop.
        for _ in range(200):
            if any("etcd" in p.cmdline for p in leftovers.made_by(term.proc.pid, workdir)):
                break
            await asyncio.sleep(0.05)
        made = leftovers.made_by(term.proc.pid, workdir)
        assert any("etcd" in p.cmdline for p in made), made
        term.ctrl_c()
        rc = await term.wait_exit(STOP_LIMIT)
        assert rc == 0, term.text
        assert leftovers.still_running(made) == [], term.text
        assert leftovers.made_by(term.proc.pid, workdir) == []
        assert not workdir.exists(), term.text
    finally:
        await _clean_up(term, workdir)


async def test_dev_shell_has_the_environment_and_its_ctrl_c_reaches_only_its_own_jobs() -> None:
    """``--shell``: the shell is the terminal's foreground; exiting it stops dev."""
    require_lab()
    require_sshd()
    term = await PtyTerminal.start([*DEV, "--shell"], env={**_env(), "SHELL": "/bin/bash"})
    workdir: Path | None = None
    try:
        match = await term.wait_for(SHELL_READY, START_LIMIT)
        workdir = Path(match.group(1))
        term.type("gastown list && kubectl get pcat && echo LISTED-$((40+2))\n")
        await term.wait_for(r"LISTED-42", 60)
        listed = term.text[match.end() :]
        assert re.search(r"hello-local\s+hello\s+local\s+Working", listed), listed
        assert listed.count("hello-kubernetes") >= 2, listed  # gastown list and kubectl get pcat

        # Ctrl-C while a command runs in the shell: that command stops, dev does not.
        term.type("sleep 300\n")
        for _ in range(200):
            sleeping = [p for p in leftovers.made_by(term.proc.pid, workdir) if p.cmdline == "sleep 300"]
            if sleeping:
                break
            await asyncio.sleep(0.05)
        assert sleeping, term.text
        term.ctrl_c()
        term.type("echo STILL-$((1+2))\n")
        await term.wait_for(r"STILL-3", 30)
        assert leftovers.still_running(sleeping) == []
        assert term.proc.returncode is None, term.text

        made = leftovers.made_by(term.proc.pid, workdir)
        term.type("exit\n")
        assert await term.wait_exit(STOP_LIMIT) == 0, term.text
        assert leftovers.still_running(made) == [], term.text
        assert not workdir.exists(), term.text
    finally:
        await _clean_up(term, workdir)
