"""The lazy kubernetes_asyncio.client: few generated modules loaded, same names and classes.

Each case runs in a fresh interpreter: whether the shim applies depends on what was imported
before ``gastown``, and the test process itself has long since imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from typing import Any

from gastown import lazy_kubernetes

MODELS = "kubernetes_asyncio.client.models."
APIS = "kubernetes_asyncio.client.api."


def run_python(*blocks: str) -> Any:
    """Run the code blocks, in order, in a new interpreter; return the JSON it prints last."""
    code = "\n".join(textwrap.dedent(block) for block in blocks)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# Defines models_loaded() and apis_loaded(): how many generated modules are imported so far.
COUNT_LOADED = f"""
import sys
def models_loaded():
    return sum(1 for name in sys.modules if name.startswith({MODELS!r}))
def apis_loaded():
    return sum(1 for name in sys.modules if name.startswith({APIS!r}))
"""


def test_importing_the_operator_loads_no_generated_models() -> None:
    found = run_python(
        COUNT_LOADED,
        """
        import json
        import gastown.controller.manager, gastown.executors.kubernetes.executor
        import gastown.executors.local.executor, gastown.webhook.server
        import kubernetes_asyncio.client as client, kubernetes_asyncio.config, kubernetes_asyncio.watch
        from gastown.lazy_kubernetes import is_installed
        print(json.dumps({"models": models_loaded(), "apis": apis_loaded(), "installed": is_installed(),
                          "all_models": len(client.models.__all__)}))
        """,
    )
    assert found["installed"]
    # Eagerly this is every model (~770) and API (~65) module of the library.
    assert found["all_models"] > 500
    assert found["models"] <= 10, found
    assert found["apis"] <= 3, found


def test_names_resolve_on_first_use_and_deserialize_works() -> None:
    found = run_python(
        COUNT_LOADED,
        """
        import asyncio, json
        import gastown
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client import CoreV1Api, V1Secret
        from kubernetes_asyncio.client.models import V1Pod

        POD_LIST = {
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{"metadata": {"name": "p", "creationTimestamp": "2026-01-02T03:04:05Z"},
                       "spec": {"containers": [{"name": "agent", "image": "img"}]},
                       "status": {"phase": "Running"}}],
        }

        class Response:
            data = json.dumps(POD_LIST)

        async def roundtrip():
            api = client.ApiClient()
            try:
                pods = api.deserialize(Response(), "V1PodList")
                secret = api.sanitize_for_serialization(
                    V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v"}))
                return pods, secret
            finally:
                await api.close()

        pods, secret = asyncio.run(roundtrip())
        pod = pods.items[0]
        print(json.dumps({
            "same_pod": V1Pod is client.V1Pod is client.models.V1Pod is client.models.v1_pod.V1Pod,
            "same_api": CoreV1Api is client.CoreV1Api is client.api.CoreV1Api,
            "pod_type": type(pod).__module__ + "." + type(pod).__qualname__,
            "pod": [pod.metadata.name, pod.spec.containers[0].image, pod.status.phase,
                    pod.metadata.creation_timestamp.isoformat()],
            "secret": secret,
            "missing": hasattr(client, "V1NoSuchThing") or hasattr(client.models, "V1NoSuchThing"),
            "models": models_loaded(),
        }))
        """,
    )
    assert found["same_pod"]
    assert found["same_api"]
    assert found["pod_type"] == "kubernetes_asyncio.client.models.v1_pod.V1Pod"
    assert found["pod"] == ["p", "img", "Running", "2026-01-02T03:04:05+00:00"]
    assert found["secret"] == {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    assert not found["missing"]
    # What the round trip touched (list, pod, meta, spec, container, status, secret), not the library.
    assert 5 <= found["models"] <= 20, found


# Every public name of the three packages, as the class or module it resolves to.
DESCRIBE = f"""
PACKAGES = {sorted(lazy_kubernetes.LAZY_PACKAGES)!r}
"""
DESCRIBE += """
import importlib, json, types
def describe(value):
    if isinstance(value, types.ModuleType):
        return "module " + value.__name__
    return getattr(value, "__module__", "?") + "." + getattr(value, "__qualname__", type(value).__name__)
out = {}
for package in PACKAGES:
    module = importlib.import_module(package)
    names = sorted(set(dir(module)) | set(module.__all__))
    out[package] = {
        "dir": sorted(dir(module)),
        "values": {n: describe(getattr(module, n)) for n in names if not n.startswith("__")},
    }
"""


def test_lazy_packages_expose_what_the_eager_ones_do() -> None:
    eager = run_python(
        """
        import kubernetes_asyncio.client  # first: the shim must then stand aside
        import gastown
        from gastown.lazy_kubernetes import install, is_installed
        installed = is_installed() or install()
        """,
        DESCRIBE,
        'out["installed"] = installed; print(json.dumps(out))',
    )
    lazy = run_python("import gastown", DESCRIBE, "print(json.dumps(out))")
    assert eager.pop("installed") is False
    for package in lazy_kubernetes.LAZY_PACKAGES:
        assert set(lazy[package]["dir"]) == set(eager[package]["dir"]) | {"__getattr__", "__dir__"}
        lazy_values, eager_values = lazy[package]["values"], eager[package]["values"]
        assert lazy_values == eager_values
    assert len(eager["kubernetes_asyncio.client"]["values"]) > 800


def test_install_is_idempotent() -> None:
    # In this process gastown is imported: the finder is in place or the client came first.
    assert lazy_kubernetes.install() is False


class SourceLoader:
    """A stand-in for the file loader: serves ``source`` and records an eager execution."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.eager_runs = 0

    def get_source(self, name: str) -> str | None:
        return self.source

    def get_filename(self, name: str) -> str:
        return f"<{name}>"

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        self.eager_runs += 1
        module.__dict__["eager"] = True


def lazy_loaded(source: str | None) -> tuple[types.ModuleType, SourceLoader]:
    wrapped = SourceLoader(source)
    module = types.ModuleType(lazy_kubernetes.CLIENT)
    lazy_kubernetes._LazyPackageLoader(wrapped).exec_module(module)
    return module, wrapped


def test_unexpected_package_source_falls_back_to_the_eager_import() -> None:
    deferred = f"from {lazy_kubernetes.CLIENT}.models.v1_pod import V1Pod\n"
    # The rest of the file uses a deferred name at import time: trimming would break it.
    module, wrapped = lazy_loaded(deferred + "POD_FIELDS = V1Pod.attribute_map\n")
    assert wrapped.eager_runs == 1
    assert module.eager
    # No source to trim (a sourceless install): loaded as it is.
    module, wrapped = lazy_loaded(None)
    assert wrapped.eager_runs == 1
    # Nothing deferred: the file runs as it is.
    module, wrapped = lazy_loaded("VERSION = 1\n")
    assert wrapped.eager_runs == 1


def test_trimmed_package_runs_the_rest_of_its_file() -> None:
    module, wrapped = lazy_loaded(
        f"from {lazy_kubernetes.CLIENT}.models.v1_pod import V1Pod as Pod\n__all__ = ['Pod']\nVERSION = 1\n"
    )
    assert wrapped.eager_runs == 0
    assert module.VERSION == 1
    assert "Pod" in dir(module)
    assert "models" in dir(module)
    assert module.Pod.__name__ == "V1Pod"
    assert module.__dict__["Pod"] is module.Pod  # cached after the first look-up
