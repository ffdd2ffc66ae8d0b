"""``gastown-operator``: flags map onto Settings; ``crd`` prints the generated CRD."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import gastown.controller.manager as manager_module
from gastown.cli import operator as operator_cli
from gastown.settings import Settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the manager with a recorder of the Settings it would run with."""
    seen: list[Settings] = []

    class FakeManager:
        def __init__(self, settings: Settings) -> None:
            seen.append(settings)

        async def run(self) -> None:
            return None

    monkeypatch.setattr(manager_module, "Manager", FakeManager)
    monkeypatch.setattr("gastown.logging_setup.configure_logging", lambda *args, **kwargs: None)
    return seen


def _run(args: list[str], env: dict[str, Any] | None = None) -> Any:
    return CliRunner().invoke(operator_cli.main, args, env=env, catch_exceptions=False)


def test_flags_map_onto_settings(captured: list[Settings]) -> None:
    result = _run(
        [
            "run",
            "--namespace",
            "a",
            "--namespace",
            "b",
            "--workers",
            "7",
            "--no-leader-elect",
            "--no-webhook",
            "--metrics-port",
            "9090",
            "--health-port",
            "9091",
            "--log-format",
            "json",
        ]
    )
    assert result.exit_code == 0, result.output
    [settings] = captured
    assert settings.namespaces == ["a", "b"]
    assert settings.workers == 7
    assert settings.leader_election is False
    assert settings.webhook_enabled is False
    assert (settings.metrics_port, settings.health_port) == (9090, 9091)
    assert settings.log_format == "json"


def test_unset_flags_keep_environment_values(captured: list[Settings]) -> None:
    result = _run(["run"], env={"GASTOWN_WORKERS": "3", "GASTOWN_LEADER_ELECTION": "false"})
    assert result.exit_code == 0, result.output
    [settings] = captured
    assert settings.workers == 3
    assert settings.leader_election is False
    assert settings.namespaces == []


def test_invalid_setting_is_one_clear_line(captured: list[Settings]) -> None:
    result = CliRunner().invoke(operator_cli.main, ["run", "--workers", "0"])
    assert result.exit_code == 2
    assert "invalid setting workers" in result.output
    assert "Traceback" not in result.output
    assert captured == []


def test_crd_prints_every_crd() -> None:
    result = _run(["crd"])
    assert result.exit_code == 0
    crds = [d for d in yaml.safe_load_all(result.output) if d]
    assert {d["kind"] for d in crds} == {"CustomResourceDefinition"}
    assert sorted(d["metadata"]["name"] for d in crds) == [
        "convoys.gastown.gastown.io",
        "polecats.gastown.gastown.io",
        "rigs.gastown.gastown.io",
    ]


def test_a_dead_task_exits_non_zero_for_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager raised TaskDiedError (after its graceful stop): exit 3, one line, no traceback."""
    from gastown.controller.supervisor import TaskDiedError  # noqa: PLC0415

    class DyingManager:
        def __init__(self, settings: Settings) -> None:
            del settings

        async def run(self) -> None:
            raise TaskDiedError("informer-pods", "was cancelled")

    monkeypatch.setattr(manager_module, "Manager", DyingManager)
    monkeypatch.setattr("gastown.logging_setup.configure_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(operator_cli.main, ["run"])
    assert result.exit_code == operator_cli.EXIT_TASK_DIED == 3
    assert "task 'informer-pods' was cancelled unexpectedly; exiting for a restart" in result.output
    assert "Traceback" not in result.output
