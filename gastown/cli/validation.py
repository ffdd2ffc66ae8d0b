"""``gastown validate``: the admission webhook's rules, run offline on manifest files.

The rules are :func:`gastown.webhook.rules.validate_object` (Polecats) and
:func:`gastown.webhook.kinds.validate_rig` / ``validate_convoy``, the very functions the
webhook runs, so a file that passes here is denied at ``kubectl apply`` only for
reasons that need the cluster or the operator's install. Those install-dependent
checks (is local mode enabled? is there a default town root?) need the operator's
settings, which a laptop does not have: they are assumed permissive unless the user
says otherwise (``--no-local-mode``, ``--town-root``, or the operator's own
``GASTOWN_SSH_HOST`` / ``GASTOWN_TOWN_ROOT`` in the environment).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gastown.cli.errors import CLIError, ExitCode
from gastown.cli.manifest import Document, ManifestError, read_documents
from gastown.settings import Settings, SSHSettings

# Stand-ins for an install we cannot see: "some SSH host is configured", "some town root".
_ASSUMED_HOST = "operator-host.invalid"
_ASSUMED_TOWN_ROOT = "/town"


@dataclass
class Report:
    """What to print: one line per problem (or per valid object), warnings apart."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ok: bool = True


def offline_settings(*, local_mode: bool | None, town_root: str | None) -> Settings:
    """The operator settings the rules see: the environment's, with unknowns assumed permissive."""
    try:
        env = Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CLIError(f"invalid GASTOWN_ setting {where}: {error['msg']}", ExitCode.USAGE) from exc
    host = env.ssh.host
    if local_mode is False:
        host = None
    elif host is None and local_mode in (None, True):
        host = _ASSUMED_HOST
    # --town-root "" says "the operator has no default town root".
    root = (town_root or None) if town_root is not None else (env.town_root or _ASSUMED_TOWN_ROOT)
    ssh = SSHSettings.model_validate({**env.ssh.model_dump(), "host": host})
    return env.model_copy(update={"ssh": ssh, "town_root": root})


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CLIError(f"{name}: no such file", ExitCode.USAGE) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{name}: cannot read: {exc}", ExitCode.USAGE) from exc


def validate_document(doc: Document, settings: Settings) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one object, exactly as the webhook would find them on CREATE.

    Polecats go through :func:`gastown.webhook.rules.validate_object`, Rigs and Convoys
    through :mod:`gastown.webhook.kinds`: the functions the webhook itself runs.
    """
    from gastown.webhook import kinds  # noqa: PLC0415
    from gastown.webhook.rules import validate_object  # noqa: PLC0415

    if doc.kind == "Rig":
        verdict = kinds.validate_rig(doc.obj, settings, operation="CREATE")
    elif doc.kind == "Convoy":
        verdict = kinds.validate_convoy(doc.obj, settings, operation="CREATE")
    else:
        verdict = validate_object(doc.obj, settings, operation="CREATE")
    return list(verdict.errors), list(verdict.warnings)


def expand(filenames: list[str]) -> list[str]:
    """Files as given; a directory stands for its ``*.yaml``, ``*.yml`` and ``*.json`` (as kubectl -f)."""
    out: list[str] = []
    for name in filenames:
        path = Path(name)
        if name != "-" and path.is_dir():
            out.extend(str(p) for p in sorted(path.iterdir()) if p.suffix in (".yaml", ".yml", ".json"))
        else:
            out.append(name)
    return out


def validate_files(filenames: list[str], *, local_mode: bool | None, town_root: str | None) -> Report:
    """Validate every Polecat, Rig and Convoy in every file; finding none at all is a failure."""
    settings = offline_settings(local_mode=local_mode, town_root=town_root)
    report = Report()
    seen = 0
    for name in expand(filenames):
        shown = "<stdin>" if name == "-" else name
        try:
            documents = read_documents(_read(name))
        except ManifestError as exc:
            report.lines.append(f"{shown}: {exc}")
            report.ok = False
            continue
        for doc in documents:
            if doc.kind is None:
                report.warnings.append(f"{shown}: {doc.label}: skipped (not a Polecat, Rig or Convoy)")
                continue
            seen += 1
            errors, warnings = validate_document(doc, settings)
            if errors:
                report.ok = False
                report.lines.extend(f"{shown}: {doc.label}: {error}" for error in errors)
            else:
                report.lines.append(f"{shown}: {doc.label}: valid")
            report.warnings.extend(f"{shown}: {doc.label}: {warning}" for warning in warnings)
    if seen == 0 and report.ok:
        shown = ", ".join("<stdin>" if n == "-" else n for n in filenames)
        report.lines.append(
            f"{shown}: no Polecat found, nor a Rig or Convoy (kind: Polecat, Rig or Convoy; "
            "apiVersion: gastown.gastown.io/...)"
        )
        report.ok = False
    return report
