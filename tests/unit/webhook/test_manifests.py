"""The kubectl-install webhook manifests agree with the operator's defaults and the issue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gastown.api import models
from gastown.settings import Settings
from gastown.webhook.server import PATH

WEBHOOKS = Path(__file__).resolve().parents[3] / "webhooks"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((WEBHOOKS / name).read_text())
    return doc


def test_validating_webhook_configuration() -> None:
    settings = Settings()
    vwc = _load("validatingwebhookconfiguration.yaml")
    assert vwc["metadata"]["name"] == settings.webhook_config_name
    (hook,) = vwc["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 5
    assert "caBundle" not in hook["clientConfig"]  # filled by the operator or cert-manager
    service = hook["clientConfig"]["service"]
    assert service == {
        "name": settings.webhook_service_name,
        "namespace": settings.operator_namespace,
        "path": PATH,
        "port": 443,
    }
    assert hook["rules"] == [
        {
            "apiGroups": [models.GROUP],
            "apiVersions": [models.VERSION],
            "operations": ["CREATE", "UPDATE"],
            "resources": [models.PLURAL, "rigs", "convoys"],
            "scope": "Namespaced",
        }
    ]


def test_service_reaches_the_webhook_port() -> None:
    settings = Settings()
    svc = _load("service.yaml")
    assert svc["metadata"]["name"] == settings.webhook_service_name
    assert svc["metadata"]["namespace"] == settings.operator_namespace
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] == settings.webhook_port


def test_kustomization_lists_all_three() -> None:
    assert sorted(_load("kustomization.yaml")["resources"]) == [
        "dispatchpolicy.yaml",
        "finalizerpolicy.yaml",
        "service.yaml",
        "validatingwebhookconfiguration.yaml",
    ]
