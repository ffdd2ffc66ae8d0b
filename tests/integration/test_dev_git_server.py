"""dev's git server for kubernetes mode: a real sshd, a bare repository, a git-only key.

Real: OpenSSH's sshd and ssh client (strict known_hosts), git on both ends. The clone
uses exactly what dev puts into the Secret and the ConfigMap.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

from gastown.devcluster.gitserver import GitServer
from tests.fixtures.sshd import require_sshd


async def _run(*argv: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_the_secret_and_known_hosts_clone_the_repository_and_open_no_shell(tmp_path: Path) -> None:
    require_sshd()
    server = await GitServer.launch(tmp_path / "git")
    try:
        # What the Pod's clone gets: the Secret's key and the ConfigMap's known_hosts.
        key = tmp_path / "ssh-privatekey"
        key.write_text(server.private_key)
        key.chmod(0o600)
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(server.known_hosts)
        ssh = [
            "ssh",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
        env = {**os.environ, "GIT_SSH_COMMAND": shlex.join(ssh)}
        rc, out = await _run("git", "clone", "-q", server.url, str(tmp_path / "clone"), env=env)
        assert rc == 0, out
        assert "gastown-operator dev" in (tmp_path / "clone" / "README.md").read_text()

        # The key is for git only: no shell on this machine.
        rc, out = await _run(
            *ssh, "-p", str(server.sshd.port), f"{server.sshd.user}@127.0.0.1", "id", env=env
        )
        assert rc != 0
        assert "uid=" not in out, out
    finally:
        await server.stop()
    assert not server.sshd.running
