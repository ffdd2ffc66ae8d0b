"""The serving metrics: names, labels and what each hook moves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gastown.metrics import ServingMetrics, denial_field, program_name


def value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    found = registry.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


def test_webhook_hooks_move_the_counters() -> None:
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry).webhook
    with metrics.in_flight():
        assert value(registry, "gastown_webhook_requests_in_flight") == 1
    assert value(registry, "gastown_webhook_requests_in_flight") == 0
    metrics.on_request("CREATE", 200, 0.003)
    metrics.on_request("CREATE", 200, 0.004)
    metrics.on_request("", 400, 0.001)
    metrics.on_denied("CREATE", ["spec.kubernetes.tolerations.0.value: must be empty", "spec.rig: bad"])
    assert value(registry, "gastown_webhook_requests_total", {"operation": "CREATE", "code": "200"}) == 2
    assert value(registry, "gastown_webhook_requests_total", {"operation": "UNKNOWN", "code": "400"}) == 1
    assert value(registry, "gastown_webhook_request_duration_seconds_count", {"operation": "CREATE"}) == 2
    denied = {"operation": "CREATE", "field": "spec.kubernetes.tolerations.*.value"}
    assert value(registry, "gastown_webhook_denials_total", denied) == 1


def test_ssh_hooks_move_the_counters() -> None:
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry).ssh
    metrics.on_connect(ok=True)
    metrics.on_connect(ok=False)
    metrics.on_failure("SSHAuthFailed")
    with metrics.channel():
        assert value(registry, "gastown_ssh_channels_in_use") == 1
    metrics.on_command("/usr/bin/tmux", "ok", 0.01)
    metrics.on_command("gt", "nonzero", 2.0)
    assert value(registry, "gastown_ssh_connections_total", {"result": "success"}) == 1
    assert value(registry, "gastown_ssh_connections_total", {"result": "failure"}) == 1
    assert value(registry, "gastown_ssh_connections_open") == 1
    metrics.on_disconnect()
    assert value(registry, "gastown_ssh_connections_open") == 0
    assert value(registry, "gastown_ssh_commands_total", {"program": "tmux", "result": "ok"}) == 1
    assert value(registry, "gastown_ssh_command_duration_seconds_count", {"program": "gt"}) == 1
    assert value(registry, "gastown_ssh_failures_total", {"reason": "SSHAuthFailed"}) == 1


def test_two_instances_on_separate_registries_do_not_collide() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    ServingMetrics(first).webhook.on_request("CREATE", 200, 0.1)
    ServingMetrics(second)
    assert value(second, "gastown_webhook_requests_total", {"operation": "CREATE", "code": "200"}) == 0


def test_exposition_names_follow_conventions() -> None:
    registry = CollectorRegistry()
    ServingMetrics(registry)
    text = generate_latest(registry).decode()
    for name in (
        "gastown_webhook_requests_total",
        "gastown_webhook_request_duration_seconds",
        "gastown_webhook_denials_total",
        "gastown_ssh_connections_total",
        "gastown_ssh_commands_total",
        "gastown_ssh_failures_total",
    ):
        assert f"# HELP {name} " in text


def test_label_helpers() -> None:
    assert denial_field("metadata.name: too long") == "metadata.name"
    assert denial_field("spec.local.x.12: bad") == "spec.local.x.*"
    assert denial_field("local mode is disabled: ...") == "other"
    assert denial_field("no colon") == "other"
    assert program_name("/opt/gt/bin/gt") == "gt"
