"""Pod Security Standards, "restricted" profile, as a pure check on a Pod spec.

The chart promises that its Pods run under a namespace labelled
``pod-security.kubernetes.io/enforce=restricted``. The lab's kube-apiserver enforces
that for real (the e2e test installs into such a namespace); this function lets the
fast unit tests check every rendered Pod template without an apiserver, and say
exactly which field breaks which rule.

It follows https://kubernetes.io/docs/concepts/security/pod-security-standards/
(baseline controls plus the restricted ones), for the fields a chart can set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Volume types the restricted profile allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Sysctls the baseline profile allows.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
_APPARMOR_OK = frozenset({"RuntimeDefault", "Localhost"})


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod_spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """Every way ``pod_spec`` breaks Pod Security "restricted"; empty means it passes.

    Each entry names the field, what is wrong and what is allowed, e.g.
    ``containers[operator].securityContext.allowPrivilegeEscalation: must be false``.
    """
    problems: list[str] = []
    pod_sc: Mapping[str, Any] = pod_spec.get("securityContext") or {}

    # Host namespaces.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"spec.{field}: must be unset or false")

    # Volumes.
    for volume in pod_spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        if "hostPath" in kinds:
            problems.append(f"volumes[{volume.get('name')}]: hostPath volumes are forbidden")
        for kind in kinds:
            if kind not in RESTRICTED_VOLUME_TYPES and kind != "hostPath":
                problems.append(
                    f"volumes[{volume.get('name')}]: type {kind!r} is not allowed; allowed: "
                    f"{', '.join(sorted(RESTRICTED_VOLUME_TYPES))}"
                )

    # Sysctls, SELinux and AppArmor at Pod level.
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"spec.securityContext.sysctls: {sysctl.get('name')!r} is not a safe sysctl")
    problems += _selinux_problems("spec.securityContext", pod_sc)
    problems += _apparmor_problems("spec.securityContext", pod_sc)

    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser: must not be 0 (root)")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_OK:
        problems.append(
            f"spec.securityContext.seccompProfile.type: {pod_seccomp!r}; allowed: RuntimeDefault, Localhost"
        )

    for where, container in _containers(pod_spec):
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        at = f"{where}.securityContext"
        if sc.get("privileged"):
            problems.append(f"{at}.privileged: must be unset or false")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}.allowPrivilegeEscalation: must be false")
        caps: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{at}.capabilities.drop: must contain ALL")
        extra = [c for c in caps.get("add") or [] if c != "NET_BIND_SERVICE"]
        if extra:
            problems.append(f"{at}.capabilities.add: {extra} not allowed; only NET_BIND_SERVICE may be added")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(f"{at}.runAsNonRoot: must be true (here or in spec.securityContext)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{at}.runAsUser: must not be 0 (root)")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            problems.append(
                f"{at}.seccompProfile.type: must be RuntimeDefault or Localhost (here or Pod-wide)"
            )
        elif seccomp is not None and seccomp not in _SECCOMP_OK:
            problems.append(f"{at}.seccompProfile.type: {seccomp!r}; allowed: RuntimeDefault, Localhost")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{at}.procMount: must be Default")
        problems += _selinux_problems(at, sc)
        problems += _apparmor_problems(at, sc)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}.ports[{port.get('name', '?')}].hostPort: must be unset or 0")
    return problems


def _selinux_problems(at: str, sc: Mapping[str, Any]) -> list[str]:
    options: Mapping[str, Any] = sc.get("seLinuxOptions") or {}
    problems = []
    if options.get("type", "") not in _SELINUX_TYPES:
        problems.append(f"{at}.seLinuxOptions.type: {options.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            problems.append(f"{at}.seLinuxOptions.{field}: must be unset")
    return problems


def _apparmor_problems(at: str, sc: Mapping[str, Any]) -> list[str]:
    profile = (sc.get("appArmorProfile") or {}).get("type")
    if profile is not None and profile not in _APPARMOR_OK:
        return [f"{at}.appArmorProfile.type: {profile!r}; allowed: RuntimeDefault, Localhost"]
    return []
