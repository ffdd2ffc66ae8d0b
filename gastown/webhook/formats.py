"""What git, Kubernetes and tmux accept as names, URLs and references.

Each checker takes untrusted text and returns ``None`` when it is acceptable, or a short
problem phrase ("contains '..'", "plain http is not allowed; use https://") that the
rules module prefixes with the field path. Checkers never raise on odd input and run in
linear time: every pattern is anchored, ASCII-only and free of nested ambiguous
repetition, and every input is length-checked first (admission requests are hostile
input, and the webhook must stay fast).
"""

from __future__ import annotations

import re
from typing import Final

# Characters that mean something to a POSIX shell. A name that reaches a command line is
# always quoted anyway (shlex.quote/argv); these are refused where no legitimate value has
# them, so a mistake or an attack fails loudly at kubectl apply instead of deep inside.
SHELL_METACHARACTERS: Final = frozenset("`$&|;<>(){}[]*?!#~'\"\\\n\r\t ")

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_DNS1123_SUBDOMAIN_PART: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_LABEL_NAME: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?", re.ASCII)
_CONFIG_KEY: Final = re.compile(r"[-._A-Za-z0-9]+", re.ASCII)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]", re.ASCII)

DNS1123_LABEL_HELP: Final = (
    "use lowercase letters, digits and '-', starting and ending with a letter or digit"
)


def quote_value(value: str, limit: int = 60) -> str:
    """A value quoted for a message, cut short so one field cannot flood the response."""
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)


def dns1123_label(value: str, max_length: int = 63) -> str | None:
    """A DNS-1123 label: what Pod names, label values and our tmux sessions all accept."""
    if len(value) > max_length:
        return f"is {len(value)} characters long; at most {max_length} are allowed"
    if not _DNS1123_LABEL.fullmatch(value):
        return f"{quote_value(value)} is not a DNS-1123 label; {DNS1123_LABEL_HELP}"
    return None


def dns1123_subdomain(value: str) -> str | None:
    """A DNS-1123 subdomain: what names of Secrets, ConfigMaps, ServiceAccounts must be."""
    if not value:
        return "must not be empty"
    if len(value) > 253:
        return f"is {len(value)} characters long; at most 253 are allowed"
    if not all(_DNS1123_SUBDOMAIN_PART.fullmatch(part) for part in value.split(".")):
        return (
            f"{quote_value(value)} is not a valid object name; use lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def qualified_name(value: str) -> str | None:
    """A label key or extended resource name: ``[prefix/]name`` as Kubernetes defines it."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or dns1123_subdomain(prefix) is not None):
        return f"{quote_value(value)} has an invalid prefix; the part before '/' must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"{quote_value(value)} is not a qualified name; use [prefix/]name where name is at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value(value: str) -> str | None:
    """A label value: empty, or at most 63 letters, digits, '-', '_', '.'."""
    if value == "":
        return None
    if len(value) > 63 or not _LABEL_NAME.fullmatch(value):
        return (
            f"{quote_value(value)} is not a valid label value; use at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def config_key(value: str) -> str | None:
    """A key of a Secret or ConfigMap."""
    if len(value) > 253 or not _CONFIG_KEY.fullmatch(value) or value in {".", ".."}:
        return f"{quote_value(value)} is not a valid Secret key; use letters, digits, '-', '_' and '.'"
    return None


def git_branch(value: str) -> str | None:
    """A branch name git accepts (``git check-ref-format --branch``), minus shell oddities.

    The CRD pattern already limits the characters to ``[A-Za-z0-9._/-]`` with an
    alphanumeric start; this adds git's structural rules.
    """
    if len(value) > 255:
        return f"is {len(value)} characters long; at most 255 are allowed"
    problems = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", value, re.ASCII):
        problems.append("use letters, digits, '.', '_', '-' and '/', starting with a letter or digit")
    if ".." in value:
        problems.append("must not contain '..'")
    if "//" in value:
        problems.append("must not contain '//'")
    if value.endswith(("/", ".")):
        problems.append("must not end with '/' or '.'")
    if any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")):
        problems.append("no part between '/' may start with '.' or end with '.lock'")
    if value == "HEAD":
        problems.append("'HEAD' is not a branch name")
    if problems:
        return f"{quote_value(value)} is not a branch name git accepts: " + "; ".join(problems)
    return None


# --- repository URLs ----------------------------------------------------------------
_HOST: Final = r"(?P<host>[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
_REPO_PATH: Final = r"(?P<path>[A-Za-z0-9._~/+-]+)"
_USER: Final = r"(?:[A-Za-z0-9][-A-Za-z0-9._]*@)"
_SCP_LIKE: Final = re.compile(rf"{_USER}?{_HOST}:{_REPO_PATH}", re.ASCII)
_SSH_URL: Final = re.compile(rf"ssh://{_USER}?{_HOST}(?::(?P<port>[0-9]{{1,5}}))?/{_REPO_PATH}", re.ASCII)
_HTTPS_URL: Final = re.compile(rf"https://{_HOST}(?::(?P<port>[0-9]{{1,5}}))?/{_REPO_PATH}", re.ASCII)

# '~' (user paths) and brackets (IPv6 hosts) are legitimate in repository URLs.
_REPOSITORY_UNSAFE: Final = SHELL_METACHARACTERS - frozenset("~[]")

REPOSITORY_HELP: Final = (
    "use git@host:path/repo.git, ssh://[user@]host[:port]/path/repo.git or https://host/path/repo.git"
)


def git_repository(value: str) -> tuple[str | None, bool]:
    """Check a repository URL; return ``(problem, is_ssh)``.

    Only transports the Pod can use safely: SSH (scp-like or ``ssh://``) and HTTPS.
    Refused on purpose: ``http://`` (no integrity), ``git://``, ``file://`` and local
    paths (reach into the Pod), ``ext::`` (runs a command), a leading ``-`` or a host
    starting with ``-`` (read by ssh as an option), credentials in the URL (they would
    show up in status, events and logs; use ``gitSecretRef``).
    """
    # A first guess for early refusals; settled below once the URL parses.
    is_ssh = value.startswith("ssh://") or ("://" not in value and ":" in value)
    if len(value) > 2048:
        return f"is {len(value)} characters long; at most 2048 are allowed", is_ssh
    if value.startswith("-"):
        return (
            f"{quote_value(value)} starts with '-', which git and ssh read as an option; {REPOSITORY_HELP}",
            is_ssh,
        )
    if _CONTROL.search(value) or any(c in _REPOSITORY_UNSAFE for c in value):
        return (
            f"{quote_value(value)} contains spaces, control or shell characters that no repository URL "
            f"needs; {REPOSITORY_HELP}",
            is_ssh,
        )
    scheme = value.split("://", 1)[0].lower() if "://" in value else None
    if scheme == "http":
        return f"{quote_value(value)} uses plain http, which is not allowed; use https:// or SSH", False
    if value.lower().startswith("ext::") or scheme not in (None, "ssh", "https"):
        return f"{quote_value(value)} uses a transport that is not supported; {REPOSITORY_HELP}", False
    if scheme == "https":
        authority = value[len("https://") :].split("/", 1)[0]
        if "@" in authority:
            return (
                "must not contain credentials (user:token@); reference them from a Secret instead "
                "and use an SSH URL with gitSecretRef",
                False,
            )
        match = _HTTPS_URL.fullmatch(value)
    elif scheme == "ssh":
        match = _SSH_URL.fullmatch(value)
    else:
        match = _SCP_LIKE.fullmatch(value)
        is_ssh = match is not None
    if match is None:
        return f"{quote_value(value)} is not a supported repository URL; {REPOSITORY_HELP}", is_ssh
    port = match.groupdict().get("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} is out of range; use 1-65535", is_ssh
    if any(part == ".." for part in match["path"].split("/")):
        return f"{quote_value(value)} has a '..' path component; name the repository directly", is_ssh
    return None, is_ssh


# --- image references (github.com/distribution/reference grammar) -------------------
_ALNUM: Final = r"[a-z0-9]+"
_SEPARATOR: Final = r"(?:[._]|__|-+)"
_PATH_COMPONENT: Final = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE: Final = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?",
    re.ASCII,
)
IMAGE_HELP: Final = (
    "use [registry[:port]/]repository[:tag][@sha256:digest] with a lowercase repository, "
    "e.g. ghcr.io/org/agent:1.2.3"
)


def image_reference(value: str) -> tuple[str | None, bool]:
    """Check a container image reference; return ``(problem, pinned)``.

    ``pinned`` is False for a reference with no tag and no digest, or the ``latest`` tag:
    such a Pod may run different code tomorrow (the rules turn that into a warning).
    """
    if len(value) > 1024:
        return f"is {len(value)} characters long; at most 1024 are allowed", False
    match = _IMAGE.fullmatch(value)
    if match is None or len(match["name"]) > 255:
        return f"{quote_value(value)} is not a valid image reference; {IMAGE_HELP}", False
    pinned = match["digest"] is not None or (match["tag"] is not None and match["tag"] != "latest")
    return None, pinned


def absolute_path(value: str) -> str | None:
    """A path on the operator host that reaches tmux/gt: absolute, plain, no traversal."""
    if not value.startswith("/"):
        return f"{quote_value(value)} is not an absolute path; start it with '/'"
    bad = sorted({c for c in value if c in SHELL_METACHARACTERS and c != " "} | set(_CONTROL.findall(value)))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return (
            f"{quote_value(value)} contains {shown}; a path may use letters, digits, spaces "
            "and . _ - / + @ , : ="
        )
    if any(part == ".." for part in value.split("/")):
        return f"{quote_value(value)} contains a '..' component; give the path without it"
    return None


def command_line(value: str) -> str | None:
    """A one-line shell command written by the Polecat's author (shell syntax is allowed)."""
    if not value.strip():
        return "must not be empty or blank"
    if "\n" in value or "\r" in value:
        return "must be a single line; put a longer script in a file and run that file"
    if _CONTROL.search(value.replace("\t", " ")):
        return "contains control characters; use printable text"
    return None
