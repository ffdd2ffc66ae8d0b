"""A git server on this machine for kubernetes-mode Polecats: sshd + a bare repository.

A kubernetes-mode Polecat clones a repository over SSH with a key from a Secret and
checks the server against a known_hosts ConfigMap. ``gastown-operator dev`` makes
all three for the user: a bare repository with one commit on ``main``, a user-level
OpenSSH server (:class:`~gastown.devcluster.sshd.UserSshd`) with a host key of its
own, and a client key that may run nothing but git (``git-shell``), so the private
key that goes into a Kubernetes Secret opens no shell on this machine.

``host`` is the address Pods reach it at: 127.0.0.1 while the lab's node is kwok
(no Pod really connects), the node's bridge gateway once the lab has a real node.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from gastown.devcluster.sshd import UserSshd

# Only git's own commands, with the repository path as git-shell checks it.
GIT_ONLY = 'restrict,command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\""'
_IDENTITY = {
    "GIT_AUTHOR_NAME": "gastown dev",
    "GIT_AUTHOR_EMAIL": "dev@gastown.invalid",
    "GIT_COMMITTER_NAME": "gastown dev",
    "GIT_COMMITTER_EMAIL": "dev@gastown.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitServerError(RuntimeError):
    """git failed while making the example repository; the message has git's error."""


@dataclass
class GitServer:
    """A running git server; ``url`` is what goes into ``spec.kubernetes.gitRepository``."""

    sshd: UserSshd
    repository: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.sshd.user}@{self.sshd.host}:{self.sshd.port}{self.repository}"

    @property
    def private_key(self) -> str:
        """The client key (git only) for the ``kubernetes.io/ssh-auth`` Secret."""
        return self.sshd.client_key_file.read_text()

    @property
    def known_hosts(self) -> str:
        """The known_hosts line for the ConfigMap (host key pinned under ``[host]:port``)."""
        return self.sshd.host_key_line + "\n"

    @classmethod
    async def launch(cls, workdir: Path, *, name: str = "hello", host: str = "127.0.0.1") -> GitServer:
        """Make ``<workdir>/<name>.git`` with a README on ``main`` and serve it."""
        repository = workdir.resolve() / f"{name}.git"
        await _make_repository(repository, workdir / f"{name}-seed", name)
        sshd = await UserSshd.launch(
            workdir / "sshd", host=host, home=workdir / "home", authorized_key_options=GIT_ONLY
        )
        return cls(sshd=sshd, repository=repository)

    async def stop(self, *, timeout: float = 10.0) -> None:
        await self.sshd.stop(timeout=timeout)

    def kill_now(self) -> None:
        self.sshd.kill_now()


async def _git(*args: str, cwd: Path | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, **_IDENTITY},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise GitServerError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")


async def _make_repository(repository: Path, seed: Path, name: str) -> None:
    seed.mkdir(parents=True, exist_ok=True)
    await _git("init", "-q", "--bare", "-b", "main", str(repository))
    await _git("init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text(f"# {name}\n\nThe example repository of `gastown-operator dev`.\n")
    await _git("add", "README.md", cwd=seed)
    await _git("commit", "-q", "-m", "Start", cwd=seed)
    await _git("push", "-q", str(repository), "main", cwd=seed)
