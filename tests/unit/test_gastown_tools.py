"""The real Gas Town's pins and cache key (the builds themselves run in ``make gastown-tools``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown.devcluster import binaries, gastown_tools


def test_pins_name_gt_bd_and_dolt_with_how_to_build_them() -> None:
    pins = {p.name: p for p in gastown_tools.pins()}
    assert set(pins) == {"gt", "bd", "dolt"}
    assert pins["gt"].version == "v1.2.1" and "BuiltProperly=1" in pins["gt"].ldflags
    assert pins["dolt"].cgo and not pins["gt"].cgo
    assert gastown_tools.pinned_versions()["dolt"] == "2.1.4"


def test_the_cache_has_its_own_key_outside_the_labs() -> None:
    assert gastown_tools.cached_bin_dir().parent.parent == gastown_tools.cache_root()
    assert gastown_tools.cache_root().name == "gastown-tools"
    assert gastown_tools.cache_root() != binaries.cache_root()
    # The pins are not under devcluster/modules, whose hash keys the lab's cache.
    assert binaries.MODULES_DIR not in gastown_tools.PINS_FILE.parents


def test_the_bd_shim_is_named_and_only_unsets_one_variable() -> None:
    assert "unset BEADS_DOLT_DATA_DIR" in gastown_tools.BD_SHIM
    assert 'exec "$(dirname "$0")/bd-real" "$@"' in gastown_tools.BD_SHIM


def test_missing_tools_say_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GASTOWN_TOOLS_BIN", raising=False)
    reason = gastown_tools.missing_reason()
    assert reason is not None and "make gastown-tools" in reason
    ready = tmp_path / "ready"
    ready.mkdir()
    for name in ("gt", "bd", "dolt"):
        (ready / name).write_text("#!/bin/sh\n")
        (ready / name).chmod(0o755)
    monkeypatch.setenv("GASTOWN_TOOLS_BIN", str(ready))
    assert gastown_tools.missing_reason() is None and gastown_tools.find_bin_dir() == ready
