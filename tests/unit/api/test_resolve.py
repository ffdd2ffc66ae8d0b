"""Polecat spec + Rig -> effective spec (gastown.api.resolve), field by field."""

from __future__ import annotations

from typing import Any

from gastown.api import resolve
from gastown.api.models import Dispatcher, EffectiveSpec, ExecutionMode, Polecat, PolecatSpec
from gastown.api.rig import Rig


def _spec(**fields: Any) -> PolecatSpec:
    return PolecatSpec.model_validate({"rig": "gastown", "beadID": "gt-1", **fields})


def _rig(generation: int = 3, **spec: Any) -> Rig:
    return Rig.from_dict(
        {"metadata": {"name": "gastown", "namespace": "ns", "generation": generation}, "spec": spec}
    )


RIG_K8S = {
    "gitRepository": "git@git.example:rig/repo.git",
    "gitBranch": "develop",
    "gitSecretRef": {"name": "rig-key"},
    "image": "ghcr.io/x/agent:1",
    "activeDeadlineSeconds": 600,
    "workBranch": "never-from-rig",
}


def test_without_a_rig_the_spec_is_its_own_effective_spec() -> None:
    spec = _spec(executionMode="kubernetes", kubernetes={"gitRepository": "https://x/y.git"})
    out = resolve.resolve(spec, None)
    assert out.spec is spec
    assert out.effective is None
    assert out.from_rig == ()


def test_left_out_fields_come_from_the_rig_and_are_named() -> None:
    rig = _rig(executionMode="kubernetes", agent="codex", kubernetes=RIG_K8S)
    out = resolve.resolve(_spec(kubernetes={"image": "mine:2"}), rig)
    assert out.spec.executionMode is ExecutionMode.KUBERNETES
    assert out.spec.agent == "codex"
    k8s = out.spec.kubernetes
    assert k8s is not None
    assert k8s.image == "mine:2"  # the Polecat's own value wins
    assert k8s.gitRepository == RIG_K8S["gitRepository"]
    assert k8s.gitBranch == "develop"
    assert k8s.activeDeadlineSeconds == 600
    assert k8s.workBranch is None  # per Polecat: never taken from the Rig
    assert out.from_rig == (
        "executionMode",
        "agent",
        "kubernetes.gitRepository",
        "kubernetes.gitBranch",
        "kubernetes.gitSecretRef",
        "kubernetes.activeDeadlineSeconds",
    )
    assert out.effective == EffectiveSpec(
        rig="gastown",
        rigGeneration=3,
        executionMode=ExecutionMode.KUBERNETES,
        agent="codex",
        kubernetes=k8s,
        fromRig=list(out.from_rig),
    )


def test_a_value_equal_to_the_default_still_wins_over_the_rig() -> None:
    """Set means set: gitBranch: main on the Polecat is not "left out"."""
    rig = _rig(executionMode="kubernetes", kubernetes=RIG_K8S)
    spec = _spec(executionMode="kubernetes", agent="claude-code", kubernetes={"gitBranch": "main"})
    out = resolve.resolve(spec, rig)
    assert out.spec.kubernetes is not None and out.spec.kubernetes.gitBranch == "main"
    assert "kubernetes.gitBranch" not in out.from_rig
    assert "executionMode" not in out.from_rig and "agent" not in out.from_rig


def test_neither_sets_it_gives_the_model_default() -> None:
    out = resolve.resolve(
        _spec(executionMode="kubernetes"), _rig(kubernetes={"gitRepository": "https://x/y"})
    )
    assert out.spec.kubernetes is not None
    assert out.spec.kubernetes.gitBranch == "main"
    assert out.spec.kubernetes.activeDeadlineSeconds == 3600
    assert out.spec.agent == "claude-code"


def test_local_defaults_and_only_the_effective_modes_section() -> None:
    rig = _rig(local={"dispatcher": "tmux", "command": "claude", "workDir": "/srv/w"}, kubernetes=RIG_K8S)
    out = resolve.resolve(_spec(), rig)
    assert out.spec.executionMode is ExecutionMode.LOCAL
    assert out.spec.kubernetes is None  # the Rig's kubernetes defaults are not for a local Polecat
    assert out.spec.local is not None
    assert out.spec.local.dispatcher is Dispatcher.TMUX
    assert out.spec.local.command == "claude"
    assert out.from_rig == ("local.dispatcher", "local.command", "local.workDir")


def test_a_rig_with_nothing_to_give_records_an_empty_list() -> None:
    out = resolve.resolve(_spec(local={"townRoot": "/gt"}), _rig())
    assert out.effective is not None and out.effective.fromRig == []
    assert out.spec.local is not None and out.spec.local.townRoot == "/gt"


def test_recorded_effective_spec_is_what_runs_after_dispatch() -> None:
    """After dispatch status.effective is read back; the Rig is not looked at again."""
    rig = _rig(executionMode="kubernetes", kubernetes=RIG_K8S)
    spec = _spec()
    effective = resolve.resolve(spec, rig).effective
    assert effective is not None
    polecat = Polecat.from_dict(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": spec.model_dump(mode="json", exclude_unset=True),
            "status": {"phase": "Working", "effective": effective.model_dump(mode="json", exclude_none=True)},
        }
    )
    seen = resolve.recorded(polecat)
    assert seen.spec.executionMode is ExecutionMode.KUBERNETES
    assert seen.spec.kubernetes is not None
    assert seen.spec.kubernetes.gitRepository == RIG_K8S["gitRepository"]
    assert polecat.spec.kubernetes is None  # the stored spec itself is left as it is


def test_missing_and_needs_rig() -> None:
    assert resolve.missing(_spec(executionMode="kubernetes")) == ["kubernetes.gitRepository"]
    assert resolve.missing(_spec(executionMode="kubernetes", kubernetes={"image": "x:1"})) == [
        "kubernetes.gitRepository"
    ]
    assert resolve.missing(_spec()) == []
    assert resolve.needs_rig(_spec(executionMode="kubernetes"))
    # A kubernetes section with the mode left to the Rig: without the Rig it would be local.
    assert resolve.needs_rig(_spec(kubernetes={"gitRepository": "https://x/y"}))
    assert not resolve.needs_rig(_spec())
    assert not resolve.needs_rig(_spec(executionMode="kubernetes", kubernetes={"gitRepository": "https://x"}))
