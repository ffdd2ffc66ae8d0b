"""The dispatch freeze as a ValidatingAdmissionPolicy, generated from the CRD's own rules.

Once a Polecat is dispatched, the fields that steer its work are frozen and a stopped one
does not resume (see ``gastown.api.crd.OBJECT_VALIDATIONS``). Those rules read
``oldSelf.status``, so in a CRD they must sit at the object's root, and a root rule runs on
**every** write of the object, status writes included: measured with ``python -m bench
celcost``, they made each of the operator's status writes cost the apiserver ~1.6x the
CPU of the same write without them, for rules that can only ever fail on a spec change.

A ValidatingAdmissionPolicy runs the same CEL inside the apiserver (so it holds with the
webhook down, like CRD rules do), but only for the requests it matches: UPDATEs of the
``polecats`` resource itself. Status writes go to ``polecats/status`` and never reach it.
The expressions are the CRD rules with ``self``/``oldSelf`` renamed to ``object``/
``oldObject``, so the wording stays the webhook's and the CRD's.

The validations are written into the chart (``files/dispatch-validations.yaml``, read by
``templates/dispatchpolicy.yaml``) and into ``webhooks/dispatchpolicy.yaml`` for kubectl
installs, by ``python -m gastown.api.crd``; a test fails when either is stale.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import yaml

from gastown.api import crd, models

REPO: Final = Path(__file__).resolve().parents[2]
CHART_VALIDATIONS: Final = REPO / "charts" / "gastown-operator" / "files" / "dispatch-validations.yaml"
KUBECTL_POLICY: Final = REPO / "webhooks" / "dispatchpolicy.yaml"
POLICY_NAME: Final = "gastown-operator-dispatch"

_HEADER: Final = (
    "# Generated from gastown/api/crd.py (OBJECT_VALIDATIONS) by `python -m gastown.api.crd`.\n"
    "# Do not edit by hand (a test fails when this file is out of date).\n"
)
_SELF: Final = re.compile(r"\boldSelf\b|\bself\b")


def _admission_cel(expression: str) -> str:
    """A CRD rule's CEL as an admission policy's: ``self`` → ``object``, ``oldSelf`` → ``oldObject``.

    Only identifiers are renamed: the rules' string literals (messages) never contain the
    bare words, which a unit test checks.
    """
    return _SELF.sub(lambda m: "oldObject" if m.group(0) == "oldSelf" else "object", expression)


def validations() -> list[dict[str, str]]:
    """The policy's validations: one per CRD root rule, same checks, same messages."""
    out = []
    for rule in crd.OBJECT_VALIDATIONS:
        item = {"expression": _admission_cel(rule["rule"]), "reason": "Invalid"}
        if "messageExpression" in rule:
            item["messageExpression"] = _admission_cel(rule["messageExpression"])
        item["message"] = rule["message"]
        out.append(item)
    return out


def policy_spec() -> dict[str, Any]:
    """The ValidatingAdmissionPolicy's spec."""
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [models.GROUP],
                    "apiVersions": [models.VERSION],
                    "operations": ["UPDATE"],
                    "resources": [models.PLURAL],
                }
            ]
        },
        "validations": validations(),
    }


def kubectl_documents() -> list[dict[str, Any]]:
    """The policy and its binding, for ``kubectl apply -f webhooks/`` (every namespace)."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": policy_spec(),
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
        },
    ]


def render_chart_validations() -> str:
    """The chart's ``files/dispatch-validations.yaml``: the validations list."""
    return _HEADER + yaml.safe_dump(validations(), sort_keys=False, width=100, allow_unicode=True)


def render_kubectl_policy() -> str:
    """``webhooks/dispatchpolicy.yaml``."""
    intro = (
        "# Freezes a dispatched Polecat's work fields inside the apiserver, with the webhook down too.\n"
        "# Same as the chart's dispatchpolicy.yaml (a unit test compares them).\n"
    )
    body = yaml.safe_dump_all(kubectl_documents(), sort_keys=False, width=100, allow_unicode=True)
    return _HEADER + intro + body


def outputs() -> dict[Path, str]:
    """Every file this module generates, by path."""
    return {CHART_VALIDATIONS: render_chart_validations(), KUBECTL_POLICY: render_kubectl_policy()}
