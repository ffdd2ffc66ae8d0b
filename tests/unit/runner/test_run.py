"""``gastown-agent run`` with real git: the agent runs, everything is committed and pushed.

The agent commands are small Python scripts standing in for the LLM agent (Claude
Code cannot run here): they edit files the way an agent would, and fail on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gastown.runner.termination import MAX_BYTES, RunReport
from tests.unit.runner.gitrepos import agent_env, gastown_agent, git, make_origin, rev, script, show

EDITING_AGENT = """\
import os, pathlib, sys
task = sys.stdin.read()
pathlib.Path("TASK_SEEN_ON_STDIN.txt").write_text(task)
pathlib.Path("TASK_SEEN_IN_FILE.txt").write_text(pathlib.Path(os.environ["GASTOWN_TASK_FILE"]).read_text())
pathlib.Path("README.md").write_text("# app\\n\\nfixed\\n")
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
"""


def cloned(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str]]:
    origin = make_origin(tmp_path)
    env = agent_env(tmp_path, origin, **extra)
    step = gastown_agent("clone", env)
    assert step.returncode == 0, step.stderr
    return origin, env


def test_success_commits_and_pushes(tmp_path: Path) -> None:
    origin, env = cloned(
        tmp_path,
        GASTOWN_TASK="Fix the README.",
        GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", EDITING_AGENT),
        GASTOWN_GIT_AUTHOR_NAME="Polecat Fix",
        GASTOWN_GIT_AUTHOR_EMAIL="fix@example.invalid",
    )
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    report = step.report
    assert report == {
        "branch": "polecat/fix-login",
        "commit": rev(origin, "polecat/fix-login"),
        "pushed": True,
        "agentExitCode": 0,
        "message": f"the agent succeeded; committed its changes and pushed {report['commit'][:12]} "
        "to polecat/fix-login",
    }
    assert show(origin, "polecat/fix-login", "README.md") == "# app\n\nfixed"
    assert show(origin, "polecat/fix-login", "TASK_SEEN_ON_STDIN.txt") == "Fix the README."
    assert git("--git-dir", str(origin), "log", "-1", "--format=%an <%ae>|%s", "polecat/fix-login") == (
        "Polecat Fix <fix@example.invalid>|gt-abc12: work of polecat fix-login"
    )
    assert rev(origin, "main") != report["commit"]  # main is untouched
    assert f"gastown-agent run: {step.termination}" in step.stdout


def test_agent_failure_after_edits_still_pushes_and_reports_failure(tmp_path: Path) -> None:
    origin, env = cloned(
        tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", EDITING_AGENT), STAND_IN_EXIT="3"
    )
    step = gastown_agent("run", env)
    assert step.returncode == 1
    assert step.report["agentExitCode"] == 3
    assert step.report["pushed"] is True
    assert step.report["commit"] == rev(origin, "polecat/fix-login")
    assert step.report["message"].startswith("the agent exited with code 3; committed its changes and pushed")
    assert show(origin, "polecat/fix-login", "README.md") == "# app\n\nfixed"
    body = git("--git-dir", str(origin), "log", "-1", "--format=%b", "polecat/fix-login")
    assert "The agent failed" in body


def test_no_changes_still_pushes_the_branch(tmp_path: Path) -> None:
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=json.dumps(["true"]))
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    assert step.report["commit"] == rev(origin, "main") == rev(origin, "polecat/fix-login")
    assert "changed no files" in step.report["message"]


def test_agent_commits_of_its_own_are_pushed(tmp_path: Path) -> None:
    agent = (
        "import subprocess, pathlib\n"
        "pathlib.Path('a.txt').write_text('a')\n"
        "subprocess.run(['git', 'add', 'a.txt'], check=True)\n"
        "subprocess.run(['git', '-c', 'user.name=A', '-c', 'user.email=a@a', 'commit', '-qm', 'mine'],\n"
        "               check=True)\n"
        "pathlib.Path('b.txt').write_text('b')\n"
    )
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", agent))
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    log = git("--git-dir", str(origin), "log", "--format=%s", "polecat/fix-login").splitlines()
    assert log[:2] == ["gt-abc12: work of polecat fix-login", "mine"]
    assert show(origin, "polecat/fix-login", "b.txt") == "b"


@pytest.mark.parametrize(
    "hostile",
    [
        "$(touch {marker})",
        "`touch {marker}`",
        "'; touch {marker}; echo '",
        '"; touch {marker}; echo "',
        "--version\n-rf {marker}",
        "x" * 70000 + " $(touch {marker})",
    ],
)
def test_hostile_task_is_inert(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "pwned"
    task = hostile.format(marker=marker)
    origin, env = cloned(
        tmp_path, GASTOWN_TASK=task, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", EDITING_AGENT)
    )
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    assert not marker.exists()
    assert show(origin, "polecat/fix-login", "TASK_SEEN_ON_STDIN.txt") == task.rstrip("\n")
    assert show(origin, "polecat/fix-login", "TASK_SEEN_IN_FILE.txt") == task.rstrip("\n")


def test_task_from_a_file(tmp_path: Path) -> None:
    task_file = tmp_path / "task.md"
    task_file.write_text("from a file")
    origin, env = cloned(
        tmp_path,
        GASTOWN_TASK_FILE=str(task_file),
        GASTOWN_AGENT_COMMAND=script(tmp_path, "a.py", EDITING_AGENT),
    )
    assert gastown_agent("run", env).returncode == 0
    assert show(origin, "polecat/fix-login", "TASK_SEEN_ON_STDIN.txt") == "from a file"


def test_an_agent_that_ignores_stdin_is_fine(tmp_path: Path) -> None:
    """A task larger than a pipe buffer must not block when the agent never reads it."""
    task_file = tmp_path / "task.md"
    task_file.write_text("y" * 300_000)
    _origin, env = cloned(
        tmp_path, GASTOWN_TASK_FILE=str(task_file), GASTOWN_AGENT_COMMAND=json.dumps(["true"])
    )
    assert gastown_agent("run", env).returncode == 0


def test_missing_agent_binary_is_reported(tmp_path: Path) -> None:
    _origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=json.dumps(["/nonexistent/claude", "-p"]))
    step = gastown_agent("run", env)
    assert step.returncode == 1
    assert step.report["agentExitCode"] == 127
    assert "'/nonexistent/claude' could not start" in step.report["message"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("not json", "is not JSON"), ('"claude"', "JSON list"), ("[]", "JSON list"), ('["", "x"]', "JSON list")],
)
def test_bad_agent_command_is_a_usage_error(tmp_path: Path, value: str, problem: str) -> None:
    _origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=value)
    step = gastown_agent("run", env)
    assert step.returncode == 2
    assert problem in step.report["message"]
    assert step.report["agentExitCode"] == -1 and step.report["pushed"] is False


def test_without_a_clone_the_agent_does_not_run(tmp_path: Path) -> None:
    env = agent_env(tmp_path, tmp_path / "origin.git", GASTOWN_AGENT_COMMAND=json.dumps(["true"]))
    step = gastown_agent("run", env)
    assert step.returncode == 1
    assert step.report["agentExitCode"] == -1
    assert "is not a git clone" in step.report["message"]


def test_rejected_push_is_reported(tmp_path: Path) -> None:
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", EDITING_AGENT))
    other = tmp_path / "someone-else"
    git("clone", "--quiet", str(origin), str(other))
    (other / "theirs.txt").write_text("theirs")
    git("add", ".", cwd=other)
    git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet", "-m", "theirs", cwd=other)
    git("push", "--quiet", "origin", "HEAD:refs/heads/polecat/fix-login", cwd=other)
    step = gastown_agent("run", env)
    assert step.returncode == 1
    assert step.report["pushed"] is False
    assert "origin rejected the push to polecat/fix-login" in step.report["message"]
    assert "NOT pushed" in step.report["message"]


def test_push_refused_by_a_hook_says_what_the_remote_said_without_retrying(tmp_path: Path) -> None:
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", EDITING_AGENT))
    hook = origin / "hooks" / "pre-receive"
    calls = tmp_path / "hook-calls"
    hook.write_text(
        f"#!/bin/sh\necho called >> '{calls}'\n"
        "echo 'policy: polecat branches need a review ticket' >&2\nexit 1\n"
    )
    hook.chmod(0o755)
    step = gastown_agent("run", env)
    assert step.returncode == 1
    assert step.report["pushed"] is False
    message = step.report["message"]
    assert "origin refused the push to polecat/fix-login: pre-receive hook declined" in message, message
    assert "policy: polecat branches need a review ticket" in message, message
    assert calls.read_text().splitlines() == ["called"], "a refusal by the remote was retried"


def test_stale_index_lock_left_by_the_agent_does_not_block_saving(tmp_path: Path) -> None:
    agent = (
        "import pathlib\n"
        "pathlib.Path('x.txt').write_text('x')\n"
        "pathlib.Path('.git/index.lock').write_text('')\n"
    )
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", agent))
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    assert show(origin, "polecat/fix-login", "x.txt") == "x"


def _start_run(env: dict[str, str], ready: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gastown.runner.agent", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stand-in agent never started"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize(("ignore_sigterm", "code"), [(False, 128 + 15), (True, 128 + 9)])
def test_sigterm_stops_the_agent_and_saves_its_work(tmp_path: Path, ignore_sigterm: bool, code: int) -> None:
    """What happens at activeDeadlineSeconds or Pod deletion: the kubelet sends SIGTERM."""
    ready = tmp_path / "agent-started"
    agent = (
        "import pathlib, signal, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
        + "pathlib.Path('work.txt').write_text('in progress')\n"
        + f"pathlib.Path({str(ready)!r}).write_text('')\n"
        + "time.sleep(600)\n"
    )
    origin, env = cloned(
        tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", agent), GASTOWN_AGENT_STOP_GRACE="0.5"
    )
    proc = _start_run(env, ready)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    report = json.loads(Path(env["GASTOWN_TERMINATION_LOG"]).read_text())
    assert report["agentExitCode"] == code
    assert report["pushed"] is True
    assert "stopped because the Pod is terminating" in report["message"]
    assert show(origin, "polecat/fix-login", "work.txt") == "in progress"


def test_report_fits_the_termination_message_limit() -> None:
    huge = RunReport("polecat/x", "a" * 40, False, 1, "é" * 10_000)
    text = huge.to_json()
    assert len(text.encode()) <= MAX_BYTES
    data = json.loads(text)
    assert data["branch"] == "polecat/x" and data["commit"] == "a" * 40 and data["pushed"] is False
    assert data["message"].endswith("…")
    small = RunReport("b", None, True, 0, "ok")
    assert json.loads(small.to_json()) == {
        "branch": "b",
        "commit": None,
        "pushed": True,
        "agentExitCode": 0,
        "message": "ok",
    }


def test_runner_imports_only_the_standard_library() -> None:
    """The agent image installs the package with --no-deps; the runner must not need any."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import gastown.runner.agent\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'gastown'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unwritable_termination_log_is_not_fatal(tmp_path: Path) -> None:
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=json.dumps(["true"]))
    env["GASTOWN_TERMINATION_LOG"] = str(tmp_path / "no" / "such" / "dir" / "log")
    proc = subprocess.run(
        [sys.executable, "-m", "gastown.runner.agent", "run"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "cannot write termination message" in proc.stderr
    assert os.path.exists(origin)


def test_hooks_left_by_the_agent_cannot_block_saving(tmp_path: Path) -> None:
    agent = (
        "import os, pathlib\n"
        "for hook in ('pre-commit', 'commit-msg', 'pre-push'):\n"
        "    path = pathlib.Path('.git/hooks') / hook\n"
        "    path.write_text('#!/bin/sh\\nexit 1\\n')\n"
        "    os.chmod(path, 0o755)\n"
        "pathlib.Path('y.txt').write_text('y')\n"
    )
    origin, env = cloned(tmp_path, GASTOWN_AGENT_COMMAND=script(tmp_path, "agent.py", agent))
    step = gastown_agent("run", env)
    assert step.returncode == 0, step.stderr
    assert show(origin, "polecat/fix-login", "y.txt") == "y"
