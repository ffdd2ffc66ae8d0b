"""A Convoy in local mode: its Polecats run as real tmux sessions over real SSH.

Real: the operator's Manager with the executors it builds itself (the ``LocalExecutor``
and its asyncssh pool, the Convoy controller), the lab's kube-apiserver and etcd,
OpenSSH's sshd on 127.0.0.1, tmux. The "agent" is a shell command that waits for a file
the test creates (named after its bead's task), so each bead ends when the test says.
Fixtures are those of tests/e2e/test_local_mode_on_lab.py.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gastown.api import convoy as convoy_api
from gastown.api.models import API_VERSION
from gastown.controller.manager import Manager
from gastown.devcluster.lab import Lab
from gastown.kube import KubeClient
from tests.e2e import test_local_mode_on_lab as local_mode
from tests.e2e.test_convoy_on_lab import complete, convoys_path, peak_unfinished, wait_convoy
from tests.e2e.test_local_mode_on_lab import tmux_has
from tests.support.operator import conditions
from tests.support.waiting import wait_until
from tests.support.watch_ledger import witnessed

pytestmark = [pytest.mark.lab, pytest.mark.sshd]

town = local_mode.town
local_settings = local_mode.local_settings
operator = local_mode.operator


async def test_a_local_convoy_runs_its_beads_as_tmux_sessions_within_parallelism(
    lab: Lab, kube: KubeClient, namespace: str, operator: Manager, tmp_path: Path
) -> None:
    """3 beads, parallelism 2, tmux dispatcher: two sessions, the third bead starts only when
    one ends, all Done; the Convoy is Complete/AllDone."""
    ns, name = namespace, "local"
    gates = tmp_path / "gates"
    gates.mkdir()
    command = (
        f'while [ ! -e {shlex.quote(str(gates))}/"$(cat "$GASTOWN_TASK_FILE")" ]; do sleep 0.05; done; exit 0'
    )
    body = {
        "apiVersion": API_VERSION,
        "kind": convoy_api.KIND,
        "metadata": {"name": name},
        "spec": {
            "beads": [{"beadID": f"gt-{t}", "task": t} for t in ("a1", "b2", "c3")],
            "parallelism": 2,
            "template": {
                "spec": {
                    "rig": "demo",
                    "task": "unused",
                    "executionMode": "local",
                    "local": {"dispatcher": "tmux", "command": command},
                }
            },
        },
    }
    async with witnessed(lab, ns) as ledger:
        await kube.create(convoys_path(ns), body)
        await wait_until(
            lambda: [ledger.phase(f"{name}-{i}") for i in (1, 2)] == ["Working"] * 2,
            what="two sessions Working",
            timeout=60,
        )
        socket = operator.settings.tmux_socket
        assert await tmux_has(socket, f"gastown-{ns}-{name}-1")
        assert f"{name}-3" not in ledger.polecat_uids  # parallelism 2
        (gates / "a1").touch()
        await wait_until(
            lambda: ledger.phase(f"{name}-3") == "Working", what="the third bead Working", timeout=60
        )
        (gates / "b2").touch()
        (gates / "c3").touch()
        done = await wait_convoy(kube, convoys_path(ns, name), "Complete", complete, timeout=60)

    assert peak_unfinished(ledger, f"{name}-") == 2
    assert {n: len(u) for n, u in ledger.polecat_uids.items()} == {f"{name}-{i}": 1 for i in (1, 2, 3)}
    assert conditions(done)["Complete"]["reason"] == "AllDone"
    assert [b["phase"] for b in done["status"]["beads"]] == ["Done"] * 3
    assert [b["beadID"] for b in done["status"]["beads"]] == ["gt-a1", "gt-b2", "gt-c3"]
