"""dev's example Polecats are what the webhook admits, one per mode, and name what they use."""

from __future__ import annotations

from gastown.cli import dev_examples as examples
from gastown.settings import Settings, SSHSettings
from gastown.webhook.rules import validate_object

SETTINGS = Settings(ssh=SSHSettings(host="127.0.0.1", port=2222, user="dev"))
GIT_URL = "ssh://dev@127.0.0.1:2200/tmp/gastown-dev-x/git/hello.git"


def test_both_examples_pass_the_webhook_rules_without_warnings() -> None:
    for polecat in (examples.local_polecat(), examples.kubernetes_polecat(GIT_URL)):
        verdict = validate_object(polecat, SETTINGS)
        assert verdict.allowed, verdict.errors
        assert verdict.warnings == (), verdict.warnings


def test_one_example_per_mode() -> None:
    modes = {
        p["spec"]["executionMode"] for p in (examples.local_polecat(), examples.kubernetes_polecat(GIT_URL))
    }
    assert modes == {"local", "kubernetes"}


def test_the_kubernetes_example_refers_to_the_objects_dev_makes() -> None:
    spec = examples.kubernetes_polecat(GIT_URL)["spec"]["kubernetes"]
    assert spec["gitRepository"] == GIT_URL
    assert spec["gitSecretRef"]["name"] == examples.git_secret("KEY")["metadata"]["name"]
    assert spec["knownHostsConfigMapRef"]["name"] == examples.known_hosts_configmap("x")["metadata"]["name"]
    assert spec["agentSecretRef"]["name"] == examples.agent_secret()["metadata"]["name"]
    assert examples.git_secret("KEY")["type"] == "kubernetes.io/ssh-auth"
    assert examples.git_secret("KEY")["stringData"] == {"ssh-privatekey": "KEY"}


def test_until_the_lab_has_a_real_node_the_kubernetes_example_says_it_is_simulated() -> None:
    target = examples.kubernetes_target()
    assert target.simulated
    assert "SIMULATED" in target.description
