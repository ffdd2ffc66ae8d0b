"""What the lab's real node needs from this machine: a kubelet, a pause image, and
containerd, runc and the CNI plugins.

The kubelet is built from ``node_module/go.mod``, which pins the same
``k8s.io/kubernetes`` release as the lab's own module but lives outside
``modules/``: the lab's cache key hashes every module there, and a kubelet added
to it would throw away every lab cache already built. The node's cache key hashes
``node_module`` the same way, so a changed pin builds into a new directory.

The pause image (every Pod's sandbox) is Kubernetes' own ``build/pause/linux/pause.c``
from the Go module cache, compiled static with ``gcc`` and wrapped here as a
one-layer OCI image archive (no registry, no image builder): containerd imports it
with ``ctr images import``.

containerd, runc and the CNI plugins come from Debian (``make node`` installs them);
:func:`missing_host_tools` says which are absent.

``python -m gastown.devcluster.node_binaries`` builds what is missing and prints the
cache directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gastown.devcluster import binaries

NODE_MODULE_DIR = Path(__file__).parent / "node_module"
PAUSE_IMAGE = "localhost/gastown/pause:lab"
CNI_BIN_DIR = Path("/usr/lib/cni")
# Host tools the node runs, and the Debian package each comes from.
HOST_TOOLS: dict[str, str] = {
    "/usr/bin/containerd": "containerd",
    "/usr/bin/ctr": "containerd",
    "/usr/sbin/runc": "runc",
    str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
    str(CNI_BIN_DIR / "host-local"): "containernetworking-plugins",
    str(CNI_BIN_DIR / "loopback"): "containernetworking-plugins",
    "/usr/sbin/ip": "iproute2",
}
# Bump when the way the node's pieces are built changes.
_RECIPE = "1"


class NodeBinariesMissingError(RuntimeError):
    """The real node cannot start here; the message says what to run."""


@dataclass(frozen=True, slots=True)
class NodeBinaries:
    """The built pieces of the real node."""

    kubelet: Path
    pause_archive: Path


def node_version() -> str:
    """Kubernetes release plus a hash of the kubelet's pin and this recipe."""
    digest = hashlib.sha256(_RECIPE.encode())
    for name in ("go.mod", "go.sum"):
        digest.update(name.encode() + b"\0" + (NODE_MODULE_DIR / name).read_bytes())
    return f"{binaries.kubernetes_version()}-{digest.hexdigest()[:10]}"


def cache_dir() -> Path:
    """``~/.cache/gastown/node/<node version>`` (beside the lab's cache, not in it)."""
    return binaries.cache_root().parent / "node" / node_version()


def _expected() -> NodeBinaries:
    root = cache_dir()
    return NodeBinaries(kubelet=root / "bin" / "kubelet", pause_archive=root / "pause.oci.tar")


def find() -> NodeBinaries | None:
    """The built kubelet and pause image, or None if either is missing."""
    found = _expected()
    return found if found.kubelet.is_file() and found.pause_archive.is_file() else None


def missing_host_tools() -> list[str]:
    """Debian packages whose programs the node needs and this machine lacks."""
    return sorted({pkg for path, pkg in HOST_TOOLS.items() if not Path(path).exists()})


def why_not_available() -> str | None:
    """None when a real node can start here, else what is missing and how to fix it."""
    if sys.platform != "linux":
        return "a real node needs Linux (cgroups, namespaces, overlayfs)"
    if os.geteuid() != 0:
        return "a real node needs root (containerd and the kubelet mount and make cgroups)"
    missing = missing_host_tools()
    if missing:
        return f"Debian packages missing: {' '.join(missing)}: run `make node` (apt-get install)"
    if find() is None:
        return f"the kubelet or the pause image is not built: run `make node` (builds into {cache_dir()})"
    return None


# -- building ---------------------------------------------------------------------------
def _pause_source() -> Path:
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=binaries._go_env()
    ).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{binaries.kubernetes_version()}/build/pause/linux/pause.c"
    if not source.is_file():
        subprocess.run(
            ["go", "mod", "download", "k8s.io/kubernetes"],
            cwd=NODE_MODULE_DIR,
            env=binaries._go_env(),
            check=True,
        )
    return source


def _build_kubelet(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "kubelet"
        subprocess.run(
            [
                "go",
                "build",
                "-trimpath",
                f"-ldflags={binaries._ldflags('kubernetes')}",
                "-o",
                str(out),
                "k8s.io/kubernetes/cmd/kubelet",
            ],
            cwd=NODE_MODULE_DIR,
            env=binaries._go_env(),
            check=True,
        )
        os.replace(out, target)


def _build_pause(target: Path) -> None:
    if shutil.which("gcc") is None:
        raise NodeBinariesMissingError("gcc is missing (the pause image is built from pause.c): make node")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(
            ["gcc", "-Os", "-Wall", "-Werror", "-static", "-o", str(binary), str(_pause_source())],
            check=True,
        )
        subprocess.run(["strip", str(binary)], check=False)
        archive = Path(tmp) / "pause.oci.tar"
        archive.write_bytes(oci_archive(PAUSE_IMAGE, {"pause": binary.read_bytes()}, entrypoint=["/pause"]))
        os.replace(archive, target)


def build(log: bool = True) -> NodeBinaries:
    """Build the kubelet and the pause image into the cache (only what is missing)."""
    if shutil.which("go") is None:
        raise NodeBinariesMissingError("Go is not installed: the kubelet is built with `go build`")
    wanted = _expected()
    wanted.kubelet.parent.mkdir(parents=True, exist_ok=True)
    if not wanted.kubelet.is_file():
        if log:
            print(f"node: building kubelet {binaries.kubernetes_version()}", file=sys.stderr, flush=True)
        _build_kubelet(wanted.kubelet)
    if not wanted.pause_archive.is_file():
        if log:
            print("node: building the pause image from pause.c", file=sys.stderr, flush=True)
        _build_pause(wanted.pause_archive)
    return wanted


# -- a one-layer OCI image, written by hand ---------------------------------------------
def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _tar_bytes(files: dict[str, bytes], *, mode: int = 0o755) -> bytes:
    """A deterministic tar of ``files`` (owner root, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_archive(ref: str, files: dict[str, bytes], *, entrypoint: list[str]) -> bytes:
    """An OCI image layout, as a tar, holding one image named ``ref`` with one layer.

    ``io.containerd.image.name`` in the index is what ``ctr images import`` names the
    image by; ``org.opencontainers.image.ref.name`` is the tag for other tools.
    """
    layer_tar = _tar_bytes(files)
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer_digest, layer = _blob(gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_digest, config_blob = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_digest, manifest_blob = _blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    files_out = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for digest, data in (
        (layer_digest, layer),
        (config_digest, config_blob),
        (manifest_digest, manifest_blob),
    ):
        files_out["blobs/sha256/" + digest.split(":", 1)[1]] = data
    return _tar_bytes(files_out, mode=0o644)


def main() -> None:
    """``python -m gastown.devcluster.node_binaries``: build (if needed) and print the cache dir."""
    built = build()
    print(built.kubelet.parent.parent)


if __name__ == "__main__":
    main()
