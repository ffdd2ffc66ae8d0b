"""The generated Polecat CRD on a real kube-apiserver (the lab).

Shows: the CRD installs and the examples are accepted (the fleet examples' Rigs and Convoys
too); each schema/CEL rule rejects its bad example with its message; ``kubectl explain``
prints the field descriptions; ``kubectl get pcat`` shows the printer columns; defaults and
the status subresource work.
No webhook is registered for these namespaces, so every rejection here is the apiserver's own:
the schema, its CEL rules, or the dispatch freeze's admission policy (installed with the CRDs).
"""

from __future__ import annotations

import json

import pytest

from gastown.devcluster.lab import Lab
from tests.support.admission import apply_example
from tests.support.crd import set_status
from tests.support.waiting import wait_for
from tests.unit.webhook.invalid_examples import EXAMPLES, InvalidExample, all_examples

pytestmark = pytest.mark.lab

SCHEMA_EXAMPLES = [e for e in all_examples() if e.rejected_by == "schema"]


def _table(out: str) -> tuple[list[str], dict[str, list[str]]]:
    """Split kubectl's table by the header's column positions (empty cells stay empty)."""
    lines = out.rstrip("\n").splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]
        rows[cells[0]] = cells
    return header.split(), rows


async def test_examples_are_accepted(lab: Lab, namespace: str, crd: None) -> None:
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "kubernetes"))
    assert rc == 0, err
    assert "polecat.gastown.gastown.io/add-rate-limit created" in out
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local"))
    assert "polecat.gastown.gastown.io/fix-login-bug created" in out
    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "-o", "name")
    assert sorted(out.split()) == [
        "polecat.gastown.gastown.io/add-rate-limit",
        "polecat.gastown.gastown.io/fix-login-bug",
    ]


@pytest.mark.parametrize("directory", ["fleet-kubernetes", "fleet-local"])
async def test_fleet_examples_are_accepted_and_listed(
    lab: Lab, namespace: str, crd: None, directory: str
) -> None:
    """A Rig, a Convoy and a Rig-based Polecat per mode; `kubectl get` shows the Rig and Convoy columns."""
    rc, out, err = await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / directory), check=False)
    assert rc == 0, err
    assert sorted(line.split()[0].split(".")[0] for line in out.splitlines()) == ["convoy", "polecat", "rig"]
    _, out, _ = await lab.kubectl("-n", namespace, "get", "gtrig")
    header, rows = _table(out)
    assert header == ["NAME", "MODE", "MAX", "ACTIVE", "WAITING", "AGE"]
    rig = {"fleet-kubernetes": ["webapp", "kubernetes", "3"], "fleet-local": ["scratch", "local", "2"]}[
        directory
    ]
    assert rows[rig[0]][:3] == rig
    _, out, _ = await lab.kubectl("-n", namespace, "get", "cvy")
    header, rows = _table(out)
    assert header == ["NAME", "RIG", "TOTAL", "WORKING", "DONE", "FAILED", "COMPLETE", "AGE"]
    assert [row[1] for row in rows.values()] == [rig[0]]


@pytest.mark.parametrize("example", SCHEMA_EXAMPLES, ids=lambda e: e.id)
async def test_schema_rule_rejects_its_bad_example(
    lab: Lab, namespace: str, crd: None, example: InvalidExample
) -> None:
    rc, output = await apply_example(lab, namespace, example)
    assert rc != 0, output
    assert example.message in output
    assert "admission webhook" not in output  # the schema did it, not a webhook


async def test_defaults_are_applied(lab: Lab, namespace: str, crd: None) -> None:
    await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "kubernetes" / "polecat.yaml"))
    minimal = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "minimal"},
        "spec": {"rig": "gastown", "beadID": "gt-1", "local": {}},
    }
    await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(minimal))
    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "minimal", "-o", "json")
    spec = json.loads(out)["spec"]
    # Fields a Rig can supply get no schema default: left out stays left out (resolved at
    # dispatch against the Rig, else the model default), so the Rig's value can win.
    assert "executionMode" not in spec
    assert "agent" not in spec
    assert spec["local"] == {}
    assert spec["desiredState"] == "Working"
    minimal["spec"] = {
        "rig": "gastown",
        "beadID": "gt-1",
        "executionMode": "kubernetes",
        "kubernetes": {"agentSecretRef": {"name": "k"}},  # gitRepository may come from the Rig
    }
    minimal["metadata"] = {"name": "minimal-k8s"}
    await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(minimal))
    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "minimal-k8s", "-o", "json")
    k8s = json.loads(out)["spec"]["kubernetes"]
    assert "gitBranch" not in k8s and "activeDeadlineSeconds" not in k8s
    assert k8s["agentSecretRef"] == {"name": "k", "key": "api-key"}
    # Kubernetes mode with no section at all: the schema admits it (the Rig may supply it).
    minimal["spec"] = {"rig": "gastown", "beadID": "gt-2", "executionMode": "kubernetes"}
    minimal["metadata"] = {"name": "minimal-from-rig"}
    await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(minimal))


async def test_unknown_fields_are_refused_by_kubectl(lab: Lab, namespace: str, crd: None) -> None:
    bad = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": "typo"},
        "spec": {"rig": "gastown", "beadID": "gt-1", "executionMod": "kubernetes"},
    }
    rc, _, err = await lab.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(bad), check=False)
    assert rc != 0
    assert 'unknown field "spec.executionMod"' in err


async def test_kubectl_explain_prints_descriptions(lab: Lab, crd: None) -> None:
    # The OpenAPI document is published shortly after the CRD is Established.
    async def explained() -> str | None:
        rc, out, _ = await lab.kubectl("explain", "polecat.spec.kubernetes", check=False)
        return out if rc == 0 and "gitRepository" in out else None

    out = await wait_for(explained, timeout=20, interval=0.2, what="kubectl explain to know the CRD")
    assert "Kubernetes-mode settings. Required with executionMode kubernetes" in out
    assert "Repository to clone: git@host:path, ssh://..., or https://..." in out
    assert "kubernetes.io/ssh-auth Secret" in out
    assert "activeDeadlineSeconds\t<integer>" in out or "activeDeadlineSeconds <integer>" in out
    _, out, _ = await lab.kubectl("explain", "pcat.spec.executionMode")
    assert "Where the agent runs" in out
    assert "local" in out and "kubernetes" in out
    _, out, _ = await lab.kubectl("explain", "polecat.status.result.branch")
    assert "Branch the results were pushed to." in out


async def test_get_shows_the_printer_columns(lab: Lab, namespace: str, crd: None) -> None:
    await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "kubernetes" / "polecat.yaml"))
    await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local" / "polecat.yaml"))
    await set_status(
        lab,
        namespace,
        "add-rate-limit",
        {
            "phase": "Working",
            "executionMode": "kubernetes",
            "kubernetes": {"podName": "polecat-add-rate-limit"},
            "result": {"branch": "polecat/add-rate-limit"},
        },
    )
    await set_status(
        lab,
        namespace,
        "fix-login-bug",
        {"phase": "Dispatching", "executionMode": "local", "local": {"tmuxSession": "gt-gastown-fix"}},
    )

    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat")
    header, rows = _table(out)
    assert header == ["NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE"]
    assert rows["add-rate-limit"][1:5] == ["gastown", "kubernetes", "Working", "gt-def34"]
    assert rows["fix-login-bug"][1:5] == ["gastown", "local", "Dispatching", "gt-abc12"]

    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "-o", "wide")
    header, rows = _table(out)
    assert header == ["NAME", "RIG", "MODE", "PHASE", "BEAD", "AGE", "POD", "SESSION", "BRANCH"]
    assert rows["add-rate-limit"][6:] == ["polecat-add-rate-limit", "", "polecat/add-rate-limit"]
    assert rows["fix-login-bug"][6:] == ["", "gt-gastown-fix", ""]

    # The category and the short name resolve; "pc" stays PriorityClass.
    _, out, _ = await lab.kubectl("-n", namespace, "get", "gastown", "-o", "name")
    assert "polecat.gastown.gastown.io/add-rate-limit" in out
    _, out, _ = await lab.kubectl("get", "pc", "-o", "name")
    assert "priorityclass" in out


async def test_status_is_a_subresource(lab: Lab, namespace: str, crd: None) -> None:
    await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local" / "polecat.yaml"))
    # A spec patch that also carries status leaves the status alone.
    await lab.kubectl(
        "-n", namespace, "patch", "polecat", "fix-login-bug", "--type=merge",
        "-p", json.dumps({"spec": {"task": "new"}, "status": {"phase": "Done"}}),
    )  # fmt: skip
    _, out, _ = await lab.kubectl("-n", namespace, "get", "pcat", "fix-login-bug", "-o", "json")
    obj = json.loads(out)
    assert obj["spec"]["task"] == "new"
    assert "status" not in obj
    # The status enum holds on the subresource too.
    rc, _, err = await lab.kubectl(
        "-n", namespace, "patch", "polecat", "fix-login-bug", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Sleeping"}}), check=False,
    )  # fmt: skip
    assert rc != 0 and 'Unsupported value: "Sleeping"' in err


async def _patch(lab: Lab, namespace: str, name: str, body: object, *extra: str) -> tuple[int, str]:
    rc, out, err = await lab.kubectl(
        "-n", namespace, "patch", "polecat", name, "--type=merge", "-p", json.dumps(body), *extra,
        check=False,
    )  # fmt: skip
    return rc, out + err


async def test_dispatched_polecat_still_takes_status_metadata_terminate_and_delete(
    lab: Lab, namespace: str, crd: None
) -> None:
    """The root CEL rules ratchet: only spec changes after dispatch are refused."""
    name = "fix-login-bug"
    await lab.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "local" / "polecat.yaml"))
    # Before dispatch: Terminated may go back to Working (nothing ran), the bead may change.
    assert (await _patch(lab, namespace, name, {"spec": {"desiredState": "Terminated"}}))[0] == 0
    rc, out = await _patch(lab, namespace, name, {"spec": {"desiredState": "Working", "beadID": "gt-abc13"}})
    assert rc == 0, out
    await set_status(lab, namespace, name, {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"})
    # After dispatch: status, labels and finalizers still change; Working -> Terminated is allowed.
    await set_status(lab, namespace, name, {"phase": "Stuck"})
    rc, out = await _patch(lab, namespace, name, {"metadata": {"labels": {"a": "b"}, "finalizers": ["x/y"]}})
    assert rc == 0, out
    rc, out = await _patch(lab, namespace, name, {"spec": {"workDir": None, "desiredState": "Terminated"}})
    assert rc == 0, out
    rc, out = await _patch(lab, namespace, name, {"spec": {"local": {"command": "bash"}}})
    assert rc != 0 and "spec.local.command: is immutable once the Polecat is dispatched (phase Stuck)" in out
    rc, out = await _patch(lab, namespace, name, {"spec": {"desiredState": "Working"}})
    assert rc != 0 and "spec.desiredState: a stopped Polecat does not resume" in out
    # Deletion and removing the finalizer always pass.
    await lab.kubectl("-n", namespace, "delete", "polecat", name, "--wait=false")
    rc, out = await _patch(lab, namespace, name, {"metadata": {"finalizers": None}})
    assert rc == 0, out
