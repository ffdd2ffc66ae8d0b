"""How the runner's git talks SSH: one identity, strictly checked host keys.

Kubernetes mounts the ``gitSecretRef`` Secret read-only, and with ``fsGroup`` its key
file is group-readable, which OpenSSH refuses for a private key. So the clone step
*installs* the identity: it copies the key into ``$HOME/.ssh`` (an emptyDir shared
with the agent container) with mode 0600, and the ``known_hosts`` of the
``knownHostsConfigMapRef`` ConfigMap next to it. Both steps then run git with
``GIT_SSH_COMMAND`` pointing at exactly those files:

* ``-F /dev/null``: no ssh_config from the image or the user can loosen anything;
* ``StrictHostKeyChecking=yes`` with only our ``UserKnownHostsFile`` (the global file is
  ``/dev/null``): an unknown host fails, it is never silently accepted;
* ``IdentitiesOnly=yes -i KEY``: only the Secret's key is offered;
* ``BatchMode=yes``: never wait for a password or a passphrase.

``GIT_SSH_COMMAND`` is run by a shell, so every path in it is ``shlex``-quoted. When a
git command fails, :func:`explain_ssh_failure` turns OpenSSH's stderr into a message
that names the host, the ConfigMap or Secret, and what to do.

Standard library only: the agent image installs the package without dependencies.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

KEY_FILE_NAME = "id_gastown"
KNOWN_HOSTS_FILE_NAME = "known_hosts"
# Protocols git may use. "ext" (runs a command) and "file" are not among them by
# default; tests that clone a local bare repo widen this explicitly.
DEFAULT_ALLOWED_PROTOCOLS = "ssh:https"


@dataclass(frozen=True, slots=True)
class SSHIdentity:
    """The key and known_hosts file git's ssh uses. ``key_file`` None: no key (https)."""

    key_file: Path | None
    known_hosts_file: Path


@dataclass(frozen=True, slots=True)
class CredentialNames:
    """Names of the Kubernetes objects the credentials came from, for error messages."""

    git_secret: str | None = None
    known_hosts_configmap: str | None = None


def install_identity(ssh_dir: Path, key_source: Path | None, known_hosts_source: Path | None) -> SSHIdentity:
    """Copy the mounted key and known_hosts into ``ssh_dir`` with modes OpenSSH accepts.

    A missing ``known_hosts_source`` installs an empty file: strict checking then
    rejects every host, which is the safe outcome (and explained on failure).
    """
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    key_file: Path | None = None
    if key_source is not None:
        key = key_source.read_bytes()
        if not key.endswith(b"\n"):
            # Secrets made with `kubectl create secret --from-literal` often lose the
            # final newline; OpenSSH then reports "invalid format".
            key += b"\n"
        key_file = ssh_dir / KEY_FILE_NAME
        _write_private(key_file, key, 0o600)
    known_hosts = known_hosts_source.read_bytes() if known_hosts_source is not None else b""
    known_hosts_file = ssh_dir / KNOWN_HOSTS_FILE_NAME
    _write_private(known_hosts_file, known_hosts, 0o644)
    return SSHIdentity(key_file=key_file, known_hosts_file=known_hosts_file)


def installed_identity(ssh_dir: Path) -> SSHIdentity:
    """The identity a previous :func:`install_identity` left in ``ssh_dir``."""
    key_file = ssh_dir / KEY_FILE_NAME
    return SSHIdentity(
        key_file=key_file if key_file.exists() else None,
        known_hosts_file=ssh_dir / KNOWN_HOSTS_FILE_NAME,
    )


def ssh_command(identity: SSHIdentity) -> str:
    """The ``GIT_SSH_COMMAND`` value: a shell line, every path quoted.

    Quoted twice where needed: for the shell that runs the line (``shlex``), and for
    ssh's own option parser, which splits ``UserKnownHostsFile`` on whitespace unless
    the value is in double quotes.
    """
    known_hosts = str(identity.known_hosts_file)
    if '"' in known_hosts or "\n" in known_hosts:
        raise ValueError(f"known_hosts path {known_hosts!r} cannot be passed to ssh")
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f'UserKnownHostsFile="{known_hosts}"',
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=30",
    ]
    if identity.key_file is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(identity.key_file)]
    return shlex.join(argv)


def git_env(
    identity: SSHIdentity,
    base: Mapping[str, str],
    *,
    allowed_protocols: str = DEFAULT_ALLOWED_PROTOCOLS,
) -> dict[str, str]:
    """Environment for git: ``base`` plus the SSH command and no interactive prompts."""
    env = dict(base)
    env["GIT_SSH_COMMAND"] = ssh_command(identity)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_ALLOW_PROTOCOL"] = allowed_protocols
    return env


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>\[[^\]]+\]|[^:/]+):(?!//)")


def ssh_host(url: str) -> str | None:
    """The host as known_hosts names it (``host`` or ``[host]:port``), or None if not SSH."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("ssh", "git+ssh", "ssh+git"):
            return None
        host = parts.hostname or ""
        if not host:
            return None
        port = parts.port
        return f"[{host}]:{port}" if port not in (None, 22) else host
    match = _SCP_LIKE.match(url)
    if match is None:
        return None
    return match.group("host").strip("[]")


def redact_url(url: str) -> str:
    """``url`` without a password, fit for messages and logs."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def explain_ssh_failure(stderr: str, url: str, names: CredentialNames) -> str | None:
    """A clear message for an SSH-level failure in git's ``stderr``, or None if it is not one."""
    host = ssh_host(url) or redact_url(url)
    configmap = names.known_hosts_configmap
    changed = "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or (
        "Host key for" in stderr and "has changed" in stderr
    )
    if changed:
        where = f"known_hosts ConfigMap {configmap}" if configmap else "the installed known_hosts"
        return (
            f"host key for {host} does not match {where}: either the host's key was rotated "
            "(update the ConfigMap's known_hosts) or someone is intercepting the connection"
        )
    if "Host key verification failed" in stderr or re.search(r"No \S+ host key is known for", stderr):
        if configmap:
            return (
                f"host key for {host} not in known_hosts ConfigMap {configmap}: add it "
                f"(e.g. the output of ssh-keyscan for {host}) to the ConfigMap's known_hosts key"
            )
        return (
            f"host key for {host} is unknown and no known_hosts ConfigMap is set: create a ConfigMap "
            "with a known_hosts key and set spec.kubernetes.knownHostsConfigMapRef"
        )
    if "Permission denied (publickey" in stderr:
        secret = names.git_secret
        if secret:
            return (
                f"{host} refused the SSH key from Secret {secret} (key ssh-privatekey): add its public "
                "key to the repository (a deploy key with write access)"
            )
        return (
            f"{host} asked for an SSH key and none is set: set spec.kubernetes.gitSecretRef to a "
            "kubernetes.io/ssh-auth Secret"
        )
    if "Load key" in stderr and ("invalid format" in stderr or "error in libcrypto" in stderr):
        return f"the private key in Secret {names.git_secret} (key ssh-privatekey) is not a valid OpenSSH key"
    return None


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (git's errors end with the useful line)."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` created with ``mode`` (no window with wider modes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)
