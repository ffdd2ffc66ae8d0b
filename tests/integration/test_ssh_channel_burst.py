"""A burst of commands over the pool's one connection, against OpenSSH's real sshd.

sshd frees a session slot only after reaping the command, a moment after the
channel closed on the client's side, so at ``max_sessions=8`` (below its
``MaxSessions 10``) a sustained burst used to see a few percent of channel opens
refused. Found by ``bench/local_bench.py``; the pool now retries a refused open
(the command never started, so this is safe for any command).
"""

from __future__ import annotations

import asyncio

import pytest

from gastown.executors.local.ssh import SSHPool
from gastown.settings import SSHSettings

pytestmark = pytest.mark.sshd


async def test_a_burst_at_the_default_max_sessions_is_never_refused(ssh_settings: SSHSettings) -> None:
    assert ssh_settings.max_sessions == 8  # the default, below OpenSSH's MaxSessions 10
    async with SSHPool(ssh_settings) as pool:
        results = await asyncio.gather(
            *(pool.run(["sh", "-c", "echo $0", f"n{i}"]) for i in range(300)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        assert [r.stdout for r in results if not isinstance(r, BaseException)] == [
            f"n{i}\n" for i in range(300)
        ]
        assert pool.link(pool.default_target()).connects == 1
