"""Local mode through the real operator, on the lab (issue 5's "must show").

Real: the operator's Manager with the executors it builds itself (informers, work
queue, reconciler, status writes, finalizer, Events, the ``LocalExecutor`` and its
asyncssh pool), the lab's kube-apiserver and etcd, OpenSSH's sshd on 127.0.0.1 (key
auth, pinned host key), tmux, git.

Stand-ins, for what cannot run here: Gas Town's ``gt`` is ``tests/fakes/gt`` (the real
one needs a Dolt server; the stand-in honours gt's commands, flags and JSON and starts
real tmux sessions and real git worktrees), and the "agent" is a shell command or
script that waits for a file the test creates, so each step happens when the test
says, not after a sleep.

The operator runs in the test process (leader election and webhook off), serves only
the test's namespace and polls local work every 0.2 s.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import ANNOTATION_FORCE_DELETE, API_VERSION, FINALIZER, KIND, Phase
from gastown.controller.manager import Manager
from gastown.devcluster.sshd import UserSshd
from gastown.executors.local.tmux import town_socket_name
from gastown.kube import KubeClient
from gastown.settings import Settings, SSHSettings
from tests.fixtures.sshd import FAKE_GT, gt_calls, kill_tmux_server, make_town
from tests.support.engine import engine_settings, polecats_path
from tests.support.operator import (
    conditions,
    get_or_none,
    running_operator,
    wait_events,
    wait_gone,
    wait_status,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.sshd]

# The stand-in agent of the gt tests: waits for go-<bead>, commits (never pushes) and
# keeps working, so its polecat holds unpushed work while its session is alive.
UNPUSHED_AGENT = """\
echo "agent $GT_POLECAT on $GT_ISSUE: $(cat "$GT_FAKE_ARGS_FILE")"
while [ ! -e "$GT_TOWN_ROOT/go-$GT_ISSUE" ]; do sleep 0.05; done
printf 'work\\n' > WORK.md
git add WORK.md && git -c user.email=a@example.invalid -c user.name=a commit -qm work
: > "$GT_TOWN_ROOT/committed-$GT_ISSUE"
while :; do sleep 1; done
"""


def phase_is(phase: Phase) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase.value


@pytest.fixture
async def town(tmp_path: Path) -> AsyncIterator[Path]:
    """A Gas Town town for the stand-in gt, with rig ``demo`` (beads prefix ``de``)."""
    root = make_town(tmp_path / "town", {"demo": "de"}, agent=UNPUSHED_AGENT, beads=["de-wip"])
    yield root
    await kill_tmux_server(town_socket_name(str(root), os.path.realpath(root)))


@pytest.fixture
def local_settings(namespace: str, ssh_settings: SSHSettings, tmux_socket: str, town: Path) -> Settings:
    """Local mode pointed at the test sshd, the test's tmux server and its town; quick polls."""
    return engine_settings(
        namespace,
        ssh=ssh_settings,
        tmux_socket=tmux_socket,
        local_poll_interval=0.2,
        gt_binary=str(FAKE_GT),
        town_root=str(town),
    )


@pytest.fixture
async def operator(
    kube: KubeClient, k8s_api: client.ApiClient, local_settings: Settings
) -> AsyncIterator[Manager]:
    """The operator, with the executors it builds from ``local_settings``."""
    async with running_operator(k8s_api, local_settings) as manager:
        yield manager


async def create_polecat(
    kube: KubeClient, namespace: str, name: str, local: dict[str, Any], *, bead: str = "gt-abc12"
) -> dict[str, Any]:
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "rig": "demo",
            "beadID": bead,
            "task": "Say hello.",
            "executionMode": "local",
            "local": local,
        },
    }
    created: dict[str, Any] = await kube.create(polecats_path(namespace), body)
    return created


def gated(gate: Path, then: str) -> str:
    """A session command that waits for ``gate`` to exist, then runs ``then``."""
    q = shlex.quote(str(gate))
    return f'cat "$GASTOWN_TASK_FILE"; while [ ! -e {q} ]; do sleep 0.05; done; {then}'


async def tmux_has(socket: str, session: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "has-session", "-t", f"={session}", stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


async def exists(path: Path) -> bool:
    return path.exists()


async def wait_no_session(socket: str, session: str) -> None:
    async def gone() -> bool:
        return not await tmux_has(socket, session)

    await wait_for(gone, what=f"tmux session {session} on {socket} to be gone")


async def test_tmux_polecat_runs_to_done_and_is_released_on_delete(
    kube: KubeClient, namespace: str, operator: Manager, sshd: UserSshd, tmp_path: Path
) -> None:
    """A tmux-dispatcher Polecat: a real session starts, the status says where (host, socket,
    session), the command's exit 0 makes it Done; deleting it removes the session and its
    state on the host, then the finalizer, and the Polecat is gone."""
    ns, name, tmux_socket = namespace, "hello", operator.settings.tmux_socket
    gate = tmp_path / "go-hello"
    created = await create_polecat(
        kube, ns, name, {"dispatcher": "tmux", "command": gated(gate, "echo finished; exit 0")}
    )

    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    session = f"gastown-{ns}-{name}"
    assert working["status"]["local"] == {
        "host": "127.0.0.1",
        "tmuxSocket": tmux_socket,
        "tmuxSession": session,
        "sessionActive": True,
    }
    assert FINALIZER in working["metadata"]["finalizers"]
    conds = conditions(working)
    assert conds["Ready"]["status"] == "True" and conds["Dispatched"]["status"] == "True"
    assert await tmux_has(tmux_socket, session), "the status names a session that does not exist"
    assert sshd.home is not None
    state_dir = sshd.home / ".gastown" / "sessions" / session
    assert (state_dir / "task.txt").read_text() == "Say hello."

    gate.touch()
    done = await wait_status(kube, ns, name, "Done", phase_is(Phase.DONE))
    conds = conditions(done)
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "Completed"
    assert "exited 0" in conds["Ready"]["message"]
    assert done["status"]["completionTime"]
    events = await wait_events(kube, ns, name, {"Working", "Completed"})
    assert all(e["type"] == "Normal" for e in events.values())
    assert events["Working"]["regarding"]["uid"] == created["metadata"]["uid"]

    await kube.delete(polecats_path(ns, name))
    await wait_gone(kube, polecats_path(ns, name))
    assert not await tmux_has(tmux_socket, session)
    assert not state_dir.exists()
    await wait_events(kube, ns, name, {"Released"})


async def test_failing_command_makes_the_polecat_failed(
    kube: KubeClient, namespace: str, operator: Manager, tmp_path: Path
) -> None:
    ns, name = namespace, "broken"
    gate = tmp_path / "go-broken"
    await create_polecat(kube, ns, name, {"dispatcher": "tmux", "command": gated(gate, "exit 3")})
    await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))

    gate.touch()
    failed = await wait_status(kube, ns, name, "Failed", phase_is(Phase.FAILED))
    ready = conditions(failed)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "CommandFailed"
    assert "exited 3" in ready["message"]
    events = await wait_events(kube, ns, name, {"CommandFailed"})
    assert events["CommandFailed"]["type"] == "Warning"


async def test_deleting_a_working_polecat_kills_its_session(
    kube: KubeClient, namespace: str, operator: Manager, tmux_socket: str, tmp_path: Path
) -> None:
    ns, name = namespace, "doomed"
    await create_polecat(
        kube, ns, name, {"dispatcher": "tmux", "command": gated(tmp_path / "never", "exit 0")}
    )
    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    session = working["status"]["local"]["tmuxSession"]
    assert await tmux_has(tmux_socket, session)

    await kube.delete(polecats_path(ns, name))
    await wait_gone(kube, polecats_path(ns, name))  # the finalizer was removed
    await wait_no_session(tmux_socket, session)


async def test_gt_polecat_with_unpushed_work_is_kept_until_forced(
    kube: KubeClient, namespace: str, operator: Manager, town: Path
) -> None:
    """The gt dispatcher: ``gt sling`` once, status.local names gt's polecat; deleting it
    while its work is committed but not pushed is refused (condition + Warning Event,
    worktree and session kept) until the force-delete annotation is set."""
    ns, name, bead = namespace, "slung", "de-wip"
    await create_polecat(kube, ns, name, {"dispatcher": "gt"}, bead=bead)

    working = await wait_status(kube, ns, name, "Working", phase_is(Phase.WORKING))
    local = working["status"]["local"]
    assert local["polecatName"] == "obsidian"
    socket = town_socket_name(str(town), os.path.realpath(town))
    assert local["tmuxSocket"] == socket
    assert local["tmuxSession"] == "de-obsidian"
    assert local["host"] == "127.0.0.1"
    assert await tmux_has(socket, "de-obsidian")
    slings = [c["argv"] for c in gt_calls(town) if c["argv"][:1] == ["sling"]]
    assert slings == [["sling", bead, "demo", "--stdin"]], "slung more than once"

    (town / f"go-{bead}").touch()
    await wait_for(lambda: exists(town / f"committed-{bead}"), what="the agent to commit")
    worktree = town / "demo" / "polecats" / "obsidian" / "demo"

    await kube.delete(polecats_path(ns, name))
    blocked = await wait_status(
        kube,
        ns,
        name,
        "deletion blocked",
        lambda o: conditions(o).get("Ready", {}).get("reason") == "UnsafeToNuke",
    )
    assert blocked["metadata"].get("deletionTimestamp")
    assert FINALIZER in blocked["metadata"]["finalizers"]
    ready = conditions(blocked)["Ready"]
    assert ready["status"] == "False"
    assert "unpushed commit" in ready["message"]
    assert ANNOTATION_FORCE_DELETE in ready["message"]
    events = await wait_events(kube, ns, name, {"UnsafeToNuke"})
    assert events["UnsafeToNuke"]["type"] == "Warning"
    assert ANNOTATION_FORCE_DELETE in events["UnsafeToNuke"]["note"]
    assert worktree.is_dir() and await tmux_has(socket, "de-obsidian"), "work was destroyed while blocked"

    await kube.merge_patch(
        polecats_path(ns, name), {"metadata": {"annotations": {ANNOTATION_FORCE_DELETE: "true"}}}
    )
    await wait_gone(kube, polecats_path(ns, name))
    assert not worktree.exists()
    assert not await tmux_has(socket, "de-obsidian")
    nukes = [c["argv"] for c in gt_calls(town) if c["argv"][:2] == ["polecat", "nuke"]]
    assert nukes and all("--force" in argv for argv in nukes)
    released = await wait_events(kube, ns, name, {"Released"})
    assert "forced" in released["Released"]["note"]
    assert (await get_or_none(kube, polecats_path(ns, name))) is None


async def test_second_polecat_on_a_bead_waits_until_the_first_is_deleted(
    kube: KubeClient, namespace: str, operator: Manager, tmux_socket: str, tmp_path: Path
) -> None:
    """One bead, one live Polecat: the younger one stays Pending (BeadClaimed), no session,
    until the holder is deleted (its finalizer released its session); then it starts."""
    ns, local = namespace, {"dispatcher": "tmux", "command": gated(tmp_path / "never", "exit 0")}
    await create_polecat(kube, ns, "holder", local, bead="de-claim")
    await wait_status(kube, ns, "holder", "Working", phase_is(Phase.WORKING))
    await create_polecat(kube, ns, "waiter", local, bead="de-claim")

    def claimed(obj: dict[str, Any]) -> bool:
        ready = conditions(obj).get("Ready") or {}
        return ready.get("reason") == "BeadClaimed" and f"claimed by Polecat {ns}/holder" in ready["message"]

    # A whole reconcile after a spec change (allowed: nothing was dispatched) still waits.
    bumped = await kube.merge_patch(polecats_path(ns, "waiter"), {"spec": {"task": "Still waiting."}})
    generation = bumped["metadata"]["generation"]
    waiting = await wait_status(
        kube,
        ns,
        "waiter",
        f"BeadClaimed at generation {generation}",
        lambda o: claimed(o) and o["status"].get("observedGeneration") == generation,
    )
    assert waiting["status"]["phase"] == "Pending" and "startTime" not in waiting["status"]
    assert not await tmux_has(tmux_socket, f"gastown-{ns}-waiter"), "the waiter was dispatched"

    await kube.delete(polecats_path(ns, "holder"))
    await wait_gone(kube, polecats_path(ns, "holder"))
    working = await wait_status(kube, ns, "waiter", "Working", phase_is(Phase.WORKING))
    assert await tmux_has(tmux_socket, working["status"]["local"]["tmuxSession"])
