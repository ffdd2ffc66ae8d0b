"""Rigs validated with the Polecat's rules and messages; Polecats validated against their Rig."""

from __future__ import annotations

import copy
from typing import Any

from gastown.api import crd
from gastown.settings import PodDefaults, Settings, SSHSettings
from gastown.webhook import kinds, rules
from tests.unit.webhook.samples import k8s_polecat, local_polecat

SETTINGS = Settings(ssh=SSHSettings(host="127.0.0.1"))
STRICT = Settings(ssh=SSHSettings(host="127.0.0.1"), pod=PodDefaults(allowed_images=["ghcr.io/gastown/*"]))


def rig(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Rig",
        "metadata": {"name": "gastown", "namespace": "ns", "generation": 1},
        "spec": spec,
    }


RIG_K8S = {
    "gitRepository": "git@github.com:example/gastown.git",
    "gitSecretRef": {"name": "repo-deploy-key"},
    "knownHostsConfigMapRef": {"name": "git-known-hosts"},
    "agentSecretRef": {"name": "agent-api-key"},
    "image": "ghcr.io/gastown/polecat-agent:0.1.0",
}


def bare_polecat(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "p1", "namespace": "ns"},
        "spec": {"rig": "gastown", "beadID": "gt-abc12", **spec},
    }


# -- Rigs ---------------------------------------------------------------------------------


def test_a_rigs_values_get_the_polecats_messages() -> None:
    """Same rules, same words, same field paths as a Polecat's mode sections."""
    bad_k8s = {"gitRepository": "ftp://nope", "gitBranch": "main", "image": "Not Valid"}
    bad_local = {"dispatcher": "tmux", "command": "echo one\necho two"}
    errors = kinds.validate_rig(rig(kubernetes=bad_k8s, local=bad_local), SETTINGS).errors
    polecat_errors = rules.validate_object(k8s_polecat(**bad_k8s), SETTINGS).errors
    local_errors = rules.validate_object(local_polecat(**bad_local), SETTINGS).errors
    for field in ("spec.kubernetes.gitRepository", "spec.kubernetes.image"):
        mine = [e for e in errors if e.startswith(field + ":")]
        assert mine and mine == [e for e in polecat_errors if e.startswith(field + ":")]
    assert [e for e in errors if e.startswith("spec.local.command:")] == [
        e for e in local_errors if e.startswith("spec.local.command:")
    ]


def test_nothing_is_required_in_a_rig() -> None:
    """Defaults are partial: what a Rig leaves out is each Polecat's to set."""
    verdict = kinds.validate_rig(
        rig(executionMode="kubernetes", kubernetes={"image": "ghcr.io/x/y:1"}), SETTINGS
    )
    assert verdict.allowed, verdict.errors
    assert kinds.validate_rig(rig(local={"dispatcher": "tmux"}), SETTINGS).allowed


def test_a_rig_warns_about_per_polecat_and_missing_ssh_secret() -> None:
    verdict = kinds.validate_rig(
        rig(kubernetes={"gitRepository": "git@github.com:x/y.git", "workBranch": "b"}), SETTINGS
    )
    assert verdict.allowed
    assert any(w.startswith("spec.kubernetes.workBranch: is per Polecat") for w in verdict.warnings)
    assert any(w.startswith("spec.kubernetes.gitSecretRef: is not set") for w in verdict.warnings)


def test_a_rigs_image_is_held_to_the_policy() -> None:
    verdict = kinds.validate_rig(rig(kubernetes={"image": "docker.io/evil:1"}), STRICT)
    assert verdict.errors and verdict.errors[0].startswith("spec.kubernetes.image: image 'docker.io/evil:1'")
    # An UPDATE that leaves the image as it was is not refused for it (tightened policy).
    old = rig(kubernetes={"image": "docker.io/evil:1"})
    new = copy.deepcopy(old)
    new["spec"]["maxActivePolecats"] = 2
    assert kinds.validate_rig(new, STRICT, operation="UPDATE", old_obj=old).allowed


# -- Polecats against their Rig -------------------------------------------------------------


def test_a_polecat_completed_by_its_rig_is_allowed() -> None:
    lookup = rules.RigLookup(rig(executionMode="kubernetes", kubernetes=RIG_K8S))
    verdict = rules.validate_object(bare_polecat(), SETTINGS, rig=lookup)
    assert verdict.allowed, verdict.errors


def test_kubernetes_required_is_checked_against_the_rig() -> None:
    lookup = rules.RigLookup(rig(kubernetes={"image": "ghcr.io/gastown/a:1"}))
    errors = rules.validate_object(bare_polecat(executionMode="kubernetes"), SETTINGS, rig=lookup).errors
    assert errors[0] == (
        "spec.kubernetes.gitRepository: is required with executionMode kubernetes and neither the Polecat "
        "nor Rig 'gastown' sets it: set it on the Polecat or in the Rig's spec.kubernetes.gitRepository"
    )
    assert crd.MSG_KUBERNETES_REQUIRED not in errors  # said once, Rig-aware


def test_a_bad_value_from_the_rig_says_it_came_from_the_rig() -> None:
    lookup = rules.RigLookup(
        rig(executionMode="kubernetes", kubernetes={**RIG_K8S, "image": "docker.io/evil:1"})
    )
    errors = rules.validate_object(bare_polecat(), STRICT, rig=lookup).errors
    assert len(errors) == 1
    assert errors[0].startswith("spec.kubernetes.image: image 'docker.io/evil:1' is not allowed")
    assert errors[0].endswith(
        "(this value comes from Rig 'gastown', spec.kubernetes.image: fix it there or set it on the Polecat)"
    )
    # The Polecat's own image wins, and is its own.
    own = bare_polecat(kubernetes={"image": "ghcr.io/gastown/polecat-agent:0.2.0"})
    assert rules.validate_object(own, STRICT, rig=lookup).allowed


def test_the_rigs_mode_forbids_the_polecats_other_section() -> None:
    lookup = rules.RigLookup(rig(executionMode="kubernetes", kubernetes=RIG_K8S))
    errors = rules.validate_object(local_polecat(), SETTINGS, rig=lookup).errors
    assert errors == (
        "spec.local: is forbidden when the execution mode is kubernetes, which comes from Rig 'gastown' "
        "(spec.executionMode is not set on the Polecat): remove spec.local or set spec.executionMode: local",
    )


def test_a_missing_rig_is_a_warning_when_the_polecat_needs_it() -> None:
    verdict = rules.validate_object(
        bare_polecat(executionMode="kubernetes"), SETTINGS, rig=rules.RigLookup(None)
    )
    assert verdict.allowed
    assert verdict.warnings == (
        "spec.rig: Rig 'gastown' in namespace 'ns' was not found; this Polecat needs it for "
        "spec.kubernetes.gitRepository, so it will wait in Pending (RigNotFound) until "
        "the Rig exists. Create the Rig, or set those fields on the Polecat",
    )
    # A Polecat complete on its own does not need its Rig: no warning, checked as before.
    complete = rules.validate_object(k8s_polecat(), SETTINGS, rig=rules.RigLookup(None))
    assert complete.allowed and not any(w.startswith("spec.rig:") for w in complete.warnings)


def test_local_defaults_from_the_rig_satisfy_the_local_rules() -> None:
    """tmux needs a command: the Rig's counts."""
    polecat = bare_polecat(local={"dispatcher": "tmux"})
    assert not rules.validate_object(polecat, SETTINGS).allowed
    lookup = rules.RigLookup(rig(local={"command": "claude", "workDir": "/srv/work"}))
    assert rules.validate_object(polecat, SETTINGS, rig=lookup).allowed


def test_references_include_the_rigs_secrets() -> None:
    polecat = rules.parse_polecat(bare_polecat())
    assert polecat is not None
    lookup = rules.RigLookup(rig(executionMode="kubernetes", kubernetes=RIG_K8S))
    refs = rules.references(rules.effective_polecat(polecat, lookup))
    assert {r.name for r in refs} == {"repo-deploy-key", "git-known-hosts", "agent-api-key"}
