"""The env file `gastown-operator dev` prints as one `source` line, read by a real shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gastown.cli.dev_env import DevEnv, write_env_file


def _env(tmp_path: Path) -> DevEnv:
    odd = tmp_path / "dir with 'quotes' and $HOME"
    return DevEnv(
        kubeconfig=odd / "admin.kubeconfig",
        path_dirs=(tmp_path / "venv bin", tmp_path / "lab"),
        ssh_host="127.0.0.1",
        ssh_port=2222,
        ssh_user="dev",
        ssh_key_file=odd / "key",
        ssh_known_hosts_file=odd / "known_hosts",
    )


def test_sourced_in_a_bare_shell_it_sets_every_variable_verbatim(tmp_path: Path) -> None:
    env = _env(tmp_path)
    path = write_env_file(env, tmp_path / "env.sh")
    assert path.stat().st_mode & 0o777 == 0o600  # it names a private key
    script = 'source "$1" && env'
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for key, value in env.variables().items():
        assert seen[key] == value
    assert seen["PATH"] == f"{tmp_path / 'venv bin'}:{tmp_path / 'lab'}:/usr/bin:/bin"


def test_posix_sh_reads_it_too(tmp_path: Path) -> None:
    path = write_env_file(_env(tmp_path), tmp_path / "env.sh")
    out = subprocess.run(
        ["sh", "-c", '. "$1" && printf %s "$GASTOWN_SSH_PORT"', "sh", str(path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "2222"


def test_environ_is_what_sourcing_does(tmp_path: Path) -> None:
    """``dev --shell`` gives its shell exactly what the file would set."""
    env = _env(tmp_path)
    environ = env.environ("/usr/bin:/bin")
    assert environ["PATH"] == f"{tmp_path / 'venv bin'}:{tmp_path / 'lab'}:/usr/bin:/bin"
    assert {k: v for k, v in environ.items() if k != "PATH"} == env.variables()
