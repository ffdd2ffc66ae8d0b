"""The hand-written OCI archive of the real node's pause image: a layout containerd can import.

(The real import is exercised by every real-node test: containerd imports this archive and
runs the pause image as each Pod's sandbox.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from gastown.devcluster.node_binaries import oci_archive


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _blob(files: dict[str, bytes], digest: str) -> bytes:
    data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, "blob does not match its digest"
    return data


def test_archive_is_an_oci_layout_named_for_containerd() -> None:
    archive = oci_archive("localhost/x/pause:lab", {"pause": b"\x7fELF binary"}, entrypoint=["/pause"])
    files = _members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/x/pause:lab"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "lab"

    manifest = json.loads(_blob(files, entry["digest"]))
    config = json.loads(_blob(files, manifest["config"]["digest"]))
    [layer_desc] = manifest["layers"]
    layer = gzip.decompress(_blob(files, layer_desc["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.mode, member.uid) == ("pause", 0o755, 0)


def test_archive_is_reproducible() -> None:
    args = ("localhost/x/pause:lab", {"pause": b"same"})
    assert oci_archive(*args, entrypoint=["/pause"]) == oci_archive(*args, entrypoint=["/pause"])
