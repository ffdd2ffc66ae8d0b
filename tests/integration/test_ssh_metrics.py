"""SSH metrics move as commands run over a real sshd: connections, commands, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gastown.executors.base import UserError
from gastown.executors.local.ssh import SSHPool
from gastown.metrics import ServingMetrics
from gastown.settings import SSHSettings

pytestmark = pytest.mark.sshd


async def test_commands_and_failures_are_counted(ssh_settings: SSHSettings, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    observer = ServingMetrics(registry).ssh

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    async with SSHPool(ssh_settings, observer=observer) as pool:
        assert (await pool.run(["true"])).ok
        assert not (await pool.run(["sh", "-c", "exit 3"])).ok
        assert value("gastown_ssh_connections_open") == 1
    assert value("gastown_ssh_connections_total", result="success") == 1
    assert value("gastown_ssh_commands_total", program="true", result="ok") == 1
    assert value("gastown_ssh_commands_total", program="sh", result="nonzero") == 1
    assert value("gastown_ssh_connections_open") == 0
    assert value("gastown_ssh_channels_in_use") == 0

    wrong_key = tmp_path / "not-authorized"
    import asyncssh  # noqa: PLC0415

    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(wrong_key))
    bad = ssh_settings.model_copy(update={"key_file": wrong_key})
    async with SSHPool(bad, observer=observer) as pool:
        with pytest.raises(UserError):
            await pool.run(["true"])
    assert value("gastown_ssh_failures_total", reason="SSHAuthFailed") == 1
    assert value("gastown_ssh_connections_total", result="failure") == 1
