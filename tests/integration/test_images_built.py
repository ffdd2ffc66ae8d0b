"""The images ``make images`` built from Dockerfile and Dockerfile.agent, checked as archives.

Each test reads the OCI archive the real node imports (index → manifest → config) and
runs commands inside the image made from that archive (``buildah from oci-archive:`` +
``buildah run`` as the image's own user), so what is checked is what containerd gets.
Running the images as Pods on a real kubelet is the real-node suite's job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gastown.devcluster import images
from gastown.devcluster.images import LabImages
from tests.support.ci import unavailable


@dataclass(frozen=True)
class Archive:
    """An OCI archive's index, its one manifest and the image config."""

    index: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]


def read_archive(path: Path) -> Archive:
    with tarfile.open(path) as tar:

        def blob(digest: str) -> dict[str, Any]:
            algorithm, hexdigest = digest.split(":", 1)
            member = tar.extractfile(f"blobs/{algorithm}/{hexdigest}")
            assert member is not None, digest
            data: dict[str, Any] = json.load(member)
            return data

        layout = tar.extractfile("oci-layout")
        assert layout is not None and json.load(layout)["imageLayoutVersion"] == "1.0.0"
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        [entry] = index["manifests"]
        manifest = blob(entry["digest"])
        config = blob(manifest["config"]["digest"])
        names = set(tar.getnames())
        for layer in manifest["layers"]:
            assert "blobs/" + layer["digest"].replace(":", "/") in names, "every layer is in the archive"
    return Archive(index, manifest, config)


class Image:
    """A working container from an OCI archive, in the lab's buildah storage."""

    def __init__(self, archive: Path, runroot: Path) -> None:
        self.base = [
            "buildah",
            "--root",
            str(images.storage_root()),
            "--runroot",
            str(runroot),
            "--storage-driver",
            os.environ.get("STORAGE_DRIVER", "overlay"),
        ]
        self.container = self._buildah("from", "--pull=always", "--quiet", f"oci-archive:{archive}").strip()

    def _buildah(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
        return done.stdout

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` in the image, as its configured user, with its environment."""
        return subprocess.run(
            [*self.base, "run", "--isolation", "chroot", self.container, "--", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def remove(self) -> None:
        self._buildah("rm", self.container)


@pytest.fixture(scope="module")
def runroot() -> Iterator[Path]:
    if shutil.which("buildah") is None or os.geteuid() != 0:
        unavailable("running the images needs buildah and root (make images installs buildah)")
    with tempfile.TemporaryDirectory(prefix="gastown-images-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def operator(lab_images: LabImages, runroot: Path) -> Iterator[Image]:
    image = Image(lab_images.operator_archive, runroot)
    yield image
    image.remove()


@pytest.fixture(scope="module")
def agent(lab_images: LabImages, runroot: Path) -> Iterator[Image]:
    image = Image(lab_images.agent_archive, runroot)
    yield image
    image.remove()


def test_archives_are_named_for_containerd(lab_images: LabImages) -> None:
    for ref, path in (
        (lab_images.operator_ref, lab_images.operator_archive),
        (lab_images.agent_ref, lab_images.agent_archive),
    ):
        [entry] = read_archive(path).index["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == ref
    assert lab_images.operator_ref == "localhost/gastown/operator:lab"
    assert lab_images.agent_ref == "localhost/gastown/agent:lab"


def test_operator_config_runs_tini_as_numeric_non_root(lab_images: LabImages) -> None:
    config = read_archive(lab_images.operator_archive).config["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["tini", "--", "gastown-operator", "run"]
    assert "/opt/venv/bin" in next(e for e in config["Env"] if e.startswith("PATH=")).split("=", 1)[1].split(
        ":"
    )
    assert {"9443/tcp", "8080/tcp", "8081/tcp"} <= set(config["ExposedPorts"])


def test_agent_config_keeps_tini_as_pid_1_for_the_pods_args(lab_images: LabImages) -> None:
    archive = read_archive(lab_images.agent_archive)
    config = archive.config["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["tini", "--"]
    assert config["Cmd"] == ["gastown-agent", "run"]
    assert config["WorkingDir"] == "/workspace"
    assert "HOME=/home/polecat" in config["Env"]


def test_operator_venv_imports_gastown_and_its_dependencies(operator: Image) -> None:
    done = operator.run(
        "python", "-c",
        "import gastown.cli.operator, gastown.controller, gastown.webhook, kubernetes_asyncio, pydantic, "
        "orjson, cryptography, asyncssh; import os; print(os.getuid(), os.getgid())",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["65532", "65532"]
    help_text = operator.run("gastown-operator", "run", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "--webhook-port" in help_text.stdout
    tini = operator.run("tini", "--version")
    assert tini.returncode == 0 and "tini version" in tini.stdout, tini.stderr


def test_agent_has_the_runner_git_ssh_and_a_passwd_entry(agent: Image) -> None:
    done = agent.run(
        "sh", "-c",
        "for c in gastown-agent git ssh tini; do command -v $c || exit 1; done "
        "&& id -u && id -g && getent passwd 10001 && git --version "
        "&& ssh -V 2>&1 && test -w /workspace && python -c 'import gastown.runner.agent'",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "/opt/venv/bin/gastown-agent",
        "/usr/bin/git",
        "/usr/bin/ssh",
        "/usr/bin/tini",
    ]
    assert lines[4:6] == ["10001", "10001"]
    assert lines[6].startswith("polecat:x:10001:10001:"), "ssh looks the user up"
    assert any(line.startswith("OpenSSH_") for line in lines)
    usage = agent.run("gastown-agent", "--help")
    assert usage.returncode == 0, usage.stderr
    assert "clone" in usage.stdout and "run" in usage.stdout


def test_agent_runner_is_installed_without_the_operators_dependencies(agent: Image) -> None:
    """The runner is standard-library only; the image carries no kubernetes client or pydantic."""
    done = agent.run(
        "python", "-c", "import importlib.util as u; print(u.find_spec('pydantic'), u.find_spec('aiohttp'))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
