"""Children that die with their parent: Linux ``PR_SET_PDEATHSIG``.

The lab's processes and the dev sshds are started by a test run or by
``gastown-operator dev``. If that process is killed outright (SIGKILL, a crash), no
cleanup code runs; the kernel then sends each child SIGKILL, so no apiserver, etcd
or sshd outlives it. Used as ``preexec_fn`` (it runs in the child between fork and
exec).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL me when my parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
