"""Load ``examples/invalid/*.yaml``: one bad Polecat per rule, with what must reject it.

Each file opens with ``# key: value`` comment lines:

* ``rule``            what the example breaks;
* ``rejected-by``     ``schema`` (OpenAPI schema or CEL: the apiserver refuses it even
                      with the webhook down) or ``webhook`` (only the webhook catches it);
* ``message``         text that must appear in the rejection kubectl prints;
* ``webhook-message`` (optional) text the webhook rules report, when it differs;
* ``settings``        (optional) ``local-mode-disabled``: validate with no SSH target;
* ``operation``       (optional) ``update``: the file holds the original object and then
                      the change, which is what gets rejected;
* ``dispatched``      (optional) ``true``: the original's status says it was dispatched.

Shared by the unit tests of the rules and the lab tests of the CRD and the webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
INVALID = EXAMPLES / "invalid"


@dataclass(frozen=True)
class InvalidExample:
    path: Path
    rule: str
    rejected_by: str
    message: str
    webhook_message: str
    local_mode_disabled: bool
    update: bool
    dispatched: bool
    documents: list[dict[str, Any]]
    text: str

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def original(self) -> dict[str, Any]:
        """The object created first (for updates) or the rejected object itself."""
        return self.documents[0]

    @property
    def rejected(self) -> dict[str, Any]:
        """The object that must be rejected."""
        return self.documents[-1]

    def document_text(self, index: int) -> str:
        return yaml.safe_dump(self.documents[index], sort_keys=False)


def load(path: Path) -> InvalidExample:
    text = path.read_text(encoding="utf-8")
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].partition(":")
        header[key.strip()] = value.strip()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    update = header.get("operation") == "update"
    assert len(documents) == (2 if update else 1), f"{path.name}: wrong number of documents"
    return InvalidExample(
        path=path,
        rule=header["rule"],
        rejected_by=header["rejected-by"],
        message=header["message"],
        webhook_message=header.get("webhook-message", header["message"]),
        local_mode_disabled=header.get("settings") == "local-mode-disabled",
        update=update,
        dispatched=header.get("dispatched") == "true",
        documents=documents,
        text=text,
    )


def all_examples() -> list[InvalidExample]:
    return [load(path) for path in sorted(INVALID.glob("*.yaml"))]


def good_examples() -> list[Path]:
    """The valid examples that stand alone (the fleet examples' Polecats need their Rig)."""
    return sorted(
        p for p in EXAMPLES.glob("*/*.yaml") if p.parent.name != "invalid" and p.parent not in FLEET_DIRS
    )


FLEET_DIRS = (EXAMPLES / "fleet-kubernetes", EXAMPLES / "fleet-local")
"""Rig + Convoy + Rig-based Polecat examples: a Polecat there leaves out what its Rig sets,
so it is complete only with the Rig beside it (checked by the fleet tests, not the rules alone)."""


def fleet_examples() -> list[Path]:
    return sorted(p for d in FLEET_DIRS for p in d.glob("*.yaml"))
