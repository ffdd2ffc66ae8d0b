"""The Rig and Convoy objects `rig create` / `convoy create` build from flags (pure)."""

from __future__ import annotations

import pytest

from gastown.api.convoy import Convoy
from gastown.api.rig import Rig
from gastown.cli.fleet_manifest import ConvoyRequest, RigRequest, build_convoy, build_rig, parse_bead
from gastown.cli.manifest import ManifestError


def test_bead_flag_with_and_without_its_own_task() -> None:
    assert parse_bead("gt-abc12") == {"beadID": "gt-abc12"}
    assert parse_bead("gt-abc12=Fix it; a=b stays") == {"beadID": "gt-abc12", "task": "Fix it; a=b stays"}
    with pytest.raises(ManifestError, match=r"--bead '=x': give a bead id, as ID or ID=TASK"):
        parse_bead("=x")
    with pytest.raises(ManifestError, match=r"the task after '=' is empty; leave out '=' to use --task"):
        parse_bead("gt-1=  ")


def test_convoy_from_beads_is_a_valid_convoy_with_only_what_was_asked() -> None:
    body = build_convoy(
        ConvoyRequest(
            name="batch-1",
            rig="gastown",
            beads=["gt-abc12=Fix the login bug", "gt-def34"],
            task="Default task",
            mode="kubernetes",
            parallelism=2,
            failure_policy="Stop",
            max_failures=3,
            ttl=600,
            labels={"team": "core"},
        )
    )
    assert body == {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Convoy",
        "metadata": {"name": "batch-1", "labels": {"team": "core"}},
        "spec": {
            "beads": [{"beadID": "gt-abc12", "task": "Fix the login bug"}, {"beadID": "gt-def34"}],
            "template": {"spec": {"rig": "gastown", "executionMode": "kubernetes", "task": "Default task"}},
            "parallelism": 2,
            "failurePolicy": "Stop",
            "maxFailures": 3,
            "ttlSecondsAfterFinished": 600,
        },
    }
    Convoy.from_dict(body)  # the API model takes it as is


def test_convoy_from_count_leaves_defaults_to_the_apiserver() -> None:
    body = build_convoy(ConvoyRequest(name="soak", rig="scratch", count=50, task="Run the flaky test"))
    assert body["spec"] == {
        "count": 50,
        "template": {"spec": {"rig": "scratch", "task": "Run the flaky test"}},
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            ConvoyRequest(name="c", rig="r"),
            "give the beads: --bead ID[=TASK] (repeatable) or --count N with --task",
        ),
        (
            ConvoyRequest(name="c", rig="r", beads=["gt-1"], count=2),
            "give --bead (one per bead) or --count, not both",
        ),
        (ConvoyRequest(name="c", rig="r", count=2), "--count N runs one task N times: give it with --task"),
        (
            ConvoyRequest(name="c", rig="r", beads=["gt-1", "gt-1=again"]),
            "--bead gt-1: given twice; each bead runs once per Convoy",
        ),
        (
            ConvoyRequest(name="c", rig="r", beads=["gt-1"], max_failures=2),
            "--max-failures only applies with --failure-policy Stop",
        ),
    ],
)
def test_convoy_flag_mistakes_are_named(request_: ConvoyRequest, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        build_convoy(request_)
    assert message in str(info.value)


def test_rig_kubernetes_defaults() -> None:
    body = build_rig(
        RigRequest(
            name="webapp",
            repo="git@github.com:me/app.git",
            git_secret="deploy-key",
            agent_secret="agent:api-key",
            known_hosts_configmap="hosts",
            image="ghcr.io/me/agent:1",
            deadline=900,
            max_active=3,
        )
    )
    assert body["spec"] == {
        "executionMode": "kubernetes",  # implied by kubernetes-only flags
        "maxActivePolecats": 3,
        "kubernetes": {
            "gitRepository": "git@github.com:me/app.git",
            "gitSecretRef": {"name": "deploy-key"},
            "knownHostsConfigMapRef": {"name": "hosts"},
            "agentSecretRef": {"name": "agent", "key": "api-key"},
            "image": "ghcr.io/me/agent:1",
            "activeDeadlineSeconds": 900,
        },
    }
    Rig.from_dict(body)


def test_rig_local_defaults_and_capacity_zero() -> None:
    body = build_rig(
        RigRequest(name="scratch", mode="local", dispatcher="tmux", command="claude", max_active=0)
    )
    assert body["spec"] == {
        "executionMode": "local",
        "maxActivePolecats": 0,
        "local": {"dispatcher": "tmux", "command": "claude"},
    }
    assert build_rig(RigRequest(name="bare"))["spec"] == {}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            RigRequest(name="r", mode="local", repo="x"),
            "--repo: kubernetes-mode flags; give --mode kubernetes",
        ),
        (RigRequest(name="r", mode="kubernetes", repo="x", command="c"), "--command: local-mode flags"),
        (RigRequest(name="r", mode="kubernetes"), "--mode kubernetes needs --repo"),
        (RigRequest(name="r", deadline=5), "--deadline needs --mode"),
        (RigRequest(name="r", repo="x", agent_secret="a:"), "--agent-secret 'a:': use NAME or NAME:KEY"),
    ],
)
def test_rig_flag_mistakes_are_named(request_: RigRequest, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        build_rig(request_)
    assert message in str(info.value)
