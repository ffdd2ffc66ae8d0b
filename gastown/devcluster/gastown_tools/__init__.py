"""Real Gas Town for the local-mode tests: gt, bd and Dolt built from pinned Go modules.

The pins live in ``pins.json`` next to this file (module, version, package, CGO,
ldflags), NOT under ``devcluster/modules``: that directory's hash keys the
Kubernetes lab cache, and these tools have their own key. ``go install mod@version``
does not work here (the module proxy answers 403 on ``@v/list`` during Go's
deprecation check), so each module is ``go mod download``-ed and its command is
built from the read-only copy in the module cache, with ``GOTOOLCHAIN=local``.

The result is cached under ``~/.cache/gastown/gastown-tools/<hash>/bin`` where the
hash covers the pins, the recipe and the Go version: change a pin and the next run
builds into a new directory.

The shim: gt v1.2.1 runs bd with ``BEADS_DOLT_DATA_DIR=<town>/.dolt-data``, and bd
v1.0.0 (gt's own pin) then opens the town's ``hq`` database instead of the rig's,
so ``gt sling`` fails with ``bead '<id>' not found``. ``bin/bd`` is therefore a
two-line wrapper that unsets that variable and runs the real bd (``bin/bd-real``).
No pinned bd the proxy serves was found to work without it (see RELIABILITY.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PINS_FILE = Path(__file__).with_name("pins.json")
REQUIRED = ("gt", "bd", "dolt")
# Bump when the way the tools are built changes, so caches of the old recipe are not reused.
_RECIPE = "1"

BD_SHIM = """#!/bin/sh
# gastown-operator test shim (see gastown/devcluster/gastown_tools): gt v1.2.1 sets
# BEADS_DOLT_DATA_DIR to the town's .dolt-data, which makes bd v1.0.0 read the town's
# hq database instead of the rig's. Without it bd finds the rig's database itself.
unset BEADS_DOLT_DATA_DIR
exec "$(dirname "$0")/bd-real" "$@"
"""


class GastownToolsMissingError(RuntimeError):
    """gt, bd or dolt are neither cached nor buildable; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Pin:
    """One pinned tool: which module version, which package, how to build it."""

    name: str
    module: str
    version: str
    package: str
    cgo: bool
    ldflags: str

    @property
    def ref(self) -> str:
        return f"{self.module}@{self.version}"


def pins() -> list[Pin]:
    data = json.loads(PINS_FILE.read_text())
    return [
        Pin(
            name=t["name"],
            module=t["module"],
            version=t["version"],
            package=t["package"],
            cgo=bool(t.get("cgo", False)),
            ldflags=t.get("ldflags", ""),
        )
        for t in data["tools"]
    ]


def pinned_versions() -> dict[str, str]:
    """tool -> the release it is (dolt's pseudo-version names its release in ``release``)."""
    data = json.loads(PINS_FILE.read_text())
    return {t["name"]: t.get("release", t["version"]) for t in data["tools"]}


def _go_version() -> str:
    if shutil.which("go") is None:
        return "no-go"
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False, env=env)
    return out.stdout.strip() or "unknown"


def tools_version() -> str:
    """A hash of the recipe and the pins (the Go version is checked at build time only)."""
    digest = hashlib.sha256(_RECIPE.encode() + b"\0" + PINS_FILE.read_bytes() + b"\0" + BD_SHIM.encode())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/gastown/gastown-tools`` (``~/.cache/gastown/gastown-tools`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gastown" / "gastown-tools"


def cached_bin_dir() -> Path:
    return cache_root() / tools_version() / "bin"


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED)


def find_bin_dir() -> Path | None:
    """``GASTOWN_TOOLS_BIN`` (a directory with gt, bd and dolt) first, then the cache."""
    given = os.environ.get("GASTOWN_TOOLS_BIN")
    if given and _complete(Path(given)):
        return Path(given)
    cached = cached_bin_dir()
    return cached if _complete(cached) else None


def missing_reason() -> str | None:
    """None when gt, bd and dolt are ready, else what to run."""
    if find_bin_dir() is not None:
        return None
    return (
        "Gas Town's gt, bd and dolt are not built: run `make gastown-tools` (Go builds of the pins in "
        f"gastown/devcluster/gastown_tools/pins.json into {cached_bin_dir()}, ~8 min cold; dolt needs "
        "gcc and libicu-dev), or set GASTOWN_TOOLS_BIN to a directory that has them"
    )


def _module_dir(pin: Pin, env: dict[str, str]) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", pin.ref], capture_output=True, text=True, env=env, check=False
    )
    try:
        info = json.loads(out.stdout)
    except json.JSONDecodeError:
        info = {}
    if out.returncode != 0 or "Dir" not in info:
        raise GastownToolsMissingError(f"go mod download {pin.ref} failed: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


def _build_env(pin: Pin) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=readonly"
    env["CGO_ENABLED"] = "1" if pin.cgo else "0"
    return env


def build(log: bool = True) -> Path:
    """Build whatever of gt, bd and dolt is missing from the cache; return the bin dir."""
    if shutil.which("go") is None:
        raise GastownToolsMissingError("Go is not installed: gt, bd and dolt are built with `go build`")
    target = cached_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    for pin in pins():
        binary = "bd-real" if pin.name == "bd" else pin.name
        if not (target / binary).is_file():
            env = _build_env(pin)
            if log:
                print(f"gastown-tools: building {pin.name} ({pin.ref}, {_go_version()})", file=sys.stderr)
            source = _module_dir(pin, env)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = Path(tmp) / binary
                flags = " ".join(filter(None, ["-s -w", pin.ldflags]))
                subprocess.run(
                    ["go", "build", "-trimpath", f"-ldflags={flags}", "-o", str(out), pin.package],
                    cwd=source,
                    env=env,
                    check=True,
                )
                os.replace(out, target / binary)
        if pin.name == "bd":
            shim = target / "bd"
            if not shim.is_file() or shim.read_text() != BD_SHIM:
                shim.write_text(BD_SHIM)
                shim.chmod(0o755)
    return target


def main() -> None:
    """``python -m gastown.devcluster.gastown_tools``: build (if needed) and print the bin dir."""
    given = os.environ.get("GASTOWN_TOOLS_BIN")
    if given and _complete(Path(given)):
        print(given)
        return
    print(build())
