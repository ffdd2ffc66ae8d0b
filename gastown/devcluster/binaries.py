"""Where the lab's binaries come from: a directory of ready binaries, or a Go build.

The pins are the Go modules under ``modules/<name>/go.mod`` (one per upstream
project, each listing its commands as ``tool`` directives, with ``replace`` lines
where an upstream module points its siblings at local paths). Building them takes
minutes, so the result is cached under ``~/.cache/gastown/lab/<lab version>/bin``,
where the lab version names the Kubernetes release and a hash of every pin: change
a pin and the next run builds into a new directory, never into a stale one.

``KUBEBUILDER_ASSETS`` (the variable controller-runtime's envtest uses) can point at
a directory of ready binaries instead; that is how a user with internet access
skips the build.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULES_DIR = Path(__file__).parent / "modules"

# Every binary the lab starts or hands to tests; helm is optional (the chart tests
# skip without it) and only built when its module is present.
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")

_TOOL_LINE = re.compile(r"^\s*tool\s+(\S+)\s*$")
_TOOL_BLOCK_ITEM = re.compile(r"^\s+(\S+)\s*$")
_K8S_REQUIRE = re.compile(r"k8s\.io/kubernetes\s+(v\S+)")


class LabBinariesMissingError(RuntimeError):
    """The lab cannot start: binaries are neither cached nor pointed at."""


@dataclass(frozen=True, slots=True)
class Module:
    """One pinned Go module and the commands (package paths) it builds."""

    name: str
    path: Path
    tools: tuple[str, ...]


def modules() -> list[Module]:
    """The pinned modules, read from their go.mod ``tool`` directives."""
    found = []
    for gomod in sorted(MODULES_DIR.glob("*/go.mod")):
        tools = _tools_of(gomod.read_text())
        if tools:
            found.append(Module(gomod.parent.name, gomod.parent, tuple(tools)))
    return found


def _tools_of(gomod: str) -> list[str]:
    tools: list[str] = []
    in_block = False
    for line in gomod.splitlines():
        if line.strip() == "tool (":
            in_block = True
        elif in_block and line.strip() == ")":
            in_block = False
        elif (in_block and (m := _TOOL_BLOCK_ITEM.match(line))) or (m := _TOOL_LINE.match(line)):
            tools.append(m.group(1))
    return tools


# Bump when the way binaries are built changes, so caches of the old recipe are not reused.
_RECIPE = "2"


def kubernetes_version() -> str:
    """The pinned k8s.io/kubernetes release, e.g. v1.37.2."""
    text = (MODULES_DIR / "kubernetes" / "go.mod").read_text()
    m = _K8S_REQUIRE.search(text)
    return m.group(1) if m else "unknown"


def _ldflags(module: str) -> str:
    flags = "-s -w"
    if module == "kubernetes":
        # Without these the binaries report v0.0.0-master, and kubectl warns about skew.
        version = kubernetes_version()
        major, minor = version.lstrip("v").split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += f" -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor}"
    return flags


def lab_version() -> str:
    """Kubernetes release plus a hash of every pin (go.mod and go.sum of each module)."""
    digest = hashlib.sha256(_RECIPE.encode())
    k8s = "unknown"
    for gomod in sorted(MODULES_DIR.glob("*/go.mod")):
        text = gomod.read_text()
        if m := _K8S_REQUIRE.search(text):
            k8s = m.group(1)
        digest.update(gomod.parent.name.encode() + b"\0" + text.encode())
        gosum = gomod.with_name("go.sum")
        if gosum.exists():
            digest.update(gosum.read_bytes())
    return f"{k8s}-{digest.hexdigest()[:10]}"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/gastown/lab`` (``~/.cache/gastown/lab`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gastown" / "lab"


def cached_bin_dir() -> Path:
    """The bin directory of this lab version (may not exist yet)."""
    return cache_root() / lab_version() / "bin"


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED)


def find_bin_dir() -> Path | None:
    """Ready binaries: ``KUBEBUILDER_ASSETS`` first, then the cache; None if neither."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _complete(Path(assets)):
        return Path(assets)
    cached = cached_bin_dir()
    return cached if _complete(cached) else None


def bin_dir() -> Path:
    """Ready binaries, or a clear error saying how to get them."""
    found = find_bin_dir()
    if found is None:
        raise LabBinariesMissingError(
            "the test lab's binaries are not built: run `make lab` (builds etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler, kubectl and kwok with Go into "
            f"{cached_bin_dir()}), or set KUBEBUILDER_ASSETS to a directory that has them"
        )
    return found


def helm_binary() -> Path | None:
    """The helm CLI built with the lab, if its module is pinned and built."""
    found = find_bin_dir()
    for directory in (found, cached_bin_dir()):
        if directory is not None and (directory / "helm").is_file():
            return directory / "helm"
    on_path = shutil.which("helm")
    return Path(on_path) if on_path else None


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "") + " -mod=mod"
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "auto")
    version = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    if m := re.match(r"go1\.(\d+)", version):
        minor = int(m.group(1))
        if minor > 26:
            # Newer Go switches encoding/json to v2 semantics, and the apiserver then
            # serves a broken OpenAPI document.
            env["GOEXPERIMENT"] = ",".join(filter(None, [env.get("GOEXPERIMENT", ""), "nojsonv2"]))
    return env


def build(log: bool = True) -> Path:
    """Build every pinned module's tools into the cache (only what is missing)."""
    if shutil.which("go") is None:
        raise LabBinariesMissingError("Go is not installed: the lab builds its binaries with `go build`")
    target = cached_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    for module in modules():
        # etcd's command lives at go.etcd.io/etcd/server/v3, so its last element is "v3".
        wanted = {tool: "etcd" if module.name == "etcd" else tool.rsplit("/", 1)[-1] for tool in module.tools}
        missing = [tool for tool, name in wanted.items() if not (target / name).is_file()]
        if not missing:
            continue
        if log:
            print(f"lab: building {', '.join(missing)} ({module.name})", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            for tool in missing:
                out = Path(tmp) / wanted[tool]
                subprocess.run(
                    ["go", "build", "-trimpath", f"-ldflags={_ldflags(module.name)}", "-o", str(out), tool],
                    cwd=module.path,
                    env=env,
                    check=True,
                )
                os.replace(out, target / wanted[tool])
    return target


def main() -> None:
    """``python -m gastown.devcluster.binaries``: build (if needed) and print the bin dir."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _complete(Path(assets)):
        print(assets)
        return
    print(build())


if __name__ == "__main__":
    main()
