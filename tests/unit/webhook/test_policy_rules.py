"""The operator's image and ServiceAccount policy, as the webhook's rules apply it."""

from __future__ import annotations

import copy

from gastown.settings import PodDefaults, Settings
from gastown.webhook import rules
from tests.unit.webhook.samples import k8s_polecat

RESTRICTED = Settings(
    pod=PodDefaults(
        allowed_images=["registry.example.com/agents/*", "ghcr.io/gastown/polecat-agent@sha256:*"],
        allowed_service_accounts=["agent-reader"],
    )
)


def _errors(obj: dict[str, object], settings: Settings) -> list[str]:
    return list(rules.validate_object(obj, settings).errors)


def test_an_image_outside_the_allowed_patterns_is_denied_with_the_patterns_and_who_can_change_them() -> None:
    [error] = _errors(k8s_polecat(image="docker.io/evil/miner:1.0"), RESTRICTED)
    assert error.startswith("spec.kubernetes.image: image 'docker.io/evil/miner:1.0' is not allowed")
    assert "'registry.example.com/agents/*'" in error
    assert "podDefaults.allowedImages" in error and "GASTOWN_POD_ALLOWED_IMAGES" in error


def test_images_matching_a_pattern_or_the_operator_default_are_allowed() -> None:
    for image in (
        "registry.example.com/agents/claude:1.2",
        "registry.example.com/agents/team/claude:1.2",  # fnmatch's * also crosses "/"
        "ghcr.io/gastown/polecat-agent@sha256:" + "a" * 64,
        PodDefaults().agent_image,  # the operator's own default is always allowed
    ):
        assert _errors(k8s_polecat(image=image), RESTRICTED) == [], image
    unset = k8s_polecat()
    del unset["spec"]["kubernetes"]["image"]
    assert _errors(unset, RESTRICTED) == []


def test_with_no_image_patterns_every_image_is_allowed() -> None:
    assert _errors(k8s_polecat(image="docker.io/anyone/agent:1.0"), Settings()) == []


def test_service_accounts_are_denied_unless_allowed_by_name() -> None:
    [error] = _errors(k8s_polecat(serviceAccountName="default"), Settings())
    assert error.startswith("spec.kubernetes.serviceAccountName: ServiceAccount 'default' is not allowed")
    assert "allows none" in error and "podDefaults.allowedServiceAccounts" in error
    [error] = _errors(k8s_polecat(serviceAccountName="cluster-admin-ish"), RESTRICTED)
    assert "allowed: 'agent-reader'" in error and "GASTOWN_POD_ALLOWED_SERVICE_ACCOUNTS" in error
    assert _errors(k8s_polecat(serviceAccountName="agent-reader"), RESTRICTED) == []
    assert _errors(k8s_polecat(), Settings()) == []  # no ServiceAccount: no token, always fine


def test_an_update_that_keeps_a_value_admitted_under_an_older_policy_is_allowed() -> None:
    """Tightening the policy must not keep a user from, e.g., terminating a running Polecat."""
    old = k8s_polecat(image="docker.io/evil/miner:1.0", serviceAccountName="default")
    new = copy.deepcopy(old)
    new["spec"]["desiredState"] = "Terminated"
    assert rules.validate_object(new, RESTRICTED, operation="UPDATE", old_obj=old).errors == ()
    changed = copy.deepcopy(old)
    changed["spec"]["kubernetes"]["serviceAccountName"] = "other"
    errors = rules.validate_object(changed, RESTRICTED, operation="UPDATE", old_obj=old).errors
    assert [e.split(":")[0] for e in errors] == ["spec.kubernetes.serviceAccountName"]
