"""The `gastown` commands that need no cluster, run through click's CliRunner.

Cluster-facing behaviour (list, describe, logs, sling against a real apiserver) is in
tests/integration/test_cli_on_lab.py; here: help, validate, sling --dry-run, usage
errors, and the one-line errors for a missing or unreachable cluster.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gastown.cli.errors import ExitCode
from gastown.cli.user import main
from tests.unit.webhook.invalid_examples import EXAMPLES, all_examples, good_examples

CREATE_TIME_INVALID = [e for e in all_examples() if not e.update]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("GASTOWN_SSH_HOST", "GASTOWN_TOWN_ROOT", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def test_help_documents_exit_codes(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("3 not found", "4 cannot reach the cluster", "2 usage error", "6 gave up waiting"):
        assert words in text
    for command in ("list", "describe", "logs", "attach", "validate", "sling"):
        assert command in result.output


@pytest.mark.parametrize("path", good_examples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_validate_accepts_the_good_examples(runner: CliRunner, path: Path) -> None:
    result = runner.invoke(main, ["validate", "-f", str(path.parent)])
    assert result.exit_code == 0, result.output
    assert f"{path}:" in result.output
    if "kind: Polecat" in path.read_text():
        assert f"{path}: polecat/" in result.stdout and ": valid" in result.stdout
    else:
        assert f"{path}: " in result.stderr and "skipped (not a Polecat, Rig or Convoy)" in result.stderr


@pytest.mark.parametrize("example", CREATE_TIME_INVALID, ids=lambda e: e.id)
def test_validate_rejects_each_invalid_example(runner: CliRunner, example: object) -> None:
    from tests.unit.webhook.invalid_examples import InvalidExample  # noqa: PLC0415

    assert isinstance(example, InvalidExample)
    args = ["validate", "-f", str(example.path)]
    if example.local_mode_disabled:
        args.append("--no-local-mode")
    if example.id == "webhook-local-gt-needs-town-root":
        args += ["--town-root", ""]
    result = runner.invoke(main, args)
    assert result.exit_code == ExitCode.FAILED, result.output
    lines = result.stdout.splitlines()
    assert lines, "each problem must be printed"
    # One problem per line, each naming the file and the object.
    assert all(line.startswith(f"{example.path}: polecat/") for line in lines)
    assert example.webhook_message in result.stdout or example.message in result.stdout


def test_validate_install_dependent_checks_are_permissive_by_default(runner: CliRunner) -> None:
    path = EXAMPLES / "invalid" / "webhook-local-mode-disabled.yaml"
    assert runner.invoke(main, ["validate", "-f", str(path)]).exit_code == 0
    assert runner.invoke(main, ["validate", "-f", str(path), "--no-local-mode"]).exit_code == 1


def test_validate_reports_every_problem_on_its_own_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "Bad_Name"},
        # (kubernetes mode without spec.kubernetes is no error any more: the Rig may supply it)
        "spec": {"rig": "Not A Label", "beadID": "gt-1", "executionMode": "kubernetes", "local": {}},
    }
    good = {**bad, "metadata": {"name": "fine"}, "spec": {"rig": "r", "beadID": "gt-1"}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([{"apiVersion": "v1", "kind": "ConfigMap"}, bad, good]))
    result = runner.invoke(main, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    problems = [line for line in lines if "polecat/Bad_Name" in line]
    assert len(problems) >= 3
    assert any(": spec.rig: " in line for line in problems)
    assert any(": metadata.name: " in line for line in problems)
    assert any("spec.local is forbidden" in line for line in problems)
    assert f"{path}: polecat/fine: valid" in lines
    assert "skipped (not a Polecat, Rig or Convoy)" in result.stderr


def test_validate_stdin_and_broken_yaml(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", "-f", "-"], input="kind: Polecat\nspec: [\n")
    assert result.exit_code == 1
    assert result.stdout.startswith("<stdin>: not valid YAML at line")
    result = runner.invoke(main, ["validate", "-f", "-"], input="apiVersion: v1\nkind: Secret\n")
    assert result.exit_code == 1
    assert "no Polecat found" in result.stdout


def test_validate_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip() == f"gastown: {tmp_path / 'nope.yaml'}: no such file"


def test_sling_dry_run_prints_the_polecat(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "sling",
            "gt-abc12",
            "gastown",
            "--repo",
            "git@github.com:me/app.git",
            "--git-secret",
            "g",
            "--dry-run",
        ],
        input=None,
    )
    assert result.exit_code == 0, result.output
    obj = yaml.safe_load(result.stdout)
    assert obj["metadata"]["generateName"] == "gastown-gt-abc12-"
    assert obj["spec"]["executionMode"] == "kubernetes"


def test_sling_task_file_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(main, ["sling", "b", "r", "--task-file", "-", "--dry-run"], input="do $(this)\n")
    assert yaml.safe_load(result.stdout)["spec"]["task"] == "do $(this)\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sling", "b", "r", "--mode", "local", "--repo", "x"], "--repo only apply to --mode kubernetes"),
        (["sling", "b", "r", "--label", "novalue"], "use KEY=VALUE"),
        (["sling", "b", "r", "--task", "a", "--task-file", "-"], "not both"),
        (["sling", "b"], "Missing argument 'RIG'"),
        (["list", "-o", "xml"], "Invalid value for '-o'"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str], words: str) -> None:
    result = runner.invoke(main, args, input="")
    assert result.exit_code == ExitCode.USAGE
    assert words in result.stderr


def test_no_kubeconfig_is_one_line_exit_4(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--kubeconfig", str(tmp_path / "missing"), "list"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("gastown: no kubeconfig found at")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _kubeconfig(tmp_path: Path, server: str, *, context: str = "c", namespace: str | None = None) -> Path:
    ctx: dict[str, str] = {"cluster": "x", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "x", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": ctx}],
                "current-context": context,
            }
        )
    )
    return path


@pytest.mark.parametrize("command", [["list"], ["describe", "x"], ["logs", "x"], ["attach", "x", "--print"]])
def test_unreachable_cluster_is_one_line_exit_4(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    server = f"https://127.0.0.1:{_closed_port()}"
    kubeconfig = _kubeconfig(tmp_path, server)
    result = runner.invoke(main, ["--kubeconfig", str(kubeconfig), *command])
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"gastown: cannot reach the cluster at {server}")
    assert "Traceback" not in result.output


def test_unknown_context_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, "https://127.0.0.1:1")
    result = runner.invoke(main, ["list", "--kubeconfig", str(kubeconfig), "--context", "nope"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert result.stderr.count("\n") == 1
    assert "context 'nope'" in result.stderr
