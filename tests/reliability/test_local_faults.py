"""Local mode under faults: the SSH server and the tmux server die; unpushed work is kept.

Real parts: the lab's kube-apiserver (Polecats, status, Events, finalizers), the
operator's manager with the real local executor, OpenSSH's sshd on 127.0.0.1, tmux,
git. Stand-ins: Gas Town's ``gt`` is ``tests/fakes/gt`` (the real one needs a Dolt
server, which cannot run here; the stand-in keeps gt's contract and records every
call in ``calls.jsonl``, which is how "never slung twice" is counted), and the agent
is a shell script.

The tasks are hostile strings (command substitution, quotes, a newline) aimed at a
canary directory: on the way kubectl → apiserver → operator → ssh → gt they must stay
data (checked byte for byte on gt's stdin, and the canary stays empty).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from gastown.api.models import ANNOTATION_FORCE_DELETE, Phase
from gastown.controller.manager import Manager
from gastown.controller.reconciler import ReconcilerOptions
from gastown.devcluster.lab import Lab
from gastown.devcluster.sshd import UserSshd
from gastown.executors.local.tmux import town_socket_name
from gastown.kube import KubeClient
from gastown.settings import SSHSettings
from tests.fixtures.sshd import FAKE_GT, gt_calls, kill_tmux_server, make_town, require_sshd, settings_for
from tests.support.engine import (
    engine_settings,
    get_polecat,
    list_events,
    polecats_path,
    reconciles,
    wait_phase,
)
from tests.support.waiting import wait_for, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.lab, pytest.mark.sshd]

POLL = 0.3


def hostile_task(canary: Path) -> str:
    c = str(canary)
    return f"fix it $(touch {c}/subst) `touch {c}/tick` ; touch {c}/semi ' \" \\\nline two; touch {c}/nl"


def gt_polecat(name: str, bead: str, task: str) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": "demo", "beadID": bead, "task": task, "local": {"dispatcher": "gt"}},
    }


def tmux_polecat(name: str, bead: str, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": "demo", "beadID": bead, "local": {"dispatcher": "tmux", "command": command}},
    }


def slings(town: Path) -> dict[str, int]:
    """How many times each bead was slung (from the stand-in gt's own record)."""
    counts: dict[str, int] = {}
    for call in gt_calls(town):
        if call["argv"][:1] == ["sling"]:
            counts[call["argv"][1]] = counts.get(call["argv"][1], 0) + 1
    return counts


def local_manager(
    api: client.ApiClient, namespace: str, ssh: SSHSettings, town: Path, socket: str
) -> Manager:
    settings = engine_settings(
        namespace,
        ssh=ssh,
        gt_binary=str(FAKE_GT),
        town_root=str(town),
        tmux_socket=socket,
        local_poll_interval=POLL,
    )
    return Manager(
        settings,
        api=api,
        reconciler_options=ReconcilerOptions(user_error_requeue=2.0, release_requeue=0.5),
    )


async def ready_condition(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    obj = await get_polecat(kube, namespace, name)
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def delete_everything(kube: KubeClient, namespace: str) -> None:
    """Force-delete every Polecat while the operator runs, so finalizers do not pin the namespace."""
    listed = await kube.get(polecats_path(namespace))
    for item in listed["items"]:
        name = item["metadata"]["name"]
        patch = {"metadata": {"annotations": {ANNOTATION_FORCE_DELETE: "true"}}}
        await kube.merge_patch(polecats_path(namespace, name), patch)
        await kube.delete(polecats_path(namespace, name))

    async def gone() -> bool:
        return not (await kube.get(polecats_path(namespace)))["items"]

    await wait_for(gone, what="every Polecat to be released and deleted", timeout=60)


@pytest.fixture
async def own_sshd(tmp_path: Path) -> AsyncIterator[UserSshd]:
    """An sshd of this test alone: killing it must not disturb the other tests."""
    require_sshd()
    async with UserSshd.start(tmp_path / "sshd", home=tmp_path / "home") as server:
        yield server


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.mkdir()
    return path


async def test_sshd_and_tmux_server_deaths_are_reported_and_nothing_is_reslung(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    own_sshd: UserSshd,
    tmp_path: Path,
    canary: Path,
    kube: KubeClient,
) -> None:
    beads = ["de-g0", "de-g1", "de-g2", "de-g3"]
    town = make_town(
        tmp_path / "town", {"demo": "de"}, agent='echo "agent $GT_POLECAT"; sleep 600\n', beads=beads
    )
    town_socket = town_socket_name(str(town), os.path.realpath(town))
    socket = f"gastown-rel-{uuid.uuid4().hex[:8]}"
    runs = tmp_path / "runs"
    runs.mkdir()
    task = hostile_task(canary)
    mgr = local_manager(k8s_api, namespace, settings_for(own_sshd, keepalive_interval=1.0), town, socket)
    try:
        await mgr.start()
        await mgr.wait_synced()
        for i in (1, 2):
            await kube.create(polecats_path(namespace), gt_polecat(f"gt-{i}", f"de-g{i}", task))
            command = f"echo run >> {runs}/tmux-{i}; sleep 600"
            await kube.create(polecats_path(namespace), tmux_polecat(f"tmux-{i}", f"de-t{i}", command))
        for name in ("gt-1", "gt-2", "tmux-1", "tmux-2"):
            await wait_phase(kube, namespace, name, Phase.WORKING)

        # sshd dies with every connection; a Polecat is created during the outage.
        errors = _reconcile_errors(mgr)
        await own_sshd.stop()
        await kube.create(polecats_path(namespace), gt_polecat("gt-3", "de-g3", task))
        await wait_until(lambda: _reconcile_errors(mgr) >= errors + 5, what="several polls to fail")
        await own_sshd.restart()
        await wait_phase(kube, namespace, "gt-3", Phase.WORKING, timeout=60)
        polled = reconciles(mgr, "requeue")
        await wait_until(
            lambda: reconciles(mgr, "requeue") >= polled + 10, what="more polls after the restart"
        )
        for name in ("gt-1", "gt-2", "tmux-1", "tmux-2"):  # the sessions outlived sshd
            assert (await get_polecat(kube, namespace, name))["status"]["phase"] == "Working", name
        assert slings(town) == {"de-g1": 1, "de-g2": 1, "de-g3": 1}

        # Both tmux servers die, taking every session with them.
        await kill_tmux_server(town_socket)
        await kill_tmux_server(socket)
        for name in ("gt-1", "gt-2", "gt-3"):
            stuck = await wait_phase(kube, namespace, name, Phase.STUCK, timeout=60)
            ready = next(c for c in stuck["status"]["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "Stalled", ready
            assert "session died with work assigned" in ready["message"], ready
        for name in ("tmux-1", "tmux-2"):
            failed = await wait_phase(kube, namespace, name, Phase.FAILED, timeout=60)
            ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "SessionLost", ready
            assert "ended without recording an exit status" in ready["message"], ready
        # Many more polls of the stuck ones (Failed is terminal: never looked at again).
        polled = reconciles(mgr, "requeue")
        await wait_until(lambda: reconciles(mgr, "requeue") >= polled + 15, what="many more polls")
        assert slings(town) == {"de-g1": 1, "de-g2": 1, "de-g3": 1}
        for i in (1, 2):
            assert (runs / f"tmux-{i}").read_text() == "run\n"
        reasons = {e["reason"] for e in await list_events(kube, namespace) if e.get("type") == "Warning"}
        assert {"Stalled", "SessionLost"} <= reasons, reasons

        sling_stdin = [c["stdin"] for c in gt_calls(town) if c["argv"][:1] == ["<stdin>"]]
        assert sling_stdin == [task, task, task]  # the hostile task arrived byte for byte
        assert list(canary.iterdir()) == []
    finally:
        await delete_everything(kube, namespace)
        await mgr.stop()
        await kill_tmux_server(town_socket)
        await kill_tmux_server(socket)


async def test_deleting_a_polecat_with_unpushed_work_is_blocked_until_recovered_or_forced(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    ssh_settings: SSHSettings,
    tmp_path: Path,
    canary: Path,
    kube: KubeClient,
) -> None:
    agent = (
        "printf 'work on %s\\n' \"$GT_ISSUE\" > WORK.md\n"
        "git add WORK.md && git -c user.email=a@example.invalid -c user.name=a commit -qm work\n"
        'touch "$GT_TOWN_ROOT/committed-$GT_ISSUE"\n'
        "sleep 600\n"
    )
    town = make_town(tmp_path / "town", {"demo": "de"}, agent=agent, beads=["de-keep", "de-force"])
    town_socket = town_socket_name(str(town), os.path.realpath(town))
    origin = town / "demo" / ".fake-origin.git"
    mgr = local_manager(k8s_api, namespace, ssh_settings, town, f"gastown-rel-{uuid.uuid4().hex[:8]}")
    task = hostile_task(canary)
    try:
        await mgr.start()
        await mgr.wait_synced()
        await kube.create(polecats_path(namespace), gt_polecat("keep", "de-keep", task))
        await kube.create(polecats_path(namespace), gt_polecat("force", "de-force", task))
        keep = await wait_phase(kube, namespace, "keep", Phase.WORKING)
        force = await wait_phase(kube, namespace, "force", Phase.WORKING)
        keep_name, force_name = (
            keep["status"]["local"]["polecatName"],
            force["status"]["local"]["polecatName"],
        )
        keep_tree = town / "demo" / "polecats" / keep_name / "demo"
        force_tree = town / "demo" / "polecats" / force_name / "demo"

        async def committed() -> bool:
            return (town / "committed-de-keep").exists() and (town / "committed-de-force").exists()

        await wait_for(committed, what="both agents to commit (and not push)")
        commit = _git(keep_tree, "rev-parse", "HEAD")

        await kube.delete(polecats_path(namespace, "keep"))

        async def blocked() -> dict[str, Any] | None:
            ready = await ready_condition(kube, namespace, "keep")
            return ready if ready["reason"] == "UnsafeToNuke" else None

        ready = await wait_for(blocked, what="the deletion to be blocked", timeout=30)
        assert ready["status"] == "False"
        assert "unpushed commit" in ready["message"], ready
        assert ANNOTATION_FORCE_DELETE in ready["message"], ready  # says how to override
        checks = len(_recovery_checks(town, keep_name))
        await wait_until(
            lambda: len(_recovery_checks(town, keep_name)) >= checks + 3,
            what="three more cleanup attempts",
        )
        obj = await get_polecat(kube, namespace, "keep")
        assert obj["metadata"]["deletionTimestamp"]  # still here, held by the finalizer
        assert _git(keep_tree, "rev-parse", "HEAD") == commit  # the work is untouched
        assert not _nukes(town, "keep", keep_name)

        # Recovered: the work is pushed. Deletion goes on by itself, and nothing is lost.
        _git(keep_tree, "push", "-q", "origin", "HEAD")

        async def keep_gone() -> bool:
            listed = await kube.get(polecats_path(namespace))
            return all(i["metadata"]["name"] != "keep" for i in listed["items"])

        await wait_for(keep_gone, what="the recovered Polecat to be deleted", timeout=30)
        assert not keep_tree.exists()
        assert _git(origin, "cat-file", "-t", commit) == "commit"  # the nuked worktree's work is safe
        # Its agent still runs (gt: WORKING), so gt's own nuke needs --force; the operator
        # gives it only because it saw every commit on the remote (no force annotation).
        assert _nukes(town, "keep", keep_name) == [["polecat", "nuke", f"demo/{keep_name}", "--force"]]

        # Forced: the user chose to lose the unpushed work.
        await kube.merge_patch(
            polecats_path(namespace, "force"),
            {"metadata": {"annotations": {ANNOTATION_FORCE_DELETE: "true"}}},
        )
        await kube.delete(polecats_path(namespace, "force"))

        async def force_gone() -> bool:
            listed = await kube.get(polecats_path(namespace))
            return not listed["items"]

        await wait_for(force_gone, what="the force-deleted Polecat to be deleted", timeout=30)
        assert not force_tree.exists()
        nukes = _nukes(town, "force", force_name)
        assert nukes and all("--force" in argv for argv in nukes), nukes

        async def released_event() -> dict[str, Any] | None:
            # Events are sent in the background, so the Polecat may be gone before its Event lands.
            events = [e for e in await list_events(kube, namespace, "force") if e["reason"] == "Released"]
            return events[-1] if events else None

        released = await wait_for(released_event, what="the Released event of the forced deletion")
        assert "(forced)" in released["note"], released

        assert [c["stdin"] for c in gt_calls(town) if c["argv"][:1] == ["<stdin>"]] == [task, task]
        assert list(canary.iterdir()) == []
    finally:
        await delete_everything(kube, namespace)
        await mgr.stop()
        await kill_tmux_server(town_socket)


async def test_an_ssh_outage_is_reported_in_status_while_it_lasts(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    own_sshd: UserSshd,
    tmp_path: Path,
    kube: KubeClient,
) -> None:
    """While sshd is down a running Polecat keeps its phase (its session may well still
    run) but Ready turns Unknown with what is unreachable, and a Polecat created meanwhile
    gets a status saying the same instead of none; both clear when sshd is back."""
    town = make_town(tmp_path / "town", {"demo": "de"}, agent="sleep 600\n", beads=["de-run", "de-new"])
    town_socket = town_socket_name(str(town), os.path.realpath(town))
    mgr = local_manager(
        k8s_api,
        namespace,
        settings_for(own_sshd, keepalive_interval=1.0),
        town,
        f"gastown-rel-{uuid.uuid4().hex[:8]}",
    )
    try:
        await mgr.start()
        await mgr.wait_synced()
        await kube.create(polecats_path(namespace), gt_polecat("running", "de-run", "task"))
        await wait_phase(kube, namespace, "running", Phase.WORKING)
        await own_sshd.stop()
        try:
            await kube.create(polecats_path(namespace), gt_polecat("newcomer", "de-new", "task"))
            for name in ("running", "newcomer"):

                async def reported(name: str = name) -> dict[str, Any] | None:
                    status = (await get_polecat(kube, namespace, name)).get("status") or {}
                    ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
                    return ready if ready is not None and ready["status"] == "Unknown" else None

                ready = await wait_for(reported, what=f"{name} to report the outage", timeout=30)
                assert ready["reason"] in ("SSHUnreachable", "SSHConnectionLost"), ready
                assert f"127.0.0.1:{own_sshd.port}" in ready["message"], ready
                assert "retrying" in ready["message"], ready
            running = await get_polecat(kube, namespace, "running")
            assert running["status"]["phase"] == "Working"
            newcomer = await get_polecat(kube, namespace, "newcomer")
            assert newcomer["status"]["phase"] == "Pending"
            assert "startTime" not in newcomer["status"]
        finally:
            await own_sshd.restart()
        await wait_phase(kube, namespace, "newcomer", Phase.WORKING, timeout=60)

        async def cleared() -> bool:
            ready = await ready_condition(kube, namespace, "running")
            return ready["status"] == "True"

        await wait_for(cleared, what="the running Polecat's Ready to be True again", timeout=30)
        assert slings(town) == {"de-run": 1, "de-new": 1}
        warned = {e["reason"] for e in await list_events(kube, namespace) if e.get("type") == "Warning"}
        assert warned & {"SSHUnreachable", "SSHConnectionLost"}, warned
    finally:
        await delete_everything(kube, namespace)
        await mgr.stop()
        await kill_tmux_server(town_socket)


def _reconcile_errors(mgr: Manager) -> float:
    """Reconciles that raised (an outage: the work queue retries them with backoff)."""
    return sum(
        sample.value
        for family in mgr.registry.collect()
        for sample in family.samples
        if sample.name == "gastown_reconcile_errors_total"
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _recovery_checks(town: Path, gt_name: str) -> list[list[str]]:
    """Every ``gt polecat check-recovery`` call about ``demo/<gt_name>`` (one per cleanup attempt)."""
    return [
        c["argv"]
        for c in gt_calls(town)
        if c["argv"][:2] == ["polecat", "check-recovery"] and f"demo/{gt_name}" in c["argv"]
    ]


def _nukes(town: Path, _polecat: str, gt_name: str) -> list[list[str]]:
    """Every ``gt polecat nuke`` call that targeted ``demo/<gt_name>``."""
    return [
        c["argv"]
        for c in gt_calls(town)
        if c["argv"][:2] == ["polecat", "nuke"] and f"demo/{gt_name}" in c["argv"]
    ]


async def test_a_host_gone_past_the_timeout_is_stuck_and_force_delete_works_without_it(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    own_sshd: UserSshd,
    tmp_path: Path,
    kube: KubeClient,
) -> None:
    """sshd stopped (a real outage) for longer than GASTOWN_HOST_UNREACHABLE_TIMEOUT (3 s
    here): the Polecat reads Stuck with Ready=False HostUnreachable naming the host and what
    to check; sshd back, it reads Working again. With sshd gone again, a force-delete
    completes (the finalizer goes) with a Warning saying what may be left on the host."""
    socket = f"gastown-rel-{uuid.uuid4().hex[:8]}"
    settings = engine_settings(
        namespace,
        ssh=settings_for(own_sshd, keepalive_interval=1.0),
        tmux_socket=socket,
        local_poll_interval=POLL,
        host_unreachable_timeout=3.0,
    )
    mgr = Manager(
        settings,
        api=k8s_api,
        reconciler_options=ReconcilerOptions(user_error_requeue=2.0, release_requeue=0.5),
    )
    address = f"127.0.0.1:{own_sshd.port}"
    try:
        await mgr.start()
        await mgr.wait_synced()
        await kube.create(polecats_path(namespace), tmux_polecat("gone", "de-gone", "sleep 600"))
        await wait_phase(kube, namespace, "gone", Phase.WORKING)
        await own_sshd.stop()
        try:
            stuck = await wait_phase(kube, namespace, "gone", Phase.STUCK, timeout=60)
            ready = next(c for c in stuck["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "HostUnreachable"), ready
            assert address in ready["message"] and "sshd" in ready["message"], ready
            assert f"{ANNOTATION_FORCE_DELETE}=true" in ready["message"], ready
        finally:
            await own_sshd.restart()
        await wait_phase(kube, namespace, "gone", Phase.WORKING, timeout=60)
        assert (await ready_condition(kube, namespace, "gone"))["status"] == "True"

        await own_sshd.stop()
        patch = {"metadata": {"annotations": {ANNOTATION_FORCE_DELETE: "true"}}}
        await kube.merge_patch(polecats_path(namespace, "gone"), patch)
        await kube.delete(polecats_path(namespace, "gone"))

        async def gone() -> bool:
            return not (await kube.get(polecats_path(namespace)))["items"]

        await wait_for(gone, what="the force-deleted Polecat to go without its host", timeout=60)
        warned = [
            e for e in await list_events(kube, namespace, "gone") if e["reason"] == "ReleasedWithoutHost"
        ]
        session = stuck["status"]["local"]["tmuxSession"]
        assert warned and warned[0]["type"] == "Warning", warned
        assert session in warned[0]["note"] and address in warned[0]["note"], warned
        assert "~/.gastown/sessions/" in warned[0]["note"], warned
    finally:
        await own_sshd.restart()
        await delete_everything(kube, namespace)
        await mgr.stop()
        await kill_tmux_server(socket)


async def test_a_local_run_past_its_deadline_is_stopped_failed_and_keeps_its_work(
    *,
    lab: Lab,
    k8s_api: client.ApiClient,
    namespace: str,
    own_sshd: UserSshd,
    kube: KubeClient,
) -> None:
    """spec.local.activeDeadlineSeconds: past it the session is stopped (like Terminate),
    the Polecat is Failed/DeadlineExceeded with status.result, and the work directory stays."""
    socket = f"gastown-rel-{uuid.uuid4().hex[:8]}"
    settings = engine_settings(
        namespace,
        ssh=settings_for(own_sshd, keepalive_interval=1.0),
        tmux_socket=socket,
        local_poll_interval=POLL,
    )
    mgr = Manager(settings, api=k8s_api, reconciler_options=ReconcilerOptions(user_error_requeue=2.0))
    body = tmux_polecat("late", "de-late", "echo started > out.txt; sleep 600")
    body["spec"]["local"]["activeDeadlineSeconds"] = 2
    try:
        await mgr.start()
        await mgr.wait_synced()
        await kube.create(polecats_path(namespace), body)
        failed = await wait_phase(kube, namespace, "late", Phase.FAILED, timeout=60)
        ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "DeadlineExceeded" and "(2s)" in ready["message"], ready
        assert "exited" not in failed["status"]["result"]["message"], failed["status"]["result"]
        session = failed["status"]["local"]["tmuxSession"]
        proc = await asyncio.create_subprocess_exec("tmux", "-L", socket, "has-session", "-t", f"={session}")
        assert await proc.wait() != 0  # stopped
        assert own_sshd.home is not None
        work = own_sshd.home / ".gastown" / "sessions" / session / "work" / "out.txt"
        assert work.read_text() == "started\n"  # kept
    finally:
        await delete_everything(kube, namespace)
        await mgr.stop()
        await kill_tmux_server(socket)
