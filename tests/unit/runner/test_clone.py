"""``gastown-agent clone`` with real git on local bare repositories."""

from __future__ import annotations

from pathlib import Path

from tests.unit.runner.gitrepos import agent_env, gastown_agent, git, make_origin, rev


def test_clone_creates_the_work_branch(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    env = agent_env(tmp_path, origin)
    step = gastown_agent("clone", env)
    assert step.returncode == 0, step.stderr
    ws = Path(env["GASTOWN_WORKSPACE"])
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=ws) == "polecat/fix-login"
    assert git("rev-parse", "HEAD", cwd=ws) == rev(origin, "main")
    assert step.termination == ""  # nothing to report on success


def test_clone_of_another_branch(tmp_path: Path) -> None:
    origin = make_origin(tmp_path, branches=("main", "release/1.2"))
    env = agent_env(tmp_path, origin, GASTOWN_GIT_BRANCH="release/1.2")
    assert gastown_agent("clone", env).returncode == 0
    ws = Path(env["GASTOWN_WORKSPACE"])
    assert git("rev-parse", "HEAD", cwd=ws) == rev(origin, "release/1.2")


def test_clone_continues_an_existing_work_branch(tmp_path: Path) -> None:
    """An earlier Pod pushed partial work: the new one builds on it (pushes fast-forward)."""
    origin = make_origin(tmp_path)
    other = tmp_path / "earlier-pod"
    git("clone", "--quiet", str(origin), str(other))
    (other / "partial.txt").write_text("half done\n")
    git("add", ".", cwd=other)
    git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet", "-m", "partial", cwd=other)
    git("push", "--quiet", "origin", "HEAD:refs/heads/polecat/fix-login", cwd=other)
    env = agent_env(tmp_path, origin)
    assert gastown_agent("clone", env).returncode == 0
    ws = Path(env["GASTOWN_WORKSPACE"])
    assert (ws / "partial.txt").read_text() == "half done\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=ws) == "polecat/fix-login"


def test_clone_is_idempotent(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    env = agent_env(tmp_path, origin)
    assert gastown_agent("clone", env).returncode == 0
    again = gastown_agent("clone", env)
    assert again.returncode == 0, again.stderr


def test_missing_branch_is_explained(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    step = gastown_agent("clone", agent_env(tmp_path, origin, GASTOWN_GIT_BRANCH="nope"))
    assert step.returncode == 1
    assert step.termination == f"branch nope (spec.kubernetes.gitBranch) does not exist in {origin}"
    assert step.stderr.rstrip().endswith(step.termination)  # the log's last line says it too


def test_local_paths_are_not_allowed_by_default(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    env = agent_env(tmp_path, origin)
    del env["GASTOWN_GIT_ALLOW_PROTOCOL"]
    step = gastown_agent("clone", env)
    assert step.returncode == 1
    assert step.termination == (
        f"the transport of {origin} is not allowed (allowed: ssh, https): use an ssh:// or https:// URL"
    )


def test_option_like_repository_is_a_url_not_an_option(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    env = agent_env(tmp_path, tmp_path, GASTOWN_GIT_REPOSITORY=f"--upload-pack=touch {marker}")
    step = gastown_agent("clone", env)
    assert step.returncode == 1
    assert not marker.exists()


def test_bad_branch_names_are_refused_before_git_runs(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    step = gastown_agent("clone", agent_env(tmp_path, origin, GASTOWN_WORK_BRANCH="-f"))
    assert step.returncode == 1
    assert step.termination.startswith("workBranch '-f' is not a valid branch name")


def test_missing_mounted_key_is_explained(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    key = tmp_path / "mnt" / "ssh-privatekey"
    step = gastown_agent("clone", agent_env(tmp_path, origin, GASTOWN_SSH_KEY_SOURCE=str(key)))
    assert step.returncode == 1
    assert step.termination.startswith(f"{key} is missing")


def test_non_empty_workspace_is_not_overwritten(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    env = agent_env(tmp_path, origin)
    ws = Path(env["GASTOWN_WORKSPACE"])
    ws.mkdir(parents=True)
    (ws / "precious.txt").write_text("keep me")
    step = gastown_agent("clone", env)
    assert step.returncode == 1 and "not empty" in step.termination
    assert (ws / "precious.txt").read_text() == "keep me"
