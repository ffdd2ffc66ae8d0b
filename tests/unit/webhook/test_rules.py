"""The Polecat validation rules, on the examples and on targeted cases."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gastown.api import crd
from gastown.settings import PodDefaults, Settings, SSHSettings
from gastown.webhook import rules
from tests.unit.webhook.invalid_examples import InvalidExample, all_examples, good_examples
from tests.unit.webhook.samples import k8s_polecat, local_polecat

LOCAL_ON = Settings(ssh=SSHSettings(host="127.0.0.1"))
# The freeze tests change serviceAccountName too: the policy must allow it, so that what they
# see is the freeze alone.
FREEZE_SETTINGS = Settings(
    ssh=SSHSettings(host="127.0.0.1"), pod=PodDefaults(allowed_service_accounts=["admin"])
)
LOCAL_OFF = Settings()


def _settings_for(example: InvalidExample) -> Settings:
    return LOCAL_OFF if example.local_mode_disabled else LOCAL_ON


def _verdict_for(example: InvalidExample) -> rules.Verdict:
    settings = _settings_for(example)
    if example.update:
        old = copy.deepcopy(example.original)
        if example.dispatched:
            old["status"] = {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"}
        return rules.validate_object(example.rejected, settings, operation="UPDATE", old_obj=old)
    return rules.validate_object(example.rejected, settings)


# --- the examples ------------------------------------------------------------------------
@pytest.mark.parametrize("path", good_examples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_good_examples_pass_without_warnings(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc.get("kind") == "Polecat":
            verdict = rules.validate_object(doc, LOCAL_ON)
            assert verdict.errors == ()
            assert verdict.warnings == ()


@pytest.mark.parametrize("example", all_examples(), ids=lambda e: e.id)
def test_each_invalid_example_is_denied_with_its_message(example: InvalidExample) -> None:
    verdict = _verdict_for(example)
    assert not verdict.allowed
    assert any(example.webhook_message in e for e in verdict.errors), verdict.errors


@pytest.mark.parametrize("example", [e for e in all_examples() if e.update], ids=lambda e: e.id)
def test_update_examples_start_from_a_valid_object(example: InvalidExample) -> None:
    assert rules.validate_object(example.original, _settings_for(example)).allowed


def test_every_invalid_example_names_a_unique_object() -> None:
    names = [e.rejected["metadata"]["name"] for e in all_examples()]
    assert len(names) == len(set(names))


def test_examples_cover_each_rule_family() -> None:
    by = {e.rejected_by for e in all_examples()}
    assert by == {"schema", "webhook"}
    schema_examples = [e for e in all_examples() if e.rejected_by == "schema"]
    for cel in crd.SPEC_VALIDATIONS:
        assert any(e.message in cel["message"] for e in schema_examples), cel["message"]


# --- every problem at once -----------------------------------------------------------------
def test_all_problems_are_reported_together() -> None:
    obj = k8s_polecat(
        gitRepository="http://example.com/x.git",
        image="Not Valid",
        agentSecretRef=None,
        resources={"requests": {"cpu": "4"}, "limits": {"cpu": "2", "memory": "lots"}},
    )
    obj["metadata"]["name"] = "bad.name"
    obj["spec"]["kubernetes"] = {k: v for k, v in obj["spec"]["kubernetes"].items() if v is not None}
    errors = rules.validate_object(obj, LOCAL_ON).errors
    fields = [e.split(":")[0] for e in errors]
    assert fields == [
        "metadata.name",
        "spec.kubernetes.gitRepository",
        "spec.kubernetes.agentSecretRef",
        "spec.kubernetes.image",
        "spec.kubernetes.resources.limits.memory",
        "spec.kubernetes.resources.requests.cpu",
    ]


def test_schema_errors_come_with_the_cross_field_rules() -> None:
    obj = local_polecat()
    obj["spec"]["rig"] = "Bad_Rig"
    obj["spec"]["executionMode"] = "local"  # explicit: an unset mode may be the Rig's
    obj["spec"]["kubernetes"] = {"gitRepository": "git@github.com:x/y.git"}
    errors = rules.validate_object(obj, LOCAL_OFF).errors
    assert any(e.startswith("spec.rig: 'Bad_Rig' is not allowed; use lowercase") for e in errors)
    assert crd.MSG_KUBERNETES_FORBIDDEN in errors
    assert any("local mode is disabled" in e for e in errors)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, "object: must be a Polecat object"),
        ({"metadata": {"name": "x"}}, "spec: is required"),
        ({"metadata": {"name": "x"}, "spec": []}, "spec: must be an object"),
        (
            {"metadata": {"name": "x"}, "spec": {"rig": 1, "beadID": "b"}},
            "spec.rig: 1 is not allowed; must be a string",
        ),
        ({"metadata": {"name": "x"}, "spec": {"rig": "r"}}, "spec.beadID: is required"),
        (
            {"metadata": {}, "spec": {"rig": "r", "beadID": "b", "local": {"townRoot": "/x"}}},
            "metadata.name: is required",
        ),
        (
            {"metadata": {"name": "x"}, "spec": {"rig": "r", "beadID": "b", "desiredState": "Paused"}},
            "spec.desiredState: 'Paused' is not allowed; use one of 'Working' or 'Terminated'",
        ),
        (
            {"metadata": {"name": "x"}, "spec": {"rig": "r" * 64, "beadID": "b"}},
            "spec.rig: is too long; at most 63 characters are allowed",
        ),
    ],
)
def test_malformed_objects_become_messages(obj: Any, expected: str) -> None:
    verdict = rules.validate_object(obj, LOCAL_ON)
    assert any(e.startswith(expected) for e in verdict.errors), verdict.errors


# --- kubernetes mode -------------------------------------------------------------------------
def test_https_repository_needs_no_secret_but_warns_about_push() -> None:
    verdict = rules.validate_object(
        k8s_polecat(gitRepository="https://github.com/o/r.git", gitSecretRef=None), LOCAL_ON
    )
    assert verdict.allowed
    assert any("pushing results needs an SSH URL" in w for w in verdict.warnings)


def test_ssh_without_known_hosts_warns() -> None:
    obj = k8s_polecat()
    del obj["spec"]["kubernetes"]["knownHostsConfigMapRef"]
    verdict = rules.validate_object(obj, LOCAL_ON)
    assert verdict.allowed
    assert verdict.warnings[0].startswith("spec.kubernetes.knownHostsConfigMapRef: is not set")


def test_unpinned_image_long_deadline_and_large_resources_warn() -> None:
    obj = k8s_polecat(
        image="busybox",
        activeDeadlineSeconds=7 * 24 * 3600,
        resources={"requests": {"cpu": "64", "memory": "1Ti"}, "limits": {"cpu": "64", "memory": "1Ti"}},
    )
    verdict = rules.validate_object(obj, LOCAL_ON)
    assert verdict.allowed
    joined = "\n".join(verdict.warnings)
    assert "spec.kubernetes.image: has no tag" in joined
    assert "spec.kubernetes.activeDeadlineSeconds: 604800s is over 24 hours" in joined
    assert "spec.kubernetes.resources.requests.cpu: 64 is very large" in joined
    assert "spec.kubernetes.resources.limits.memory: 1Ti is very large" in joined


def test_requests_compare_exactly() -> None:
    ok = k8s_polecat(
        resources={"requests": {"cpu": "0.1", "memory": "1Gi"}, "limits": {"cpu": "100m", "memory": "1024Mi"}}
    )
    assert rules.validate_object(ok, LOCAL_ON).allowed
    bad = k8s_polecat(resources={"requests": {"memory": "1.1Gi"}, "limits": {"memory": "1Gi"}})
    assert not rules.validate_object(bad, LOCAL_ON).allowed


def test_request_over_the_operators_default_limit_warns() -> None:
    obj = k8s_polecat(resources={"requests": {"cpu": "3"}})
    verdict = rules.validate_object(obj, LOCAL_ON)
    assert verdict.allowed
    assert any("default limit 2" in w for w in verdict.warnings)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"limits": {"gpu": "1"}}, "spec.kubernetes.resources.limits.gpu: is not a resource name"),
        ({"limits": {"example.com/gpu": "1"}}, None),
        ({"limits": {"hugepages-2Mi": "1Gi"}}, None),
        ({"limits": {"cpu": "-1"}}, "is negative"),
        ({"limits": {"Bad_Domain/gpu": "1"}}, "invalid prefix"),
    ],
)
def test_resource_names_and_amounts(resources: dict[str, Any], expected: str | None) -> None:
    errors = rules.validate_object(k8s_polecat(resources=resources), LOCAL_ON).errors
    if expected is None:
        assert errors == ()
    else:
        assert any(expected in e for e in errors), errors


def test_pod_passthrough_fields() -> None:
    obj = k8s_polecat(
        nodeSelector={"kubernetes.io/arch": "amd64", "bad key!": "x", "ok": "-bad"},
        tolerations=[
            {"operator": "Equal", "value": "x"},
            {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"},
        ],
        runtimeClassName="gVisor",
        serviceAccountName="agent",
    )
    allowed = LOCAL_ON.model_copy(update={"pod": PodDefaults(allowed_service_accounts=["agent"])})
    errors = rules.validate_object(obj, allowed).errors
    assert [e.split(":")[0] for e in errors] == [
        "spec.kubernetes.nodeSelector",
        "spec.kubernetes.nodeSelector[ok]",
        "spec.kubernetes.tolerations[0].operator",
        "spec.kubernetes.tolerations[1].effect",
        "spec.kubernetes.runtimeClassName",
    ]


def test_default_work_branch_is_checked_with_the_name() -> None:
    assert rules.validate_object(k8s_polecat(), LOCAL_ON).allowed  # polecat/p1


# --- local mode ---------------------------------------------------------------------------------
def test_local_mode_disabled_message_says_how_to_enable() -> None:
    errors = rules.validate_object(local_polecat(), LOCAL_OFF).errors
    assert len(errors) == 1
    assert errors[0].startswith("spec.executionMode: local mode is disabled in this operator install")
    assert "GASTOWN_SSH_HOST" in errors[0]
    assert "executionMode: kubernetes" in errors[0]


def test_default_town_root_from_settings() -> None:
    obj = local_polecat()
    del obj["spec"]["local"]["townRoot"]
    assert not rules.validate_object(obj, LOCAL_ON).allowed
    with_root = Settings(ssh=SSHSettings(host="h"), town_root="/srv/gt")
    assert rules.validate_object(obj, with_root).allowed
    del obj["spec"]["local"]  # no local section at all: dispatcher gt by default
    assert rules.validate_object(obj, with_root).allowed


def test_fields_of_the_other_dispatcher_warn() -> None:
    verdict = rules.validate_object(local_polecat(command="claude", workDir="/srv/w"), LOCAL_ON)
    assert verdict.allowed
    assert len(verdict.warnings) == 2
    tmux = rules.validate_object(local_polecat(dispatcher="tmux", command="claude"), LOCAL_ON)
    assert tmux.allowed
    assert tmux.warnings == ("spec.local.townRoot: is only used by dispatcher gt and is ignored with tmux",)


def test_task_with_nul_is_refused_and_other_text_is_fine() -> None:
    obj = local_polecat()
    obj["spec"]["task"] = "Fix `rm -rf /`; $(whoami) && echo 'quotes' \"too\"\nnew line"
    assert rules.validate_object(obj, LOCAL_ON).allowed
    obj["spec"]["task"] = "a\x00b"
    assert rules.validate_object(obj, LOCAL_ON).errors[0].startswith("spec.task: contains a NUL")


def test_bead_with_dots_ok_but_not_double_dots() -> None:
    obj = local_polecat()
    obj["spec"]["beadID"] = "gt-abc12.1"
    assert rules.validate_object(obj, LOCAL_ON).allowed
    obj["spec"]["beadID"] = "gt..x"
    assert not rules.validate_object(obj, LOCAL_ON).allowed


def test_generate_name() -> None:
    obj = local_polecat()
    obj["metadata"] = {"generateName": "fix-"}
    assert rules.validate_object(obj, LOCAL_ON).allowed
    obj["metadata"] = {"generateName": "x" * 51}
    assert (
        rules.validate_object(obj, LOCAL_ON).errors[0].startswith("metadata.generateName: is 51 characters")
    )


# --- updates ----------------------------------------------------------------------------------
def test_update_that_leaves_spec_alone_is_allowed_even_if_invalid_now() -> None:
    old = local_polecat()
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    # local mode was disabled after creation: the operator must still remove its finalizer
    assert rules.validate_object(new, LOCAL_OFF, operation="UPDATE", old_obj=old) == rules.Verdict()


def test_deleting_object_is_never_blocked() -> None:
    old = local_polecat()
    new = copy.deepcopy(old)
    new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    new["spec"]["beadID"] = "whatever"
    assert rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).allowed


def test_install_dependent_checks_only_warn_on_update() -> None:
    old = local_polecat()
    new = copy.deepcopy(old)
    new["spec"]["desiredState"] = "Terminated"
    verdict = rules.validate_object(new, LOCAL_OFF, operation="UPDATE", old_obj=old)
    assert verdict.allowed
    assert any("local mode is disabled" in w for w in verdict.warnings)


def test_bead_and_git_source_may_change_before_dispatch() -> None:
    old = k8s_polecat()
    new = copy.deepcopy(old)
    new["spec"]["beadID"] = "gt-other"
    new["spec"]["kubernetes"]["gitBranch"] = "develop"
    assert rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).allowed
    old["status"] = {"phase": "Pending"}
    assert rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).allowed


@pytest.mark.parametrize(
    "status", [{"phase": "Working"}, {"phase": "Pending", "startTime": "2026-01-01T00:00:00Z"}]
)
def test_bead_and_git_source_are_frozen_once_dispatched(status: dict[str, str]) -> None:
    old = k8s_polecat()
    old["status"] = status
    new = copy.deepcopy(old)
    new["spec"]["beadID"] = "gt-other"
    new["spec"]["kubernetes"]["gitBranch"] = "develop"  # old one defaulted to main
    errors = rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).errors
    assert [e.split(":")[0] for e in errors] == ["spec.beadID", "spec.kubernetes.gitBranch"]
    assert "it was 'main'" in errors[1]


DISPATCHED = {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("section", "change", "field", "was"),
    [
        ("local", {"dispatcher": "tmux", "command": "claude"}, "spec.local.dispatcher", "'gt'"),
        ("local", {"townRoot": "/srv/other"}, "spec.local.townRoot", "'/srv/gt'"),
        ("local", {"workDir": "/tmp/w"}, "spec.local.workDir", "not set"),
        ("kubernetes", {"workBranch": "other"}, "spec.kubernetes.workBranch", "not set"),
        (
            "kubernetes",
            {"image": "ghcr.io/x/y:2"},
            "spec.kubernetes.image",
            "'ghcr.io/gastown/polecat-agent:0.1.0'",
        ),
        ("kubernetes", {"activeDeadlineSeconds": 60}, "spec.kubernetes.activeDeadlineSeconds", "3600"),
        ("kubernetes", {"serviceAccountName": "admin"}, "spec.kubernetes.serviceAccountName", "not set"),
        ("kubernetes", {"resources": {"limits": {"cpu": "2"}}}, "spec.kubernetes.resources", "not set"),
        ("kubernetes", {"tolerations": [{"operator": "Exists"}]}, "spec.kubernetes.tolerations", "not set"),
    ],
)
def test_fields_that_steer_the_work_are_frozen_once_dispatched(
    section: str, change: dict[str, Any], field: str, was: str
) -> None:
    old = local_polecat() if section == "local" else k8s_polecat()
    new = copy.deepcopy(old)
    new["spec"][section].update(change)
    assert rules.validate_object(
        new, FREEZE_SETTINGS, operation="UPDATE", old_obj=old
    ).allowed  # before dispatch
    old["status"] = dict(DISPATCHED)
    errors = rules.validate_object(new, FREEZE_SETTINGS, operation="UPDATE", old_obj=old).errors
    assert errors[0] == crd.dispatched_immutable_message(field, "Working", was)
    assert errors[0].startswith(
        f"{field}: is immutable once the Polecat is dispatched (phase Working); it was "
    )
    assert "delete the Polecat and create a new one" in errors[0]


@pytest.mark.parametrize("field", ["task", "agent"])
def test_task_and_agent_are_frozen_once_dispatched(field: str) -> None:
    old = local_polecat()
    old["status"] = dict(DISPATCHED)
    new = copy.deepcopy(old)
    new["spec"][field] = "other"
    errors = rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).errors
    assert [e.split(":")[0] for e in errors] == [f"spec.{field}"]


def test_only_desired_state_may_change_once_dispatched() -> None:
    old = k8s_polecat()
    old["status"] = dict(DISPATCHED)
    new = copy.deepcopy(old)
    new["spec"]["desiredState"] = "Terminated"
    new["spec"]["kubernetes"]["gitBranch"] = "main"  # the default, spelled out: not a change
    assert rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).allowed


@pytest.mark.parametrize("status", [DISPATCHED, {"phase": "Terminated"}, {"phase": "Done"}])
def test_a_stopped_polecat_does_not_resume(status: dict[str, str]) -> None:
    old = local_polecat()
    old["spec"]["desiredState"] = "Terminated"
    old["status"] = dict(status)
    new = copy.deepcopy(old)
    new["spec"]["desiredState"] = "Working"
    errors = rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).errors
    assert errors == (crd.MSG_NO_RESUME,)
    assert "Create a new Polecat" in errors[0] and "spec.kubernetes.gitBranch" in errors[0]


def test_terminated_before_dispatch_may_go_back_to_working() -> None:
    old = local_polecat()
    old["spec"]["desiredState"] = "Terminated"
    old["status"] = {"phase": "Pending"}
    new = copy.deepcopy(old)
    new["spec"]["desiredState"] = "Working"
    assert rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).allowed


def test_cel_and_webhook_freeze_the_same_fields() -> None:
    cel_fields = {r["fieldPath"] for r in crd.OBJECT_VALIDATIONS}
    frozen = {".spec." + ".".join(p) for p in crd.dispatched_frozen_fields()}
    webhook_only = {".spec." + ".".join(p) for p in crd.WEBHOOK_ONLY_FROZEN}
    assert cel_fields == (frozen - webhook_only) | {".spec.desiredState"}


def test_mode_and_rig_are_always_immutable() -> None:
    old = local_polecat()
    old["spec"]["executionMode"] = "local"
    new = copy.deepcopy(old)
    new["spec"]["rig"] = "other"
    errors = rules.validate_object(new, LOCAL_ON, operation="UPDATE", old_obj=old).errors
    assert errors == (crd.MSG_RIG_IMMUTABLE,)
    # Left out means "the Rig's": setting it later is a change of mode, as in the CEL rule.
    unset = local_polecat()
    errors = rules.validate_object(old, LOCAL_ON, operation="UPDATE", old_obj=unset).errors
    assert errors == (crd.MSG_MODE_IMMUTABLE,)


def test_references_for_the_server() -> None:
    polecat = rules.parse_polecat(k8s_polecat(agentSecretRef={"name": "k", "key": "token"}))
    assert polecat is not None
    refs = rules.references(polecat)
    assert [(r.kind, r.name, r.key, r.secret_type) for r in refs] == [
        ("Secret", "repo-deploy-key", "ssh-privatekey", "kubernetes.io/ssh-auth"),
        ("ConfigMap", "git-known-hosts", "known_hosts", None),
        ("Secret", "k", "token", None),
    ]
    local = rules.parse_polecat(local_polecat())
    assert local is not None
    assert rules.references(local) == []
    assert rules.parse_polecat("nope") is None
