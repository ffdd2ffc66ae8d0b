"""The operator and agent images, built here from this repository's Dockerfiles.

The lab has no registry but Debian, PyPI and npm, and no Docker engine, so it builds the
images the way a user would (``buildah bud`` of ``Dockerfile`` and ``Dockerfile.agent``),
changing only what the Dockerfiles expose as build arguments:

- ``BASE``: a Debian bookworm root filesystem with Python 3.11 made here by ``mmdebstrap``
  (from Debian's archive, which containers reach over plain http) and imported into
  buildah's storage, instead of ``python:3.11-slim`` from Docker Hub;
- ``WHEELHOUSE``: wheels downloaded on this host with the ordinary pip client and put in
  the build context, because pip inside a container build cannot verify the TLS of the
  way this machine reaches PyPI;
- ``INSTALL_CLAUDE_CODE=false``: the lab's Pods run a stand-in agent through the same
  runner, and Claude Code's native binary (~400 MB) would only slow every build and import.

The results are OCI archives that containerd's ``ctr -n k8s.io images import`` accepts
(named by the ``io.containerd.image.name`` annotation), cached under
``~/.cache/gastown/images/<inputs hash>/``, where the hash covers everything the images are
made from (Dockerfiles, .dockerignore, pyproject.toml, README.md, the gastown/ sources, the
base recipe and the build arguments): change any of it and the next build lands in a new
directory. The base root filesystem and the wheels are cached on their own, as they change
rarely; buildah keeps its layer cache in ``images/storage``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

OPERATOR_REF = "localhost/gastown/operator:lab"
AGENT_REF = "localhost/gastown/agent:lab"

# Bump when the way images are built changes, so caches of the old recipe are not reused.
_RECIPE = "1"

# The base: what python:3.11-slim gives the Dockerfiles (python, venv, CA certificates;
# useradd comes with minbase's Priority: required packages), from Debian bookworm.
BASE_SUITE = "bookworm"
BASE_PYTHON = "3.11"
BASE_GLIBC_MINOR = 36  # bookworm's glibc 2.36
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)

# Files and directories the Dockerfiles COPY (with .dockerignore, what the context holds).
CONTEXT_FILES = ("Dockerfile", "Dockerfile.agent", ".dockerignore", "pyproject.toml", "README.md")
CONTEXT_DIRS = ("gastown",)
_IGNORED_DIRS = frozenset({"__pycache__"})
_IGNORED_SUFFIXES = (".pyc",)

# The wheelhouse's directory in the build context (git-ignored, allowed by .dockerignore).
WHEELHOUSE_DIR = ".wheelhouse"

# Archives of this many builds are kept (switching branches back and forth stays instant).
KEEP_BUILDS = 3

ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"


class ImagesError(RuntimeError):
    """The lab images cannot be built (a missing tool, or a failed step, with its log)."""


@dataclass(frozen=True)
class LabImages:
    """The two images, as OCI archives for ``ctr -n k8s.io images import``."""

    operator_ref: str
    operator_archive: Path
    agent_ref: str
    agent_archive: Path


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image: which Dockerfile, under which name, with which extra build arguments."""

    name: str
    dockerfile: str
    ref: str
    extra_args: tuple[tuple[str, str], ...] = ()


IMAGES = (
    ImageSpec("operator", "Dockerfile", OPERATOR_REF),
    ImageSpec("agent", "Dockerfile.agent", AGENT_REF, (("INSTALL_CLAUDE_CODE", "false"),)),
)


# -- pure parts: what the cache keys and build arguments are -------------------------------


def base_recipe() -> str:
    """Everything the base root filesystem is made from, as one text (hashed for its key)."""
    return "\n".join(
        [f"recipe {_RECIPE}", f"suite {BASE_SUITE}", "variant minbase", *BASE_PACKAGES, *BASE_SOURCES]
    )


def base_key() -> str:
    return hashlib.sha256(base_recipe().encode()).hexdigest()[:16]


def base_ref() -> str:
    """The base image's name in buildah's storage (its key is part of it)."""
    return f"localhost/gastown/base:{base_key()}"


def build_args(spec: ImageSpec, base: str, wheelhouse: str) -> list[str]:
    """``--build-arg`` flags for one image: the base, the wheelhouse, then its own."""
    pairs = [("BASE", base), ("WHEELHOUSE", wheelhouse), *spec.extra_args]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{spec.name}: build arguments given twice: {names}")
    return [flag for name, value in pairs for flag in ("--build-arg", f"{name}={value}")]


def context_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    """The files of the build context that the images are made from, in a stable order."""
    for name in CONTEXT_FILES:
        yield root / name
    for directory in CONTEXT_DIRS:
        for dirpath, dirnames, filenames in os.walk(root / directory):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
            for filename in sorted(filenames):
                if not filename.endswith(_IGNORED_SUFFIXES):
                    yield Path(dirpath) / filename


def inputs_key(root: Path = REPO_ROOT) -> str:
    """A hash of every input: context files (path and bytes), base recipe, build arguments."""
    digest = hashlib.sha256(f"recipe {_RECIPE}\n".encode())
    digest.update(base_recipe().encode())
    for spec in IMAGES:
        digest.update(repr((spec.name, spec.dockerfile, spec.ref, spec.extra_args)).encode())
    for path in context_files(root):
        if not path.is_file():
            raise ImagesError(f"{path} is missing: the images are built from a checkout of the repository")
        digest.update(b"\0" + path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def wheel_requirements(pyproject: Mapping[str, object]) -> list[str]:
    """What the wheelhouse must hold: the project's dependencies and its build backend."""
    project = pyproject.get("project")
    build_system = pyproject.get("build-system")
    deps = project.get("dependencies", []) if isinstance(project, dict) else []
    backend = build_system.get("requires", []) if isinstance(build_system, dict) else []
    # `wheel` for setuptools releases that still ask for it when building a wheel.
    return sorted({*deps, *backend, "wheel"})


def wheel_platforms(machine: str, glibc_minor: int = BASE_GLIBC_MINOR) -> list[str]:
    """``pip download --platform`` values for the base's glibc: pip does not widen one
    ``manylinux_2_N`` tag to the older ones a glibc 2.N system also runs, so list them all."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 4, -1)]
    return [*tags, *(f"{legacy}_{machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1"))]


def wheelhouse_key(requirements: Sequence[str]) -> str:
    text = "\n".join([f"python {BASE_PYTHON}", f"machine {platform.machine()}", *requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mark_for_containerd(index: dict[str, object], ref: str) -> dict[str, object]:
    """The OCI index with every manifest named ``ref`` the way ``ctr images import`` reads it."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise ImagesError(f"OCI index for {ref} has no manifests: {index}")
    named = []
    for manifest in manifests:
        annotations = dict(manifest.get("annotations") or {})
        annotations[ANNOTATION_NAME] = ref
        annotations[ANNOTATION_REF] = ref.rsplit(":", 1)[-1]
        named.append({**manifest, "annotations": annotations})
    return {**index, "manifests": named}


# -- where things are cached ---------------------------------------------------------------


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/gastown/images`` (``~/.cache/gastown/images`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gastown" / "images"


def images_dir(key: str | None = None) -> Path:
    return cache_root() / (key or inputs_key())


def base_rootfs() -> Path:
    return cache_root() / "base" / base_key() / "rootfs.tar"


def storage_root() -> Path:
    """buildah's storage (layer cache) for the lab's builds, apart from the system's."""
    return cache_root() / "storage"


def _lab_images(directory: Path) -> LabImages:
    return LabImages(
        operator_ref=OPERATOR_REF,
        operator_archive=directory / "operator.tar",
        agent_ref=AGENT_REF,
        agent_archive=directory / "agent.tar",
    )


def find_images() -> LabImages | None:
    """The images built from the current sources, or None if they are not built yet."""
    try:
        directory = images_dir()
    except ImagesError:
        return None
    if not (directory / "images.json").is_file():
        return None
    found = _lab_images(directory)
    if not (found.operator_archive.is_file() and found.agent_archive.is_file()):
        return None
    return found


# -- building ----------------------------------------------------------------------------


class _Builder:
    """Runs buildah against the lab's own storage, logging every command's output to a file."""

    def __init__(self, log_path: Path, runroot: Path) -> None:
        self.log_path = log_path
        self.runroot = runroot
        self.driver = os.environ.get("STORAGE_DRIVER", "overlay")

    def buildah(self, *args: str, cwd: Path | None = None) -> str:
        argv = [
            "buildah",
            "--root",
            str(storage_root()),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]
        return self.run(argv, cwd=cwd)

    def run(self, argv: list[str], cwd: Path | None = None) -> str:
        with self.log_path.open("a") as log:
            log.write(f"\n$ {' '.join(argv)}\n")
            log.flush()
            result = subprocess.run(
                argv,
                check=False,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            log.write(result.stdout)
        if result.returncode != 0:
            tail = "".join(self.log_path.read_text().splitlines(keepends=True)[-30:])
            raise ImagesError(
                f"`{' '.join(argv[:6])} ...` failed (exit {result.returncode}); log {self.log_path}:\n{tail}"
            )
        return result.stdout


def _step(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def _require_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        raise ImagesError(
            f"{' and '.join(missing)} not installed: run `make images` (it installs the Debian "
            "packages buildah and mmdebstrap) or `apt-get install buildah mmdebstrap`"
        )
    if os.geteuid() != 0:
        raise ImagesError("the lab images are built as root (buildah --isolation chroot); run as root")


def _ensure_base_rootfs(builder: _Builder) -> Path:
    target = base_rootfs()
    if target.is_file():
        return target
    _step(f"making the {BASE_SUITE} base with mmdebstrap (first run only, ~2 min)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.tar")
    builder.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE,
            str(partial),
            *BASE_SOURCES,
        ]
    )
    os.replace(partial, target)
    return target


def _ensure_base_image(builder: _Builder) -> str:
    ref = base_ref()
    listed = builder.buildah("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}")
    if ref in listed.split():
        return ref
    rootfs = _ensure_base_rootfs(builder)
    _step(f"importing the base into buildah as {ref}")
    container = builder.buildah("from", "--pull=never", "scratch").strip()
    try:
        builder.buildah("add", container, str(rootfs), "/")
        builder.buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            container,
        )
        builder.buildah("commit", "--quiet", container, ref)
    finally:
        builder.buildah("rm", container)
    return ref


def _ensure_wheels(builder: _Builder) -> Path:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requirements = wheel_requirements(pyproject)
    target = cache_root() / "wheels" / wheelhouse_key(requirements)
    if (target / ".complete").is_file():
        return target
    _step(f"downloading {len(requirements)} requirements' wheels for Python {BASE_PYTHON} with pip")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    builder.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", BASE_PYTHON,
            *(flag for tag in wheel_platforms(platform.machine()) for flag in ("--platform", tag)),
            "--dest", str(partial), *requirements,
        ]
    )  # fmt: skip
    (partial / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


def _stage_wheelhouse(wheels: Path) -> Path:
    """Put the wheels in the build context's .wheelhouse/ (hard links where possible)."""
    staged = REPO_ROOT / WHEELHOUSE_DIR
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    for wheel in wheels.glob("*.whl"):
        try:
            os.link(wheel, staged / wheel.name)
        except OSError:
            shutil.copy2(wheel, staged / wheel.name)
    return staged


def _write_archive(builder: _Builder, ref: str, archive: Path, workdir: Path) -> None:
    """Push ``ref`` as an OCI layout, name it for containerd, and tar it into ``archive``."""
    layout = workdir / f"{archive.stem}-layout"
    # Uncompressed layers: the archive never leaves this machine, and gzip costs more CPU here
    # than the extra bytes cost disk.
    builder.buildah("push", "--quiet", "--disable-compression", ref, f"oci:{layout}")
    index_path = layout / "index.json"
    index_path.write_text(json.dumps(mark_for_containerd(json.loads(index_path.read_text()), ref)))
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    shutil.rmtree(layout)


def build_images() -> LabImages:
    """Build whatever of the two images is not built for the current sources; return both."""
    found = find_images()
    if found is not None:
        return found
    _require_tools()
    key = inputs_key()
    target = images_dir(key)
    cache_root().mkdir(parents=True, exist_ok=True)
    log_path = cache_root() / f"build-{key}.log"
    log_path.write_text("")
    with tempfile.TemporaryDirectory(prefix="gastown-images-") as tmp:
        builder = _Builder(log_path, Path(tmp) / "run")
        base = _ensure_base_image(builder)
        wheels = _ensure_wheels(builder)
        staged = _stage_wheelhouse(wheels)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for spec in IMAGES:
                started = time.monotonic()
                _step(f"building {spec.ref} from {spec.dockerfile}")
                builder.buildah(
                    "bud", "--isolation", "chroot", "--layers", "--pull=never", "--quiet",
                    *build_args(spec, base, WHEELHOUSE_DIR),
                    "-f", spec.dockerfile, "-t", spec.ref, ".",
                    cwd=REPO_ROOT,
                )  # fmt: skip
                _write_archive(builder, spec.ref, partial / f"{spec.name}.tar", Path(tmp))
                _step(f"{spec.ref} done in {time.monotonic() - started:.1f} s")
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        manifest = {spec.name: {"ref": spec.ref, "archive": f"{spec.name}.tar"} for spec in IMAGES}
        (partial / "images.json").write_text(json.dumps({"key": key, "images": manifest}, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    _prune(keep=KEEP_BUILDS)
    # Not find_images(): a source edited during the build would send it to another key.
    return _lab_images(target)


def _prune(keep: int) -> None:
    """Remove all but the ``keep`` newest builds' archives (each source change makes one)."""
    builds = sorted(
        (d for d in cache_root().iterdir() if d.is_dir() and (d / "images.json").is_file()),
        key=lambda d: (d / "images.json").stat().st_mtime,
        reverse=True,
    )
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        (cache_root() / f"build-{old.name}.log").unlink(missing_ok=True)


def main() -> None:
    """``python -m gastown.devcluster.images``: build (if needed) and print where they are."""
    started = time.monotonic()
    try:
        built = build_images()
    except ImagesError as error:
        print(f"images: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    for ref, archive in (
        (built.operator_ref, built.operator_archive),
        (built.agent_ref, built.agent_archive),
    ):
        print(f"{ref}\t{archive}")
    _step(f"ready in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
