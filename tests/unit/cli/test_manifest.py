"""What `sling` creates and how `validate` reads files."""

from __future__ import annotations

import re

import pytest

from gastown.api.models import Polecat
from gastown.cli.manifest import (
    MAX_GENERATE_NAME,
    ManifestError,
    SlingRequest,
    build_polecat,
    effective_mode,
    generate_name,
    read_documents,
)


def test_a_bare_sling_leaves_the_mode_to_the_rig() -> None:
    """No --mode and no mode flags: spec.executionMode is left out (the Rig's, else local)."""
    body = build_polecat(SlingRequest(bead="gt-abc12", rig="gastown", task="fix it"))
    assert body == {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"generateName": "gastown-gt-abc12-"},
        "spec": {"rig": "gastown", "beadID": "gt-abc12", "task": "fix it"},
    }
    Polecat.model_validate({**body, "metadata": {"name": "x"}})


def test_mode_local_is_written_when_asked_for() -> None:
    body = build_polecat(SlingRequest(bead="gt-abc12", rig="gastown", mode="local"))
    assert body["spec"] == {"rig": "gastown", "beadID": "gt-abc12", "executionMode": "local"}


def test_kubernetes_flags_imply_kubernetes_mode() -> None:
    request = SlingRequest(
        bead="gt-1",
        rig="r",
        name="p1",
        repo="git@github.com:me/app.git",
        git_secret="git-ssh",
        agent_secret="anthropic:token",
        known_hosts_configmap="hosts",
        branch="dev",
        image="registry.example/agent:1",
        labels={"team": "core"},
    )
    body = build_polecat(request)
    assert body["metadata"] == {"name": "p1", "labels": {"team": "core"}}
    assert body["spec"]["executionMode"] == "kubernetes"
    assert body["spec"]["kubernetes"] == {
        "gitRepository": "git@github.com:me/app.git",
        "gitBranch": "dev",
        "gitSecretRef": {"name": "git-ssh"},
        "knownHostsConfigMapRef": {"name": "hosts"},
        "agentSecretRef": {"name": "anthropic", "key": "token"},
        "image": "registry.example/agent:1",
    }
    Polecat.model_validate(body)


def test_kubernetes_mode_without_a_repo_leaves_it_to_the_rig() -> None:
    body = build_polecat(SlingRequest(bead="gt-1", rig="r", mode="kubernetes", image="registry.example/a:1"))
    assert body["spec"]["executionMode"] == "kubernetes"
    assert body["spec"]["kubernetes"] == {"image": "registry.example/a:1"}
    bare = build_polecat(SlingRequest(bead="gt-1", rig="r", mode="kubernetes"))
    assert "kubernetes" not in bare["spec"]


@pytest.mark.parametrize(
    ("request_", "flag"),
    [
        (SlingRequest(bead="b", rig="r", mode="local", repo="x"), "--repo"),
        (SlingRequest(bead="b", rig="r", mode="kubernetes", repo="x", dispatcher="tmux"), "--dispatcher"),
        (SlingRequest(bead="b", rig="r", repo="x", command="claude"), "--repo"),
    ],
)
def test_flags_of_the_other_mode_are_named(request_: SlingRequest, flag: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(flag)):
        effective_mode(request_)


def test_local_flags_become_spec_local() -> None:
    body = build_polecat(
        SlingRequest(bead="b", rig="r", dispatcher="tmux", command="claude -p", work_dir="/srv")
    )
    assert body["spec"]["local"] == {"dispatcher": "tmux", "command": "claude -p", "workDir": "/srv"}


@pytest.mark.parametrize(
    ("rig", "bead"),
    [("gastown", "gt-ABC.12_x"), ("r" * 63, "b" * 63), ("r", "--")],
)
def test_generate_name_is_a_dns_label_prefix_that_fits(rig: str, bead: str) -> None:
    name = generate_name(rig, bead)
    assert name.endswith("-")
    assert len(name) <= MAX_GENERATE_NAME
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name.rstrip("-") or "x")
    # With the 5 characters the apiserver appends it is still a valid Polecat name.
    assert len(name + "abcde") <= 55


def test_read_documents_multi_document_and_list() -> None:
    text = """
apiVersion: v1
kind: Secret
metadata: {name: s}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: gastown.gastown.io/v1alpha1, kind: Polecat, metadata: {name: a}}
- {kind: Polecat, metadata: {generateName: g-}}
"""
    docs = read_documents(text)
    assert [d.label for d in docs] == ["secret/s", "polecat/a", "polecat/g-*"]
    assert [d.is_polecat for d in docs] == [False, True, True]
    assert [d.index for d in docs] == [1, 2, 3]


def test_read_documents_reports_the_line_of_a_yaml_error() -> None:
    with pytest.raises(ManifestError, match=r"not valid YAML at line 3, column 9: mapping values"):
        read_documents("kind: Polecat\nspec:\n  rig: a: b\n")


def test_other_groups_kind_polecat_is_not_ours() -> None:
    (doc,) = read_documents("apiVersion: other.io/v1\nkind: Polecat\n")
    assert not doc.is_polecat
