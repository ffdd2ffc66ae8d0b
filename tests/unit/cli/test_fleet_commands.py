"""`gastown convoy ...` / `gastown rig ...` without a cluster: help, --dry-run, flag and file errors.

The commands against a real apiserver are in tests/integration/test_fleet_cli_on_lab.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gastown.cli.errors import ExitCode
from gastown.cli.user import main
from gastown.settings import Settings
from gastown.webhook import kinds
from tests.unit.webhook.invalid_examples import EXAMPLES

BAD_CONVOY = {
    "apiVersion": "gastown.gastown.io/v1alpha1",
    "kind": "Convoy",
    "metadata": {"name": "bad"},
    "spec": {
        "parallelism": 0,
        "beads": [{"beadID": "not a bead"}],
        "template": {"spec": {"rig": "Not_A_Label"}},
    },
}
BAD_RIG = {
    "apiVersion": "gastown.gastown.io/v1alpha1",
    "kind": "Rig",
    "metadata": {"name": "bad-rig"},
    "spec": {"maxActivePolecats": -1, "kubernetes": {"image": "Bad Image"}},
}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("GASTOWN_SSH_HOST", "GASTOWN_TOWN_ROOT", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def test_help_lists_the_fleet_commands(runner: CliRunner) -> None:
    top = runner.invoke(main, ["--help"])
    assert "convoy" in top.output and "rig" in top.output
    convoy = runner.invoke(main, ["convoy", "--help"])
    assert convoy.exit_code == 0
    for command in ("create", "list", "describe", "watch"):
        assert command in convoy.output
    rig = runner.invoke(main, ["rig", "--help"])
    for command in ("create", "list", "describe"):
        assert command in rig.output
    watch = " ".join(runner.invoke(main, ["convoy", "watch", "--help"]).output.split())
    assert "0 every bead of every watched Convoy is Done" in watch and "6 gave up (--timeout)" in watch


def test_convoy_create_dry_run_prints_what_the_flags_make(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "convoy", "create", "batch-1", "--rig", "gastown", "--bead", "gt-abc12=Fix the login bug",
            "--bead", "gt-def34", "--task", "Default", "--parallelism", "2", "--failure-policy", "Stop",
            "--max-failures", "2", "--ttl", "600", "--mode", "local", "--dry-run",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(result.stdout)
    assert body["kind"] == "Convoy" and body["metadata"] == {"name": "batch-1"}
    assert body["spec"]["beads"] == [
        {"beadID": "gt-abc12", "task": "Fix the login bug"},
        {"beadID": "gt-def34"},
    ]
    assert body["spec"]["template"] == {
        "spec": {"rig": "gastown", "executionMode": "local", "task": "Default"}
    }
    assert (body["spec"]["parallelism"], body["spec"]["failurePolicy"], body["spec"]["maxFailures"]) == (
        2,
        "Stop",
        2,
    )
    assert body["spec"]["ttlSecondsAfterFinished"] == 600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["convoy", "create", "--rig", "r", "--count", "2", "--task", "t"],
            "give the Convoy's NAME (or -f FILE)",
        ),
        (["convoy", "create", "c", "--count", "2", "--task", "t"], "give --rig"),
        (
            ["convoy", "create", "c", "--rig", "r", "--bead", "gt-1", "--count", "2"],
            "--bead (one per bead) or --count",
        ),
        (
            ["convoy", "create", "c", "--rig", "r", "--task", "t", "--task-file", "-"],
            "--task or --task-file, not both",
        ),
        (
            ["convoy", "create", "-f", "x.yaml", "--rig", "r", "--parallelism", "3"],
            "-f creates the Convoys as the file says; leave out --rig, --parallelism",
        ),
        (
            ["convoy", "create", "c", "--rig", "Not_A_Label", "--count", "2", "--task", "t"],
            "the Convoy these flags make is invalid: spec.template.spec.rig: 'Not_A_Label' is not allowed",
        ),
        (["convoy", "create", "c", "--rig", "r", "--count", "0", "--task", "t"], "--count"),
        (["rig", "create"], "give the Rig's NAME (or -f FILE)"),
        (["rig", "create", "r", "--mode", "local", "--repo", "git@h:x"], "--repo: kubernetes-mode flags"),
        (["rig", "create", "-f", "x.yaml", "--max-active", "2"], "leave out --max-active"),
    ],
)
def test_flag_mistakes_are_usage_errors_that_say_what_to_do(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in " ".join(result.output.split())


def test_rig_create_dry_run(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        [
            "rig", "create", "webapp", "--mode", "kubernetes", "--repo", "git@github.com:me/app.git",
            "--git-secret", "deploy", "--agent-secret", "agent", "--max-active", "3", "--dry-run",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["spec"] == {
        "executionMode": "kubernetes",
        "maxActivePolecats": 3,
        "kubernetes": {
            "gitRepository": "git@github.com:me/app.git",
            "gitSecretRef": {"name": "deploy"},
            "agentSecretRef": {"name": "agent"},
        },
    }


def test_create_from_a_bad_file_creates_nothing_and_prints_the_webhooks_messages(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "convoy.yaml"
    path.write_text(yaml.safe_dump(BAD_CONVOY))
    # No kubeconfig at all: reaching the cluster would be exit 4, so exit 1 proves nothing was sent.
    result = runner.invoke(
        main, ["--kubeconfig", str(tmp_path / "none"), "convoy", "create", "-f", str(path)]
    )
    assert result.exit_code == ExitCode.FAILED, result.output
    expected = kinds.validate_convoy(BAD_CONVOY, Settings()).errors
    assert expected and result.stdout.splitlines() == [f"{path}: convoy/bad: {e}" for e in expected]
    assert result.stderr == "gastown: nothing was created: 3 problems (above); fix the file and run again\n"
    other = tmp_path / "rig.yaml"
    other.write_text(yaml.safe_dump(BAD_RIG))
    wrong_kind = runner.invoke(main, ["convoy", "create", "-f", str(other)])
    assert wrong_kind.exit_code == ExitCode.USAGE
    assert wrong_kind.stderr.startswith(
        f"gastown: {other}: rig/bad-rig: not a Convoy; this command creates Convoys"
    )


def test_validate_checks_rigs_and_convoys_with_the_webhooks_rules(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump_all([BAD_CONVOY, BAD_RIG, {"apiVersion": "v1", "kind": "ConfigMap"}]))
    result = runner.invoke(main, ["validate", "-f", str(path)])
    assert result.exit_code == ExitCode.FAILED
    convoy_errors = kinds.validate_convoy(BAD_CONVOY, Settings()).errors
    rig_errors = kinds.validate_rig(BAD_RIG, Settings()).errors
    assert rig_errors and rig_errors[0].startswith("spec.maxActivePolecats: -1 is out of range")
    assert result.stdout.splitlines() == [
        *(f"{path}: convoy/bad: {e}" for e in convoy_errors),
        *(f"{path}: rig/bad-rig: {e}" for e in rig_errors),
    ]
    assert "configmap #3: skipped (not a Polecat, Rig or Convoy)" in result.stderr


@pytest.mark.parametrize("directory", ["fleet-kubernetes", "fleet-local"])
def test_the_fleet_examples_are_valid(runner: CliRunner, directory: str) -> None:
    result = runner.invoke(main, ["validate", "-f", str(EXAMPLES / directory)])
    assert result.exit_code == 0, result.output
    kinds_seen = sorted(line.split(": ")[1].split("/")[0] for line in result.stdout.splitlines())
    assert kinds_seen == ["convoy", "polecat", "rig"]
    assert all(line.endswith(": valid") for line in result.stdout.splitlines())


def test_fleet_commands_without_a_cluster_are_one_line_exit_4(runner: CliRunner, tmp_path: Path) -> None:
    for args in (["convoy", "list"], ["rig", "describe", "x"], ["convoy", "watch"]):
        result = runner.invoke(main, ["--kubeconfig", str(tmp_path / "missing"), *args])
        assert result.exit_code == ExitCode.UNREACHABLE, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("gastown: no kubeconfig found at")
