"""The pure parts of the lab's image build: cache keys, build arguments, the OCI index.

The build itself (buildah, mmdebstrap) is exercised by ``make images`` and checked by
tests/integration/test_images_built.py on the archives it writes.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from gastown.devcluster import images

ROOT = images.REPO_ROOT


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A minimal build context: every top-level file the key covers, and a small gastown/."""
    for name in images.CONTEXT_FILES:
        (tmp_path / name).write_text(f"{name}\n")
    package = tmp_path / "gastown" / "runner"
    package.mkdir(parents=True)
    (tmp_path / "gastown" / "__init__.py").write_text("")
    (package / "agent.py").write_text("print('hi')\n")
    return tmp_path


def test_key_is_stable_for_the_same_inputs(tree: Path) -> None:
    assert images.inputs_key(tree) == images.inputs_key(tree)
    assert re.fullmatch(r"[0-9a-f]{16}", images.inputs_key(tree))


@pytest.mark.parametrize(
    "change",
    [
        "Dockerfile",
        "Dockerfile.agent",
        ".dockerignore",
        "pyproject.toml",
        "README.md",
        "gastown/runner/agent.py",
    ],
)
def test_key_changes_with_every_input(tree: Path, change: str) -> None:
    before = images.inputs_key(tree)
    (tree / change).write_text("changed\n")
    assert images.inputs_key(tree) != before


def test_key_changes_when_a_source_file_is_added_or_renamed(tree: Path) -> None:
    before = images.inputs_key(tree)
    (tree / "gastown" / "runner" / "new.py").write_text("")
    added = images.inputs_key(tree)
    assert added != before
    (tree / "gastown" / "runner" / "new.py").rename(tree / "gastown" / "runner" / "other.py")
    assert images.inputs_key(tree) not in {before, added}


def test_key_ignores_bytecode_caches(tree: Path) -> None:
    """.dockerignore keeps __pycache__ and .pyc out of the context, so they are no input."""
    before = images.inputs_key(tree)
    cache = tree / "gastown" / "runner" / "__pycache__"
    cache.mkdir()
    (cache / "agent.cpython-311.pyc").write_bytes(b"\0")
    (tree / "gastown" / "stray.pyc").write_bytes(b"\0")
    assert images.inputs_key(tree) == before


def test_key_covers_the_base_recipe(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.inputs_key(tree)
    old_base = images.base_key()
    monkeypatch.setattr(images, "BASE_PACKAGES", (*images.BASE_PACKAGES, "curl"))
    assert images.base_key() != old_base
    assert images.inputs_key(tree) != before


def test_missing_context_file_is_a_clear_error(tree: Path) -> None:
    (tree / "Dockerfile.agent").unlink()
    with pytest.raises(images.ImagesError, match=r"Dockerfile\.agent is missing"):
        images.inputs_key(tree)


def test_context_files_of_this_repository_are_what_the_dockerfiles_copy() -> None:
    files = [p.relative_to(ROOT).as_posix() for p in images.context_files()]
    assert files[:5] == list(images.CONTEXT_FILES)
    assert "gastown/devcluster/images.py" in files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_dockerignore_lets_in_exactly_what_the_key_covers() -> None:
    """A file the builder sees but the key misses would let a stale image pass as current."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert lines[lines.index("*") + 1 :][0].startswith("!"), "everything is excluded first"
    covered = {n for n in images.CONTEXT_FILES if not n.startswith(("Dockerfile", ".dockerignore"))}
    assert allowed == covered | set(images.CONTEXT_DIRS) | {images.WHEELHOUSE_DIR}


def test_build_args_for_the_lab() -> None:
    operator, agent = images.IMAGES
    assert images.build_args(operator, "localhost/gastown/base:k", ".wheelhouse") == [
        "--build-arg", "BASE=localhost/gastown/base:k",
        "--build-arg", "WHEELHOUSE=.wheelhouse",
    ]  # fmt: skip
    assert images.build_args(agent, "b", "w")[-2:] == ["--build-arg", "INSTALL_CLAUDE_CODE=false"]


def test_build_args_refuse_a_name_given_twice() -> None:
    spec = images.ImageSpec("x", "Dockerfile", "localhost/x:lab", (("BASE", "other"),))
    with pytest.raises(ValueError, match="BASE"):
        images.build_args(spec, "b", "w")


def test_every_build_arg_the_lab_passes_is_declared_with_the_users_default() -> None:
    """The lab only sets arguments; a user who sets none gets python:3.11-slim, PyPI and Claude Code."""
    for spec in images.IMAGES:
        text = (ROOT / spec.dockerfile).read_text()
        declared = dict(re.findall(r"^ARG (\w+)=(.*)$", text, flags=re.MULTILINE))
        assert declared["BASE"] == "python:3.11-slim"
        assert declared["WHEELHOUSE"] == ""
        for name, _ in spec.extra_args:
            assert name in declared, f"{spec.dockerfile} does not declare ARG {name}"
        froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
        assert froms and all(f == "${BASE}" for f in froms), froms
    agent = (ROOT / "Dockerfile.agent").read_text()
    assert re.search(r"^ARG INSTALL_CLAUDE_CODE=true$", agent, flags=re.MULTILINE)
    assert '"@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"' in agent


def test_wheel_requirements_are_the_dependencies_and_the_build_backend() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = images.wheel_requirements(pyproject)
    assert set(pyproject["project"]["dependencies"]) <= set(wanted)
    assert set(pyproject["build-system"]["requires"]) <= set(wanted)
    assert "wheel" in wanted
    assert not any("pytest" in r for r in wanted), "dev extras stay out of the images"


def test_wheel_requirements_of_an_empty_pyproject() -> None:
    assert images.wheel_requirements({}) == ["wheel"]


def test_wheel_platforms_cover_every_older_glibc() -> None:
    tags = images.wheel_platforms("x86_64", glibc_minor=36)
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {
        "manylinux_2_17_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    } <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags


def test_wheelhouse_key_follows_the_requirements() -> None:
    assert images.wheelhouse_key(["a>=1"]) != images.wheelhouse_key(["a>=2"])
    assert images.wheelhouse_key(["a>=1"]) == images.wheelhouse_key(["a>=1"])


def test_index_is_named_for_containerd() -> None:
    index = {
        "schemaVersion": 2,
        "manifests": [{"digest": "sha256:1", "annotations": {"keep": "me"}}, {"digest": "sha256:2"}],
    }
    named = images.mark_for_containerd(index, "localhost/gastown/agent:lab")
    for manifest in named["manifests"]:  # type: ignore[union-attr]
        assert manifest["annotations"]["io.containerd.image.name"] == "localhost/gastown/agent:lab"
        assert manifest["annotations"]["org.opencontainers.image.ref.name"] == "lab"
    assert named["manifests"][0]["annotations"]["keep"] == "me"  # type: ignore[index]
    assert index["manifests"][1] == {"digest": "sha256:2"}, "the input is not changed"


def test_index_without_manifests_is_an_error() -> None:
    with pytest.raises(images.ImagesError, match="no manifests"):
        images.mark_for_containerd({"schemaVersion": 2, "manifests": []}, "localhost/x:lab")


def test_find_images_needs_both_archives_and_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = images.images_dir()
    assert directory.parent == tmp_path / "gastown" / "images"
    assert images.find_images() is None
    directory.mkdir(parents=True)
    (directory / "operator.tar").write_bytes(b"")
    (directory / "agent.tar").write_bytes(b"")
    assert images.find_images() is None, "no images.json: the build did not finish"
    (directory / "images.json").write_text("{}")
    found = images.find_images()
    assert found == images.LabImages(
        images.OPERATOR_REF, directory / "operator.tar", images.AGENT_REF, directory / "agent.tar"
    )
    shutil.rmtree(directory)
    assert images.find_images() is None


def test_prune_keeps_the_newest_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = images.cache_root()
    for age, key in enumerate(["new", "mid", "old", "oldest"]):
        (root / key).mkdir(parents=True)
        (root / key / "images.json").write_text("{}")
        os.utime(root / key / "images.json", (1000 - age, 1000 - age))
    (root / "base").mkdir()  # not a build: kept
    images._prune(keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["base", "mid", "new"]
