"""Validation rules for Polecats: pure functions shared by the webhook, the CLI and tests.

The contract:

* :func:`validate_object` takes a Polecat as the apiserver sends it (a dict), the
  operator :class:`~gastown.settings.Settings`, and on UPDATE the old object; it returns
  a :class:`Verdict` with *every* problem found (errors deny, warnings do not). It never
  raises on odd input: a malformed object is a list of errors, not an exception.
* Every message starts with the field path (``spec.kubernetes.image: ...``), says what is
  wrong and what is allowed.
* No I/O. Checks that need the cluster (does the referenced Secret exist?) are described
  by :func:`references` and done by the server, as warnings.

The CRD schema already enforces enums, patterns and lengths (and CEL the mode sections
and immutability), so for the webhook most pydantic errors cannot happen; they are still
turned into readable messages because the CLI validates files that never met a schema.

Ratcheting on UPDATE: a change that leaves ``spec`` alone (labels, finalizers, deletion)
is always allowed, so the operator can remove its finalizer even if the rules or settings
changed since the object was created; and install-dependent checks (local mode enabled,
a default town root) only deny on CREATE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any, Final, Literal

from pydantic import ValidationError

from gastown.api import crd, models, resolve
from gastown.api.models import DesiredState, Dispatcher, ExecutionMode, KubernetesSpec, LocalSpec, Polecat
from gastown.api.quantity import QuantityError, format_quantity, parse_quantity
from gastown.api.rig import Rig, RigSpec
from gastown.executors.kubernetes import policy
from gastown.settings import Settings
from gastown.webhook import formats

POD_NAME_PREFIX: Final = "polecat-"
# The agent Pod is polecat-<name>, and the name is also a label value (<= 63 characters).
MAX_POLECAT_NAME: Final = 63 - len(POD_NAME_PREFIX)
# The apiserver appends 5 random characters to generateName.
MAX_GENERATE_NAME: Final = MAX_POLECAT_NAME - 5

LONG_DEADLINE_SECONDS: Final = 24 * 3600
LARGE_CPU: Final = Fraction(32)
LARGE_MEMORY: Final = Fraction(128 * 2**30)
STANDARD_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})

# Human words for the models' patterns, so pydantic errors read like the rest.
_PATTERN_HELP: Final[dict[str, str]] = {
    models.DNS1123_LABEL: formats.DNS1123_LABEL_HELP,
    models.BEAD_ID: "use letters, digits, '.', '_' and '-', starting and ending with a letter or digit "
    "(e.g. gt-abc12)",
    models.GIT_BRANCH: "use letters, digits, '.', '_', '-' and '/', starting with a letter or digit",
    r"^/[^\x00]*$": "use an absolute path (starting with '/')",
}

_UNDISPATCHED_PHASES: Final = frozenset({"", "Pending"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of validation: errors deny the request, warnings are shown to the user."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True when there is nothing to deny."""
        return not self.errors

    def with_warnings(self, extra: list[str]) -> Verdict:
        """The same verdict with more warnings appended."""
        return Verdict(self.errors, (*self.warnings, *extra))


@dataclass(frozen=True, slots=True)
class Reference:
    """An object a Polecat refers to, for the server to look up (warnings only)."""

    kind: Literal["Secret", "ConfigMap"]
    name: str
    field: str
    key: str | None = None
    secret_type: str | None = None


@dataclass(frozen=True, slots=True)
class RigLookup:
    """What the server found for a Polecat's ``spec.rig``: the Rig, or None (not found)."""

    rig: Any


@dataclass(slots=True)
class _Report:
    """Collects problems while the rules run."""

    errors: list[str]
    warnings: list[str]

    def error(self, field: str, problem: str) -> None:
        self.errors.append(f"{field}: {problem}")

    def warn(self, field: str, problem: str) -> None:
        self.warnings.append(f"{field}: {problem}")

    def check(self, field: str, problem: str | None) -> None:
        if problem is not None:
            self.error(field, problem)

    def verdict(self) -> Verdict:
        return Verdict(tuple(self.errors), tuple(self.warnings))


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def validate_object(
    obj: Any,
    settings: Settings,
    *,
    operation: Literal["CREATE", "UPDATE"] = "CREATE",
    old_obj: Any = None,
    rig: RigLookup | None = None,
) -> Verdict:
    """Validate a Polecat as sent to the webhook (or read from a file by the CLI).

    ``rig``: the Polecat's Rig as the server read it (its ``rig`` None: it does not exist);
    None when nobody looked (the CLI), which reads like a Rig that does not exist. With
    a Rig the effective spec (the Rig's values for what the Polecat leaves out) is
    checked, and a message about a value that came from the Rig says so. Without one, a
    Polecat that needs its Rig (:func:`gastown.api.resolve.needs_rig`) gets a warning
    that it waits in Pending until the Rig exists, not an error.
    """
    report = _Report([], [])
    if not isinstance(obj, Mapping):
        report.error("object", "must be a Polecat object (a JSON/YAML mapping)")
        return report.verdict()
    is_update = operation == "UPDATE" and isinstance(old_obj, Mapping)
    if is_update:
        assert isinstance(old_obj, Mapping)
        if _deleting(obj) or obj.get("spec") == old_obj.get("spec"):
            return report.verdict()  # spec untouched: labels, finalizers, deletion

    polecat = _parse(obj, report)
    if not is_update:
        _check_name(obj, report)
    if polecat is None:
        _check_modes_raw(obj.get("spec"), settings, report, strict_install=not is_update)
    else:
        parsed_rig = _rig_model(rig, report)
        if parsed_rig is not None:
            _check_with_rig(polecat, parsed_rig, settings, report, old_obj if is_update else None)
        elif resolve.needs_rig(polecat.spec):
            _rig_missing_warning(polecat, obj, rig, report)
        else:
            _check_spec(polecat, settings, report, strict_install=not is_update)
            _check_policy(polecat, settings, report, old_obj if is_update else None)
    if is_update:
        assert isinstance(old_obj, Mapping)
        _check_immutable(obj, old_obj, report)
    return report.verdict()


def _check_policy(polecat: Polecat, settings: Settings, report: _Report, old_obj: Any) -> None:
    """The operator's image/ServiceAccount policy, for a new Polecat or a changed field.

    An UPDATE that leaves the field as it was is not refused: tightening the policy must
    not keep a user from terminating or relabelling a Polecat admitted under the old one.
    """
    for field, problem in policy.policy_problems(polecat, settings.pod):
        if isinstance(old_obj, Mapping):
            key = field.rsplit(".", 1)[1]
            if _spec_value(old_obj, "kubernetes", key) == getattr(polecat.spec.kubernetes, key, None):
                continue
        report.error(field, problem)


def _rig_model(rig: RigLookup | None, report: _Report) -> Rig | None:
    if rig is None or not isinstance(rig.rig, Mapping):
        return None
    try:
        return Rig.model_validate({k: v for k, v in rig.rig.items() if k != "status"})
    except (ValidationError, RecursionError, ValueError, TypeError):
        name = (rig.rig.get("metadata") or {}).get("name")
        report.warn("spec.rig", f"Rig {name!r} is not valid, so its defaults are not checked here")
        return None


def _rig_missing_warning(
    polecat: Polecat, obj: Mapping[str, Any], rig: RigLookup | None, report: _Report
) -> None:
    needed = ", ".join(f"spec.{path}" for path in resolve.missing(polecat.spec)) or "spec.executionMode"
    namespace = polecat.metadata.namespace or (obj.get("metadata") or {}).get("namespace") or ""
    where = f" in namespace {namespace!r}" if namespace else ""
    found = "was not found" if rig is not None else "was not looked up (no cluster) and may not exist"
    report.warn(
        "spec.rig",
        f"Rig {polecat.spec.rig!r}{where} {found}; this Polecat needs it for {needed}, so it will wait "
        "in Pending (RigNotFound) until the Rig exists. Create the Rig, or set those fields on the Polecat",
    )


def rig_note(rig: str, from_rig: set[str], message: str) -> str:
    """``message`` with a note when the field it names holds a value from the Rig."""
    path = message.split(":", 1)[0].strip().removeprefix("spec.")
    for supplied in sorted(from_rig):
        if path == supplied or path.startswith((supplied + ".", supplied + "[")):
            return (
                f"{message} (this value comes from Rig {rig!r}, spec.{supplied}: fix it there "
                "or set it on the Polecat)"
            )
    return message


def _check_with_rig(polecat: Polecat, rig: Rig, settings: Settings, report: _Report, old_obj: Any) -> None:
    """The effective spec's checks (Polecat + Rig defaults); Rig-sourced values are named so."""
    resolution = resolve.resolve(polecat.spec, rig)
    effective = resolve.with_spec(polecat, resolution.spec)
    name = rig.metadata.name
    inner = _Report([], [])
    spec = effective.spec
    said: set[str] = set()  # plain messages the Rig-aware ones below cover
    if "executionMode" in resolution.from_rig:
        said |= {crd.MSG_KUBERNETES_FORBIDDEN, crd.MSG_LOCAL_FORBIDDEN}
        other = "local" if spec.executionMode is ExecutionMode.KUBERNETES else "kubernetes"
        if getattr(polecat.spec, other) is not None:
            inner.error(
                f"spec.{other}",
                f"is forbidden when the execution mode is {spec.executionMode.value}, which comes from "
                f"Rig {name!r} (spec.executionMode is not set on the Polecat): remove "
                f"spec.{other} or set spec.executionMode: {other}",
            )
    gaps = resolve.missing(spec)
    if gaps:
        said.add(crd.MSG_KUBERNETES_REQUIRED)
        path = gaps[0]
        inner.error(
            f"spec.{path}",
            f"is required with executionMode kubernetes and neither the Polecat nor Rig {name!r} "
            f"sets it: set it on the Polecat or in the Rig's spec.{path}",
        )
    _check_spec(effective, settings, inner, strict_install=old_obj is None)
    if not gaps:
        _check_policy(effective, settings, inner, old_obj)
    from_rig = set(resolution.from_rig)
    report.errors.extend(rig_note(name, from_rig, m) for m in inner.errors if m not in said)
    report.warnings.extend(rig_note(name, from_rig, m) for m in inner.warnings)


def check_rig_defaults(
    spec: RigSpec, settings: Settings, *, strict_install: bool, old_spec: Any = None
) -> Verdict:
    """A Rig's mode sections, with the Polecat's rules and messages (the same field paths).

    Nothing is required (a Polecat sets what its Rig leaves out); each value given is
    checked, and the operator's image/ServiceAccount policy applies to the Rig's as to a
    Polecat's (an UPDATE that leaves one as it was, ``old_spec``, is not refused for it).
    """
    report = _Report([], [])
    if spec.local is not None:
        _check_local(spec.local, settings, report, strict_install=strict_install, partial=True)
    k8s = spec.kubernetes
    if k8s is not None:
        _check_kubernetes(k8s, None, settings, report)
        old_k8s = old_spec.get("kubernetes") if isinstance(old_spec, Mapping) else None
        for field, value, check in (
            (policy.IMAGE_FIELD, k8s.image, policy.image_problem),
            (policy.SERVICE_ACCOUNT_FIELD, k8s.serviceAccountName, policy.service_account_problem),
        ):
            key = field.rsplit(".", 1)[1]
            if value is None or (isinstance(old_k8s, Mapping) and old_k8s.get(key) == value):
                continue
            report.check(field, check(value, settings.pod))
    return report.verdict()


def _deleting(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata")
    return isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))


# --------------------------------------------------------------------------------------
# Parsing: pydantic errors as messages
# --------------------------------------------------------------------------------------
def _parse(obj: Mapping[str, Any], report: _Report) -> Polecat | None:
    """Parse metadata and spec (status is the operator's business and not validated)."""
    try:
        return Polecat.model_validate({k: v for k, v in obj.items() if k != "status"})
    except ValidationError as exc:
        report.errors.extend(pydantic_messages(exc))
        return None
    except (RecursionError, ValueError, TypeError) as exc:  # pathological input
        report.error("object", f"cannot be read as a Polecat ({type(exc).__name__})")
        return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "object"


def _input_repr(value: Any) -> str:
    if isinstance(value, str):
        return formats.quote_value(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def pydantic_messages(exc: ValidationError) -> list[str]:
    """Turn a pydantic ValidationError into field-named messages that say what is allowed."""
    messages = []
    for err in exc.errors(include_url=False):
        field = _field_path(tuple(err["loc"]))
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if kind == "missing":
            text = "is required"
        elif kind == "string_pattern_mismatch":
            pattern = str(ctx.get("pattern", ""))
            text = (
                f"{_input_repr(value)} is not allowed; {_PATTERN_HELP.get(pattern, f'must match {pattern}')}"
            )
        elif kind in {"enum", "literal_error"}:
            text = f"{_input_repr(value)} is not allowed; use one of {ctx.get('expected', '')}"
        elif kind == "string_too_long":
            text = f"is too long; at most {ctx.get('max_length')} characters are allowed"
        elif kind == "string_too_short":
            text = "must not be empty" if ctx.get("min_length") == 1 else err["msg"]
        elif kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
            text = f"{_input_repr(value)} is out of range; {err['msg'].lower()}"
        elif kind in {"model_type", "model_attributes_type", "dict_type"}:
            text = "must be an object (a mapping of fields)"
        elif kind == "list_type":
            text = "must be a list"
        elif kind in {"string_type", "int_type", "int_parsing", "bool_type", "bool_parsing"}:
            wanted = {"string": "a string", "int": "an integer", "bool": "true or false"}[kind.split("_")[0]]
            text = f"{_input_repr(value)} is not allowed; must be {wanted}"
        else:
            text = err["msg"]
        messages.append(f"{field}: {text}")
    return messages


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------
def _check_name(obj: Mapping[str, Any], report: _Report) -> None:
    """The name becomes the Pod name polecat-<name>, a label value and a tmux session name."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name, generate = meta.get("name"), meta.get("generateName")
    why = (
        f"the agent Pod is named {POD_NAME_PREFIX}<name>, which is also a label value (at most 63 characters)"
    )
    if isinstance(name, str) and name:
        if len(name) > MAX_POLECAT_NAME:
            report.error(
                "metadata.name",
                f"is {len(name)} characters long; at most {MAX_POLECAT_NAME} are allowed, because {why}",
            )
        else:
            problem = formats.dns1123_label(name)
            if problem:
                report.error("metadata.name", f"{problem} (it names a Pod, a label value and a tmux session)")
    elif isinstance(generate, str) and generate:
        if len(generate) > MAX_GENERATE_NAME:
            report.error(
                "metadata.generateName",
                f"is {len(generate)} characters long; at most {MAX_GENERATE_NAME} are allowed, because "
                f"5 random characters are appended and {why}",
            )
        elif formats.dns1123_label(generate + "x") is not None:
            report.error(
                "metadata.generateName",
                f"{formats.quote_value(generate)} is not allowed; {formats.DNS1123_LABEL_HELP}",
            )
    else:
        report.error("metadata.name", "is required")


# --------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------
def _check_spec(polecat: Polecat, settings: Settings, report: _Report, *, strict_install: bool) -> None:
    spec = polecat.spec
    if ".." in spec.beadID:
        report.error("spec.beadID", f"{formats.quote_value(spec.beadID)} must not contain '..'")
    if spec.task is not None and "\x00" in spec.task:
        report.error("spec.task", "contains a NUL character, which cannot be passed to the agent; remove it")
    if spec.executionMode is ExecutionMode.KUBERNETES:
        if spec.local is not None:
            report.errors.append(crd.MSG_LOCAL_FORBIDDEN)
        if spec.kubernetes is None or spec.kubernetes.gitRepository is None:
            report.errors.append(crd.MSG_KUBERNETES_REQUIRED)
        else:
            _check_kubernetes(spec.kubernetes, polecat, settings, report)
    else:
        if spec.kubernetes is not None:
            report.errors.append(crd.MSG_KUBERNETES_FORBIDDEN)
        _check_local(spec.local or LocalSpec(), settings, report, strict_install=strict_install)


def _check_modes_raw(spec: Any, settings: Settings, report: _Report, *, strict_install: bool) -> None:
    """Cross-field mode checks on a spec that did not parse, so all problems show at once."""
    if not isinstance(spec, Mapping):
        return
    # An unset mode is the Rig's (kubernetes mode's section may come from it too).
    mode = spec.get("executionMode")
    if mode == ExecutionMode.KUBERNETES.value:
        if spec.get("local") is not None:
            report.errors.append(crd.MSG_LOCAL_FORBIDDEN)
        if spec.get("kubernetes") is None:
            report.warn(
                "spec.kubernetes",
                "is not set with executionMode kubernetes: it must come from the Polecat's Rig "
                "(spec.kubernetes.gitRepository at least), or the Polecat waits in Pending",
            )
    elif mode == ExecutionMode.LOCAL.value:
        if spec.get("kubernetes") is not None:
            report.errors.append(crd.MSG_KUBERNETES_FORBIDDEN)
        if not settings.local_mode_enabled:
            _local_disabled(report, strict_install=strict_install)


def _local_disabled(report: _Report, *, strict_install: bool) -> None:
    problem = (
        "local mode is disabled in this operator install because no SSH target is configured; "
        "use executionMode: kubernetes, or ask the operator's administrator to enable local mode by "
        "setting an SSH target (GASTOWN_SSH_HOST with GASTOWN_SSH_KEY_FILE and GASTOWN_SSH_KNOWN_HOSTS_FILE)"
    )
    if strict_install:
        report.error("spec.executionMode", problem)
    else:
        report.warn(
            "spec.executionMode", "local mode is disabled in this operator install; this Polecat will not run"
        )


def _check_local(
    local: LocalSpec, settings: Settings, report: _Report, *, strict_install: bool, partial: bool = False
) -> None:
    """Local-mode fields. ``partial``: a Rig's defaults, where what is left out is the Polecat's
    to set, so nothing is required (only the values given are checked)."""
    if not settings.local_mode_enabled:
        _local_disabled(report, strict_install=strict_install and not partial)
    for field, value in (("townRoot", local.townRoot), ("workDir", local.workDir)):
        if value is not None:
            report.check(f"spec.local.{field}", formats.absolute_path(value))
    if local.dispatcher is Dispatcher.TMUX:
        if local.command is None:
            if partial:
                return
            report.error(
                "spec.local.command",
                "is required with dispatcher tmux: give the command the session runs, e.g. 'claude'",
            )
        else:
            report.check("spec.local.command", formats.command_line(local.command))
        if local.townRoot is not None:
            report.warn("spec.local.townRoot", "is only used by dispatcher gt and is ignored with tmux")
    else:
        if local.townRoot is None and settings.town_root is None and not partial:
            problem = (
                "is required with dispatcher gt because this operator has no default town root; "
                "give the absolute path of the Gas Town install, or use dispatcher tmux"
            )
            if strict_install:
                report.error("spec.local.townRoot", problem)
            else:
                report.warn("spec.local.townRoot", problem)
        for field, value in (("command", local.command), ("workDir", local.workDir)):
            if value is not None:
                report.warn(f"spec.local.{field}", "is only used by dispatcher tmux and is ignored with gt")


def _check_kubernetes(
    k8s: KubernetesSpec, polecat: Polecat | None, settings: Settings, report: _Report
) -> None:
    """Kubernetes-mode fields. ``polecat`` None: a Rig's defaults (see :func:`_check_local`)."""
    partial = polecat is None
    field = "spec.kubernetes"
    problem, is_ssh = (
        (None, False)
        if partial and k8s.gitRepository is None
        else (formats.git_repository(k8s.gitRepository or ""))
    )
    report.check(f"{field}.gitRepository", problem)
    if problem is None and k8s.gitRepository is not None:
        if is_ssh and k8s.gitSecretRef is None and partial:
            report.warn(
                f"{field}.gitSecretRef",
                "is not set for an SSH repository URL; each Polecat of the rig must set it (a "
                "kubernetes.io/ssh-auth Secret whose ssh-privatekey can clone and push it)",
            )
        elif is_ssh and k8s.gitSecretRef is None:
            report.error(
                f"{field}.gitSecretRef",
                "is required for an SSH repository URL: name a kubernetes.io/ssh-auth Secret whose "
                "ssh-privatekey can clone and push it",
            )
        if is_ssh and k8s.knownHostsConfigMapRef is None:
            report.warn(
                f"{field}.knownHostsConfigMapRef",
                "is not set; host keys are checked strictly, so the clone fails unless the image "
                "knows the git host",
            )
        if not is_ssh:
            report.warn(
                f"{field}.gitRepository",
                "an https:// repository is cloned without credentials; pushing results needs an SSH URL "
                "with gitSecretRef",
            )
    report.check(f"{field}.gitBranch", formats.git_branch(k8s.gitBranch))
    if partial and k8s.workBranch is not None:
        report.warn(f"{field}.workBranch", "is per Polecat and not taken from a Rig; set it on the Polecat")
    elif k8s.workBranch is not None:
        report.check(f"{field}.workBranch", formats.git_branch(k8s.workBranch))
    elif polecat is not None and polecat.metadata.name:
        report.check(f"{field}.workBranch", formats.git_branch(polecat.work_branch))

    for ref_field, ref in (
        ("gitSecretRef", k8s.gitSecretRef),
        ("knownHostsConfigMapRef", k8s.knownHostsConfigMapRef),
    ):
        if ref is not None:
            report.check(f"{field}.{ref_field}.name", formats.dns1123_subdomain(ref.name))
    if k8s.agentSecretRef is None:
        if not partial:
            report.error(
                f"{field}.agentSecretRef",
                "is required in kubernetes mode: name the Secret (and key, default api-key) "
                "holding the agent's API key",
            )
    else:
        report.check(f"{field}.agentSecretRef.name", formats.dns1123_subdomain(k8s.agentSecretRef.name))
        report.check(f"{field}.agentSecretRef.key", formats.config_key(k8s.agentSecretRef.key))

    if k8s.image is not None:
        problem, pinned = formats.image_reference(k8s.image)
        report.check(f"{field}.image", problem)
        if problem is None and not pinned:
            report.warn(
                f"{field}.image", "has no tag or uses 'latest'; pin a version or digest for repeatable runs"
            )

    if k8s.activeDeadlineSeconds < 1:  # the schema says so too; the CLI may see raw files
        report.error(f"{field}.activeDeadlineSeconds", "must be greater than 0 seconds")
    elif k8s.activeDeadlineSeconds > LONG_DEADLINE_SECONDS:
        report.warn(
            f"{field}.activeDeadlineSeconds",
            f"{k8s.activeDeadlineSeconds}s is over {LONG_DEADLINE_SECONDS // 3600} hours; is that intended?",
        )
    if k8s.resources is not None:
        _check_resources(k8s.resources.requests, k8s.resources.limits, settings, report)
    for label, label_value in (k8s.nodeSelector or {}).items():
        report.check(f"{field}.nodeSelector", formats.qualified_name(label))
        report.check(f"{field}.nodeSelector[{label[:63]}]", formats.label_value(label_value))
    _check_tolerations(k8s, report)
    for name_field, object_name in (
        ("runtimeClassName", k8s.runtimeClassName),
        ("serviceAccountName", k8s.serviceAccountName),
    ):
        if object_name is not None:
            report.check(f"{field}.{name_field}", formats.dns1123_subdomain(object_name))


def _check_tolerations(k8s: KubernetesSpec, report: _Report) -> None:
    for i, tol in enumerate(k8s.tolerations or []):
        where = f"spec.kubernetes.tolerations[{i}]"
        if tol.key:
            report.check(f"{where}.key", formats.qualified_name(tol.key))
        elif tol.operator != "Exists":
            report.error(
                f"{where}.operator", "must be Exists when key is empty (an empty key matches all taints)"
            )
        if tol.operator == "Exists" and tol.value:
            report.error(f"{where}.value", "must be empty when operator is Exists")
        if tol.value:
            report.check(f"{where}.value", formats.label_value(tol.value))
        if tol.tolerationSeconds is not None and tol.effect != "NoExecute":
            report.error(f"{where}.effect", "must be NoExecute when tolerationSeconds is set")


def _default_limits(settings: Settings) -> dict[str, str]:
    return {"cpu": settings.pod.cpu_limit, "memory": settings.pod.memory_limit}


def _check_resources(
    requests: dict[str, str], limits: dict[str, str], settings: Settings, report: _Report
) -> None:
    parsed: dict[str, dict[str, Fraction]] = {"requests": {}, "limits": {}}
    for kind, values in (("requests", requests), ("limits", limits)):
        for name, text in values.items():
            where = f"spec.kubernetes.resources.{kind}.{name[:63]}"
            if name not in STANDARD_RESOURCES and not name.startswith("hugepages-") and "/" not in name:
                report.error(
                    where,
                    "is not a resource name; use cpu, memory, ephemeral-storage, hugepages-<size> "
                    "or an extended resource such as example.com/gpu",
                )
                continue
            if "/" in name:
                problem = formats.qualified_name(name)
                if problem:
                    report.error(where, problem)
                    continue
            try:
                amount = parse_quantity(text)
            except QuantityError as exc:
                report.error(where, f"{formats.quote_value(text)} {exc}")
                continue
            if amount < 0:
                report.error(
                    where, f"{formats.quote_value(text)} is negative; a resource amount must be 0 or more"
                )
                continue
            parsed[kind][name] = amount
            large = LARGE_CPU if name == "cpu" else LARGE_MEMORY if name == "memory" else None
            if large is not None and amount > large:
                report.warn(where, f"{text} is very large; check the unit (e.g. 500m CPU, 512Mi memory)")
    defaults = _default_limits(settings)
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        where = f"spec.kubernetes.resources.requests.{name}"
        if limit is not None:
            if request > limit:
                report.error(
                    where,
                    f"{requests[name]} is more than the limit {limits[name]} "
                    f"({format_quantity(request)} > {format_quantity(limit)}); "
                    "a request must not exceed its limit",
                )
        elif name in defaults and name not in limits:
            try:
                default = parse_quantity(defaults[name])
            except QuantityError:
                continue
            if request > default:
                report.warn(
                    where,
                    f"{requests[name]} is more than the operator's default limit {defaults[name]}; "
                    f"set spec.kubernetes.resources.limits.{name} too",
                )


# --------------------------------------------------------------------------------------
# UPDATE: immutability
# --------------------------------------------------------------------------------------
def dispatched(obj: Mapping[str, Any]) -> bool:
    """Whether the work has started: status.startTime set, or the phase moved past Pending."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return False
    return bool(status.get("startTime")) or status.get("phase", "") not in _UNDISPATCHED_PHASES


def _spec_value(obj: Mapping[str, Any], *path: str, default: Any = None) -> Any:
    node: Any = obj.get("spec")
    for key in path:
        if not isinstance(node, Mapping):
            return default
        node = node.get(key, default if key == path[-1] else None)
    return node


def _check_immutable(new: Mapping[str, Any], old: Mapping[str, Any], report: _Report) -> None:
    """Fields that must not change: always (mode, rig) or once the work is dispatched."""
    # Set or left out (the Rig's) is part of the mode, as in the CEL rule.
    if _spec_value(new, "executionMode") != _spec_value(old, "executionMode"):
        report.errors.append(crd.MSG_MODE_IMMUTABLE)
    if _spec_value(new, "rig") != _spec_value(old, "rig"):
        report.errors.append(crd.MSG_RIG_IMMUTABLE)
    if dispatched(old):
        _check_frozen_after_dispatch(new, old, report)


def _field_default(path: tuple[str, ...]) -> Any:
    """The model default of a spec path, so an omitted field equals its default."""
    model: type[Any] = {"local": LocalSpec, "kubernetes": KubernetesSpec}.get(path[0], models.PolecatSpec)
    info = model.model_fields.get(path[-1])
    if info is None or info.is_required():
        return None
    default = info.get_default(call_default_factory=True)
    return default.value if isinstance(default, Enum) else default


def _check_frozen_after_dispatch(new: Mapping[str, Any], old: Mapping[str, Any], report: _Report) -> None:
    """Once dispatched, only spec.desiredState may change, and only towards Terminated.

    The fields that steer the work (bead, task, agent and every field of the mode
    section) would otherwise change under a running agent: a second agent, a town root
    that no longer holds the polecat, a Pod that cannot change anyway. The same rules
    are CEL on the CRD (gastown.api.crd.OBJECT_VALIDATIONS), with the same words.
    """
    status = old.get("status")
    phase = str(status.get("phase") or "dispatched") if isinstance(status, Mapping) else "dispatched"
    for path in crd.dispatched_frozen_fields():
        default = _field_default(path)
        before, after = _spec_value(old, *path, default=default), _spec_value(new, *path, default=default)
        if before != after:
            shown = "not set" if before is None else _input_repr(before)
            report.errors.append(crd.dispatched_immutable_message("spec." + ".".join(path), phase, shown))
    terminated = DesiredState.TERMINATED.value
    working = DesiredState.WORKING.value
    if (
        _spec_value(old, "desiredState", default=working) == terminated
        and _spec_value(new, "desiredState", default=working) != terminated
    ):
        report.errors.append(crd.MSG_NO_RESUME)


# --------------------------------------------------------------------------------------
# References, for the server's existence checks
# --------------------------------------------------------------------------------------
def references(polecat: Polecat) -> list[Reference]:
    """Secrets and ConfigMaps the Polecat needs, with the key and type each must have."""
    k8s = polecat.spec.kubernetes
    if polecat.spec.executionMode is not ExecutionMode.KUBERNETES or k8s is None:
        return []
    refs: list[Reference] = []
    if k8s.gitSecretRef is not None:
        refs.append(
            Reference(
                "Secret",
                k8s.gitSecretRef.name,
                "spec.kubernetes.gitSecretRef",
                key="ssh-privatekey",
                secret_type="kubernetes.io/ssh-auth",
            )
        )
    if k8s.knownHostsConfigMapRef is not None:
        refs.append(
            Reference(
                "ConfigMap",
                k8s.knownHostsConfigMapRef.name,
                "spec.kubernetes.knownHostsConfigMapRef",
                key="known_hosts",
            )
        )
    if k8s.agentSecretRef is not None:
        refs.append(
            Reference(
                "Secret",
                k8s.agentSecretRef.name,
                "spec.kubernetes.agentSecretRef",
                key=k8s.agentSecretRef.key,
            )
        )
    return refs


def effective_polecat(polecat: Polecat, rig: RigLookup | None) -> Polecat:
    """``polecat`` with its Rig's defaults applied, when the Rig was found and parses."""
    parsed = _rig_model(rig, _Report([], []))
    if parsed is None:
        return polecat
    return resolve.with_spec(polecat, resolve.resolve(polecat.spec, parsed).spec)


def parse_polecat(obj: Any) -> Polecat | None:
    """The object as a Polecat, or None if it does not parse (for callers that need the model)."""
    if not isinstance(obj, Mapping):
        return None
    try:
        return Polecat.model_validate({k: v for k, v in obj.items() if k != "status"})
    except (ValidationError, RecursionError, ValueError, TypeError):
        return None
