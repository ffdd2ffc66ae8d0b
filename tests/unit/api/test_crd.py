"""The generated CRD: current in git, structural, explainable, and the converter's refusals."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from gastown.api import crd, models

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "crds" / crd.CRD_FILENAME

FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const", "discriminator"}


def _schema() -> dict[str, Any]:
    crd_obj = crd.build_crd()
    schema: dict[str, Any] = crd_obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        out.extend(_walk(child, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        out.extend(_walk(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        out.extend(_walk(node["additionalProperties"], f"{path}.*"))
    return out


@pytest.mark.parametrize("obj", crd.build_crds(), ids=lambda o: str(o["metadata"]["name"]))
def test_committed_crds_are_what_the_models_generate(obj: dict[str, Any]) -> None:
    committed = REPO / "crds" / crd.crd_filename(obj)
    assert committed.read_text(encoding="utf-8") == crd.render_crd(obj), (
        f"{committed.relative_to(REPO)} is out of date: run `python -m gastown.api.crd`"
    )


def test_every_kind_has_a_committed_crd_and_nothing_else_is_there() -> None:
    assert sorted(p.name for p in (REPO / "crds").glob("*.yaml")) == sorted(crd.CRD_FILENAMES)
    assert sorted(str(o["metadata"]["name"]) for o in crd.build_crds()) == sorted(crd.CRD_NAMES)


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert crd.main(["-o", str(out), "--check"]) == 1
    assert crd.main(["-o", str(out)]) == 0
    assert crd.main(["-o", str(out), "--check"]) == 0
    rig_file = out / crd.CRD_FILENAMES[1]
    rig_file.write_text(rig_file.read_text() + "# edited\n")
    assert crd.main(["-o", str(out), "--check"]) == 1


@pytest.mark.parametrize("obj", crd.build_crds(), ids=lambda o: str(o["metadata"]["name"]))
def test_every_crd_is_structural(obj: dict[str, Any]) -> None:
    schema = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not FORBIDDEN_KEYS & set(node), f"{path}: {FORBIDDEN_KEYS & set(node)}"
        assert "type" in node, f"{path} has no type"


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not FORBIDDEN_KEYS & set(node), f"{path}: {FORBIDDEN_KEYS & set(node)}"
        assert "type" in node, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        assert "default" not in node or node["default"] is not None, f"{path} has a null default"


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    for path, node in _walk(_schema()):
        if path in {".metadata"} or path.endswith(".*"):
            continue
        assert node.get("description"), f"{path} has no description"


def test_field_shapes() -> None:
    spec = _schema()["properties"]["spec"]
    status = _schema()["properties"]["status"]
    assert spec["required"] == ["rig", "beadID"]
    assert spec["properties"]["executionMode"]["enum"] == ["local", "kubernetes"]
    # Fields a Rig can supply have no schema default: left out must stay distinguishable.
    assert "default" not in spec["properties"]["executionMode"]
    assert "default" not in spec["properties"]["agent"]
    assert "default" not in spec["properties"]["local"]["properties"]["dispatcher"]
    assert spec["properties"]["desiredState"]["default"] == "Working"
    assert spec["properties"]["rig"]["pattern"] == models.DNS1123_LABEL
    k8s = spec["properties"]["kubernetes"]["properties"]
    assert k8s["activeDeadlineSeconds"] == {
        "description": k8s["activeDeadlineSeconds"]["description"],
        "type": "integer",
        "minimum": 1,
    }
    assert "default" not in k8s["gitBranch"]
    assert "required" not in spec["properties"]["kubernetes"]  # gitRepository may come from the Rig
    assert k8s["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert k8s["resources"]["properties"]["limits"]["additionalProperties"] == {"type": "string"}
    # Optional fields are plain types, not anyOf-with-null; the field's own description wins
    # over the referenced class's docstring.
    assert k8s["gitSecretRef"]["type"] == "object"
    assert "ssh-auth" in k8s["gitSecretRef"]["description"]
    assert status["properties"]["startTime"] == {
        "description": "When the work was dispatched.",
        "type": "string",
        "format": "date-time",
    }
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == ["type", "status"]


def test_names_columns_and_subresources() -> None:
    obj = crd.build_crd()
    names = obj["spec"]["names"]
    assert names["shortNames"] == ["pcat"]  # not "pc": that is PriorityClass
    assert names["categories"] == ["gastown"]
    assert obj["metadata"]["name"] == "polecats.gastown.gastown.io"
    version = obj["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Rig",
        "Mode",
        "Phase",
        "Bead",
        "Age",
        "Pod",
        "Session",
        "Branch",
    ]
    assert columns["Pod"] == columns["Pod"] | {"jsonPath": ".status.kubernetes.podName", "priority": 1}
    assert columns["Session"]["jsonPath"] == ".status.local.tmuxSession"
    assert columns["Branch"]["jsonPath"] == ".status.result.branch"
    assert columns["Age"]["type"] == "date"
    assert all("priority" not in columns[n] for n in ("Rig", "Mode", "Phase", "Bead", "Age"))


def test_cel_rules_on_spec() -> None:
    rules = _schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert [r["fieldPath"] for r in rules] == [
        ".kubernetes",
        ".local",
        ".executionMode",
        ".rig",
    ]
    assert all(r["message"] and r["reason"].startswith("FieldValue") for r in rules)
    transition = [r for r in rules if "oldSelf" in r["rule"]]
    assert len(transition) == 2
    # An absent executionMode (the Rig's) is a mode of its own on both sides.
    assert "has(oldSelf.executionMode)" in transition[0]["rule"]
    # Only an explicit mode forbids the other section: kubernetes-required is Rig-aware
    # (webhook and dispatch), so no CEL rule requires spec.kubernetes any more.
    assert all(r["message"] != crd.MSG_KUBERNETES_REQUIRED for r in rules)


def test_yaml_round_trips() -> None:
    text = crd.render_crd()
    assert text.startswith("# Generated")
    assert yaml.safe_load(text) == crd.build_crd()


# --- the converter on its own -----------------------------------------------------------
class _Inner(BaseModel):
    """Inner docstring."""

    value: int = Field(gt=0, lt=10, description="An exclusive range.")
    ratio: float = Field(default=0.5, gt=0, description="Exclusive float bound.")


class _Outer(BaseModel):
    """Outer."""

    inner: _Inner | None = Field(default=None, description="Field words win.")
    items: list[_Inner] = Field(default_factory=list, description="A list of inners.")
    labels: dict[str, str] | None = Field(default=None, description="A string map.")
    mode: str = Field(default="a", json_schema_extra={"const": "a"}, description="A const.")
    when: datetime | None = Field(default=None, description="A time.")


def test_converter_inlines_and_rewrites() -> None:
    out = crd.model_schema(_Outer, ("x",))
    inner = out["properties"]["inner"]
    assert inner["description"] == "Field words win."
    assert inner["properties"]["value"]["minimum"] == 1
    assert inner["properties"]["value"]["maximum"] == 9
    ratio = inner["properties"]["ratio"]
    assert ratio["minimum"] == 0
    assert ratio["exclusiveMinimum"] is True
    assert out["properties"]["items"]["items"]["description"] == "Inner docstring."
    assert out["properties"]["labels"] == {
        "description": "A string map.",
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    assert out["properties"]["mode"]["enum"] == ["a"]
    assert out["properties"]["when"]["format"] == "date-time"


class _NoDescription(BaseModel):
    """Has a field without a description."""

    name: str


class _A(BaseModel):
    """A."""

    a: int = Field(description="a")


class _B(BaseModel):
    """B."""

    b: int = Field(description="b")


class _Union(BaseModel):
    """A union the apiserver cannot express structurally."""

    either: _A | _B = Field(description="One of two.")


class _Tuple(BaseModel):
    """Tuples are prefixItems."""

    pair: tuple[int, int] = Field(description="Two numbers.")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_NoDescription, "no description"),
        (_Union, "non-null branches"),
        (_Tuple, "unsupported keywords"),
    ],
)
def test_converter_refuses_what_a_crd_cannot_hold(model: type[BaseModel], expected: str) -> None:
    with pytest.raises(crd.SchemaConversionError, match=expected):
        crd.model_schema(model, ("x",))
