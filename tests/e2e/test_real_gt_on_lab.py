"""Local mode through the real operator on the REAL Gas Town (gt v1.2.1, bd, Dolt), on the lab.

Real: the operator's Manager (informers, reconciler, status, finalizer, Events, the
``LocalExecutor`` and its asyncssh pool), the lab's kube-apiserver and etcd, OpenSSH's
sshd on 127.0.0.1, tmux, git, and Gas Town itself: gt v1.2.1 slings beads from a
real beads database served by a real Dolt SQL server (``tests/fixtures/real_gt.py``).

Not real: the agent is a shell script (``real_gt.AGENT``) that shows a ready prompt
and acts when the test writes a control file; and ONE SHIM, named: bd runs without
``BEADS_DOLT_DATA_DIR`` (a wrapper, see ``gastown/devcluster/gastown_tools``), because
bd v1.0.0 otherwise reads the town's database instead of the rig's.

One story per test, each step waiting for something positive: dispatch, an sshd
outage, an operator restart (nothing slung twice), push + ``gt done`` -> Done, a
Polecat with pushed work deleted and released WITHOUT the force annotation, a
Polecat with unpushed work whose deletion is blocked (condition + Warning Event)
until its work is pushed, the tmux server killed -> Stuck.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import ANNOTATION_FORCE_DELETE, API_VERSION, FINALIZER, KIND, Phase
from gastown.controller.manager import Manager
from gastown.devcluster.lab import Lab
from gastown.devcluster.sshd import UserSshd
from gastown.kube import KubeClient
from tests.fixtures.real_gt import RIG, RealTown
from tests.fixtures.sshd import require_sshd, settings_for
from tests.support.crd import install_crd
from tests.support.engine import engine_settings, polecats_path
from tests.support.operator import conditions, running_operator, wait_events, wait_gone, wait_status
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.sshd]

POLL = 0.3


@pytest.fixture
async def own_sshd(tmp_path: Path) -> AsyncIterator[UserSshd]:
    """An sshd of this test alone: stopping it must not disturb other tests."""
    require_sshd()
    async with UserSshd.start(tmp_path / "sshd", home=tmp_path / "home") as server:
        yield server


def phase_is(phase: Phase) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase.value


def ready_reason(reason: str) -> Any:
    return lambda obj: conditions(obj).get("Ready", {}).get("reason") == reason


async def gt_json(town: RealTown, *args: str) -> Any:
    res = await asyncio.to_thread(town.gt, *args)
    out = res.stdout
    return json.loads(out[min(i for i in (out.find("["), out.find("{")) if i >= 0) :])


async def holders(town: RealTown, bead: str) -> list[str]:
    """The polecats gt lists with ``bead`` hooked (exactly one, if slung once)."""
    items = await gt_json(town, "polecat", "list", RIG, "--json")
    return [i["name"] for i in items if i.get("issue") == bead]


async def worktree_of(town: RealTown, name: str) -> Path:
    status = await gt_json(town, "polecat", "status", f"{RIG}/{name}", "--json")
    return Path(status["clone_path"])


async def git(cwd: Path, town: RealTown, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=town.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"git {args}: {err.decode()}"
    return out.decode().strip()


def reconcile_errors(mgr: Manager) -> float:
    return sum(
        sample.value
        for family in mgr.registry.collect()
        for sample in family.samples
        if sample.name == "gastown_reconcile_errors_total"
    )


async def test_real_gt_through_the_operator(
    *, lab: Lab, k8s_api: client.ApiClient, namespace: str, own_sshd: UserSshd, real_town: RealTown
) -> None:
    await install_crd(lab)
    kube = KubeClient(k8s_api)
    town = real_town
    settings = engine_settings(
        namespace,
        ssh=settings_for(own_sshd, keepalive_interval=1.0),
        gt_binary=str(town.gt_wrapper),
        town_root=str(town.root),
        local_poll_interval=POLL,
    )
    pushed_bead = await asyncio.to_thread(town.create_bead, "e2e: work that gets pushed")
    kept_bead = await asyncio.to_thread(town.create_bead, "e2e: work that stays unpushed")

    def polecat(name: str, bead: str) -> dict[str, Any]:
        spec = {"rig": RIG, "beadID": bead, "task": f"do {bead}", "local": {"dispatcher": "gt"}}
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}

    async with running_operator(k8s_api, settings) as mgr:
        await kube.create(polecats_path(namespace), polecat("pushed", pushed_bead))
        await kube.create(polecats_path(namespace), polecat("kept", kept_bead))
        first = {
            name: (await wait_status(kube, namespace, name, "Working", phase_is(Phase.WORKING), timeout=240))
            for name in ("pushed", "kept")
        }
        names = {n: o["status"]["local"]["polecatName"] for n, o in first.items()}
        assert await holders(town, pushed_bead) == [names["pushed"]]
        assert await holders(town, kept_bead) == [names["kept"]]
        assert FINALIZER in first["pushed"]["metadata"]["finalizers"]
        assert first["pushed"]["status"]["local"]["tmuxSocket"] == town.socket

        # sshd goes away with every connection, then comes back: the work outlives it.
        errors = reconcile_errors(mgr)
        await own_sshd.stop()

        async def felt() -> bool:
            return reconcile_errors(mgr) > errors

        await wait_for(felt, what="the operator to feel the sshd outage", timeout=60)
        await own_sshd.restart()
        for name in ("pushed", "kept"):
            await wait_status(kube, namespace, name, "Working", phase_is(Phase.WORKING), timeout=60)
        assert await holders(town, pushed_bead) == [names["pushed"]], "slung again after the outage"

    # The operator restarts (a new Manager, nothing remembered but the Polecats' status).
    async with running_operator(k8s_api, settings):
        for name in ("pushed", "kept"):
            again = await wait_status(kube, namespace, name, "Working", phase_is(Phase.WORKING), timeout=60)
            assert again["status"]["local"]["polecatName"] == names[name]
        assert await holders(town, pushed_bead) == [names["pushed"]], "slung twice"
        assert await holders(town, kept_bead) == [names["kept"]], "slung twice"

        # The agent pushes and runs gt done: Done. Deleted WITHOUT force: released.
        pushed_tree = await worktree_of(town, names["pushed"])
        town.act(pushed_bead, "push")
        await wait_status(kube, namespace, "pushed", "Done", phase_is(Phase.DONE), timeout=120)
        await kube.delete(polecats_path(namespace, "pushed"))
        await wait_gone(kube, polecats_path(namespace, "pushed"), timeout=60)
        released = (await wait_events(kube, namespace, "pushed", {"Released"}))["Released"]["note"]
        assert "(forced)" not in released, released  # and no force annotation was ever set
        assert not pushed_tree.exists()

        # Unpushed work, then the town's tmux server dies: Stuck, and deletion is blocked.
        kept_tree = await worktree_of(town, names["kept"])
        town.act(kept_bead, "commit")

        async def committed() -> bool:
            return (kept_tree / "WORK.md").exists() and "unpushed" in await git(kept_tree, town, "log", "-1")

        await wait_for(committed, what="the agent to commit (and not push)", timeout=60)
        town.kill_session_server()
        stuck = await wait_status(kube, namespace, "kept", "Stuck", phase_is(Phase.STUCK), timeout=60)
        assert conditions(stuck)["Ready"]["reason"] == "Stalled"

        await kube.delete(polecats_path(namespace, "kept"))
        blocked = await wait_status(kube, namespace, "kept", "deletion blocked", ready_reason("UnsafeToNuke"))
        ready = conditions(blocked)["Ready"]
        assert "1 unpushed commit(s)" in ready["message"] and ANNOTATION_FORCE_DELETE in ready["message"]
        events = await wait_events(kube, namespace, "kept", {"UnsafeToNuke"})
        assert events["UnsafeToNuke"]["type"] == "Warning"
        assert kept_tree.is_dir() and blocked["metadata"].get("deletionTimestamp")

        # Pushed by hand (no annotation): deletion continues by itself and nothing is lost.
        commit = await git(kept_tree, town, "rev-parse", "HEAD")
        await git(kept_tree, town, "push", "-q", "origin", "HEAD")
        await wait_gone(kube, polecats_path(namespace, "kept"), timeout=60)
        assert not kept_tree.exists()
        assert await git(town.origin, town, "cat-file", "-t", commit) == "commit"
