"""A Rig's local-mode defaults, through the real operator: real sshd, real tmux, on the lab.

Real: the operator's Manager with its own ``LocalExecutor`` (asyncssh pool), the lab's
apiserver with the generated CRDs, OpenSSH's sshd on 127.0.0.1, tmux. The "agent" is a
shell command that waits for a file the test creates (no LLM can run here), so each
step happens when the test says.

The Polecat names only its rig, bead and task: the dispatcher, the command and the
working directory come from its Rig, at dispatch, and are recorded in
``status.effective``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gastown.api.models import API_VERSION, FINALIZER, KIND, Phase
from gastown.controller.manager import Manager
from gastown.kube import KubeClient
from tests.e2e.test_local_mode_on_lab import (  # noqa: F401 - fixtures
    gated,
    local_settings,
    operator,
    phase_is,
    tmux_has,
    town,
)
from tests.e2e.test_rig_on_lab import create_rig
from tests.support.engine import polecats_path
from tests.support.operator import conditions, wait_status

pytestmark = [pytest.mark.lab, pytest.mark.sshd]


async def test_local_polecat_runs_with_its_rigs_local_defaults(
    kube: KubeClient,
    namespace: str,
    operator: Manager,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    ns, name = namespace, "from-rig"
    gate = tmp_path / "go"
    workdir = tmp_path / "work"
    workdir.mkdir()
    where = tmp_path / "pwd.txt"
    command = gated(gate, f"pwd > {shlex.quote(str(where))}; exit 0")
    await create_rig(
        kube, ns, "demo", local={"dispatcher": "tmux", "command": command, "workDir": str(workdir)}
    )
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"rig": "demo", "beadID": "de-rig1", "task": "Say hello."},
    }
    await kube.create(polecats_path(ns), body)

    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    session = f"gastown-{ns}-{name}"
    assert working["status"]["local"]["tmuxSession"] == session
    assert await tmux_has(operator.settings.tmux_socket, session)
    assert FINALIZER in working["metadata"]["finalizers"]
    effective = working["status"]["effective"]
    assert effective["executionMode"] == "local"
    assert effective["local"] == {"dispatcher": "tmux", "command": command, "workDir": str(workdir)}
    assert effective["fromRig"] == ["local.dispatcher", "local.command", "local.workDir"]
    assert "local" not in working["spec"]

    gate.touch()
    done = await wait_status(kube, ns, name, "Done", phase_is(Phase.DONE))
    assert conditions(done)["Ready"]["reason"] == "Completed"
    assert done["status"]["effective"] == effective
    assert where.read_text().strip() == str(workdir)  # the Rig's workDir was the session's
