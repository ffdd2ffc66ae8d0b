"""The Helm CLI for tests: finding it, and rendering charts/gastown-operator with it.

Helm is built from its pinned Go module (``gastown/devcluster/modules/helm``) with the
rest of the lab, so it is usually in the lab's bin dir. Without it the chart tests skip
locally, saying how to get it, and fail under ``CI=true`` so CI cannot go green by
skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gastown.devcluster import binaries
from tests.support.ci import unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "gastown-operator"
RELEASE = "gastown-operator"
NAMESPACE = "gastown-system"


def find_helm() -> Path | None:
    """``$GASTOWN_HELM``, then the lab's bin dir, then ``PATH``; None when none has it."""
    explicit = os.environ.get("GASTOWN_HELM")
    if explicit:
        return Path(explicit)
    return binaries.helm_binary()


def require_helm() -> Path:
    """The helm binary, or skip (locally) / fail (``CI=true``) with how to get one."""
    found = find_helm()
    if found is not None and found.is_file():
        return found
    reason = (
        "the helm CLI is missing: run `make lab` (builds it from gastown/devcluster/modules/helm into "
        f"{binaries.cached_bin_dir()}), or set GASTOWN_HELM to a helm binary"
    )
    if found is not None:
        reason = f"GASTOWN_HELM={found} is not a file"
    unavailable(reason)


def helm_env() -> dict[str, str]:
    """Helm's own state (repositories, cache, plugins) kept out of the user's home."""
    state = Path(tempfile.gettempdir()) / "gastown-test-helm"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(state / "cache"),
        "HELM_CONFIG_HOME": str(state / "config"),
        "HELM_DATA_HOME": str(state / "data"),
    }


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm synchronously (unit tests only: e2e tests use asyncio subprocesses)."""
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=helm_env(), timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def values_file(values: Mapping[str, Any], directory: Path) -> Path:
    """Write values as a file for ``-f`` (JSON is YAML, and keeps types exact)."""
    path = directory / "values.json"
    path.write_text(json.dumps(values))
    return path


def template_args(values_path: Path, *, release: str = RELEASE, namespace: str = NAMESPACE) -> list[str]:
    return ["template", release, str(CHART_DIR), "--namespace", namespace, "-f", str(values_path)]


def parse_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``text`` (helm separates them with ``---``)."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"a rendered document is not a mapping: {doc!r}"
    return docs


def render(
    helm: Path,
    values: Mapping[str, Any],
    *,
    extra_args: Sequence[str] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """``helm template`` the chart with ``values``; the parsed documents."""
    with tempfile.TemporaryDirectory() as tmp:
        path = values_file(values, Path(tmp))
        result = run_helm(helm, *template_args(path, release=release, namespace=namespace), *extra_args)
    return parse_documents(result.stdout)
