"""The environment file ``gastown-operator dev`` writes for a second terminal.

A new terminal knows nothing of the dev session: ``gastown`` lives in the venv's
bin directory, ``kubectl`` and ``helm`` (on a fresh machine) only in the lab's
cache, the kubeconfig and the SSH key in the dev session's temporary directory.
One ``source <file>`` line, printed by dev, sets all of it; the file is a pure
function of those paths (quoted for the shell), so it is unit-tested without a lab.
"""

from __future__ import annotations

import shlex
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DevEnv:
    """What a terminal needs to reach a dev session."""

    kubeconfig: Path
    path_dirs: tuple[Path, ...]
    """Prepended to PATH, first wins: the venv's scripts, then the lab's binaries."""
    ssh_host: str
    ssh_port: int
    ssh_user: str
    ssh_key_file: Path
    ssh_known_hosts_file: Path

    def variables(self) -> dict[str, str]:
        """Every variable but PATH, as the operator's and the CLI's settings read them."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "GASTOWN_SSH_HOST": self.ssh_host,
            "GASTOWN_SSH_PORT": str(self.ssh_port),
            "GASTOWN_SSH_USER": self.ssh_user,
            "GASTOWN_SSH_KEY_FILE": str(self.ssh_key_file),
            "GASTOWN_SSH_KNOWN_HOSTS_FILE": str(self.ssh_known_hosts_file),
        }

    def environ(self, path: str) -> dict[str, str]:
        """What sourcing the file does to an environment whose PATH is ``path``."""
        dirs = ":".join(str(d) for d in self.path_dirs)
        return {"PATH": f"{dirs}:{path}" if path else dirs, **self.variables()}

    def render(self) -> str:
        """A POSIX shell file to ``source`` (bash, zsh, dash)."""
        dirs = ":".join(str(d) for d in self.path_dirs)
        lines = [
            "# Written by `gastown-operator dev`; valid while it runs. Use: source THIS_FILE",
            f'export PATH={shlex.quote(dirs)}:"$PATH"',
            *(f"export {key}={shlex.quote(value)}" for key, value in self.variables().items()),
            "",
        ]
        return "\n".join(lines)


def scripts_dir() -> Path:
    """Where this Python's console scripts (``gastown``, ``gastown-operator``) are installed."""
    return Path(sysconfig.get_path("scripts"))


def write_env_file(env: DevEnv, path: Path) -> Path:
    """Write the file (mode 0600: it names a private key) and return its path."""
    path.write_text(env.render())
    path.chmod(0o600)
    return path
