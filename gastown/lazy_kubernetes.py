"""Load kubernetes_asyncio's generated API and model classes on first use, not all at import.

Why: ``kubernetes_asyncio.client/__init__.py`` (and ``client.api`` / ``client.models``) eagerly
import every generated API class (~65 modules) and every model class (~770 modules). The operator
speaks raw JSON on its hot paths (see :mod:`gastown.kube`) and touches a handful of them
(``ApiClient``, ``Configuration``, the exceptions...). Measured with ``ru_maxrss``
on Python 3.11 / kubernetes_asyncio 36.1: ``import kubernetes_asyncio.client`` costs ~38 MiB
on top of aiohttp, and importing the operator's parts (manager, both executors, webhook) reaches
~102 MiB before a single object is cached; with this shim the same imports reach ~68 MiB,
against an issue-9 budget of 100 MiB for the whole operator with 10k Polecats and Pods cached.
bench/README.md ("Memory") has the method and the figures.

How: a ``sys.meta_path`` finder that claims exactly three packages —
``kubernetes_asyncio.client``, ``.client.api`` and ``.client.models`` — finds their real spec
with the other finders and wraps the loader. The wrapped loader reads the package's own
``__init__.py`` source, parses it, and takes out the top-level
``from kubernetes_asyncio.client.{api,models}.<module> import <Name>`` statements; everything
else in the file (``ApiClient``, ``Configuration``, the exceptions, ``__all__``,
``__version__``) runs as written. The removed imports become a PEP 562 module ``__getattr__``:
the first ``client.V1Pod``, ``from kubernetes_asyncio.client import V1Secret`` or
``getattr(kubernetes_asyncio.client.models, "V1Pod")`` (how ``ApiClient.deserialize`` resolves
type names) imports that one module and stores the class in the package namespace, so later
look-ups are plain dictionary hits. Submodules the eager file would have bound as attributes
(``client.api``, ``models.v1_pod``) are imported on access too, ``dir()`` lists every name, and
``from ... import *`` still honours ``__all__`` (loading everything, as before).

Contract and safety:
- :func:`install` must run before anything imports ``kubernetes_asyncio.client``;
  ``gastown/__init__.py`` calls it. If the client is already imported it does nothing (the
  classes are loaded; a half-lazy package would gain nothing), and calling it twice is harmless.
- The map of lazy names is derived from the installed package's own source, so it follows the
  library's version; nothing is hard-coded. If the source cannot be read (a sourceless install)
  or the trimmed file fails to run, the package is loaded the ordinary, eager way.
- Static type checkers never run this code: they read the real modules and their stubs, so
  ``client.V1Pod`` keeps its type.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["CLIENT", "LAZY_PACKAGES", "install", "is_installed"]

log = logging.getLogger(__name__)

CLIENT = "kubernetes_asyncio.client"
# The packages whose __init__ imports every generated class.
LAZY_PACKAGES = frozenset({CLIENT, f"{CLIENT}.api", f"{CLIENT}.models"})
# `from <one of these>.<module> import <Name>` statements are the ones deferred.
_DEFERRED_PARENTS = (f"{CLIENT}.api", f"{CLIENT}.models")


def install() -> bool:
    """Put the lazy finder first on ``sys.meta_path``; True if this call installed it.

    Does nothing (returns False) when it is already installed or when
    ``kubernetes_asyncio.client`` has already been imported the eager way.
    """
    if CLIENT in sys.modules or is_installed():
        return False
    sys.meta_path.insert(0, _LazyPackageFinder())
    return True


def is_installed() -> bool:
    """Whether the lazy finder is on ``sys.meta_path``."""
    return any(isinstance(finder, _LazyPackageFinder) for finder in sys.meta_path)


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    """Finds the three packages with the other finders and wraps their loaders."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if hasattr(spec.loader, "get_source") and hasattr(spec.loader, "get_filename"):
                spec.loader = _LazyPackageLoader(spec.loader)
            return spec
        return None


class _LazyPackageLoader(importlib.abc.Loader):
    """Runs a package's ``__init__`` without its per-class imports; serves them on demand."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        # get_filename, get_resource_reader, is_package...: the real loader answers.
        return getattr(self._wrapped, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create: Callable[[importlib.machinery.ModuleSpec], ModuleType | None] = self._wrapped.create_module
        return create(spec)

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        trimmed = _trim(self._wrapped, name)
        if trimmed is None:
            self._wrapped.exec_module(module)
            return
        code, deferred = trimmed
        namespace = module.__dict__
        try:
            exec(code, namespace)
        except Exception:  # the library changed shape: fall back to the eager file
            log.warning("lazy import of %s failed; importing it eagerly", name, exc_info=True)
            self._wrapped.exec_module(module)
            return
        _make_lazy(module, deferred)


def _trim(loader: Any, name: str) -> tuple[Any, dict[str, tuple[str, str]]] | None:
    """The package's code without its deferred imports, and ``{name: (module, attribute)}``."""
    try:
        source = loader.get_source(name)
        filename = loader.get_filename(name)
    except (ImportError, OSError, AttributeError):
        return None
    if source is None:
        return None
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None
    deferred: dict[str, tuple[str, str]] = {}
    kept: list[ast.stmt] = []
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module is not None
            and node.module.rpartition(".")[0] in _DEFERRED_PARENTS
            and all(alias.name != "*" for alias in node.names)
        ):
            for alias in node.names:
                deferred[alias.asname or alias.name] = (node.module, alias.name)
        else:
            kept.append(node)
    if not deferred:
        return None
    tree.body = kept
    return compile(tree, filename, "exec", dont_inherit=True), deferred


def _make_lazy(module: ModuleType, deferred: dict[str, tuple[str, str]]) -> None:
    """Give ``module`` a PEP 562 ``__getattr__``/``__dir__`` serving the deferred names."""
    name = module.__name__
    namespace = module.__dict__
    prefix = name + "."
    # Submodules the eager file would have left bound as attributes: for `from
    # kubernetes_asyncio.client.api.core_v1_api import ...` run in `client`, that is `api`.
    submodules = {target[len(prefix) :].partition(".")[0] for target, _ in deferred.values()}

    def __getattr__(attribute: str) -> Any:  # noqa: N807 - PEP 562 hook
        target = deferred.get(attribute)
        if target is not None:
            value = getattr(importlib.import_module(target[0]), target[1])
            namespace[attribute] = value
            return value
        if attribute in submodules:
            return importlib.import_module(prefix + attribute)
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    def __dir__() -> list[str]:  # noqa: N807 - PEP 562 hook
        return sorted(set(namespace) | set(deferred) | submodules)

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
