"""The dispatch policy: the CRD's root rules, renamed for admission, and kept out of the CRD."""

from __future__ import annotations

import re

from gastown.api import crd, policy


def test_the_crd_has_no_root_rules_any_more() -> None:
    """Root rules run on every status write; the freeze lives in the policy instead."""
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "x-kubernetes-validations" not in schema
    assert schema["properties"]["spec"]["x-kubernetes-validations"]  # spec rules stay


def test_every_root_rule_becomes_one_validation_with_its_message() -> None:
    validations = policy.validations()
    assert len(validations) == len(crd.OBJECT_VALIDATIONS)
    for rule, item in zip(crd.OBJECT_VALIDATIONS, validations, strict=True):
        assert item["message"] == rule["message"]
        assert item["reason"] == "Invalid"
        for text in (item["expression"], item.get("messageExpression", "")):
            assert not re.search(r"\b(self|oldSelf)\b", text), text
        assert item["expression"] == rule["rule"].replace("oldSelf", "oldObject").replace("self.", "object.")


def test_messages_never_hold_the_words_the_rename_would_touch() -> None:
    for rule in crd.OBJECT_VALIDATIONS:
        assert not re.search(r"\b(self|oldSelf)\b", rule["message"])


def test_the_generated_files_are_current() -> None:
    for path, text in policy.outputs().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is out of date: run python -m gastown.api.crd"
        )
