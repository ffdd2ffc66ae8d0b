"""The operator's Settings as the chart configures them: from a rendered Deployment's env.

The chart passes every setting as a ``GASTOWN_*`` environment variable; building
``Settings`` from exactly those variables (and nothing else from the test process's
environment) shows what the operator in that Pod would run with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gastown.settings import Settings

POD_NAME = "gastown-operator-7d9c-abcde"


def deployment_env(deployment: Mapping[str, Any], *, pod_name: str = POD_NAME) -> dict[str, str]:
    """The single container's env; ``fieldRef: metadata.name`` becomes ``pod_name``."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            assert isinstance(item["value"], str), f"env {item['name']} must be a string"
            env[item["name"]] = item["value"]
        else:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", item
            env[item["name"]] = pod_name
    return env


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """``Settings()`` read from exactly ``env``'s GASTOWN_* variables."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("GASTOWN_")}
    try:
        for name in saved:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k.startswith("GASTOWN_")})
        return Settings()
    finally:
        for name in [n for n in os.environ if n.startswith("GASTOWN_")]:
            del os.environ[name]
        os.environ.update(saved)
