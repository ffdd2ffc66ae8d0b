"""The gt dispatcher's decisions: never sling twice, gt states -> phases, safe deletion."""

from __future__ import annotations

import json

import pytest

from gastown.api.models import Phase, Polecat
from gastown.executors.base import TransientError, UserError
from gastown.executors.local.dispatchers.gt import GtDispatcher
from gastown.executors.local.tmux import town_socket_name
from tests.fixtures.sshd import make_polecat

from .scripted import Call, Outcome, ScriptedRunner

TOWN = "/srv/town"


class FakeTown:
    """gt's answers for one rig, kept in memory (unit tests only)."""

    def __init__(self) -> None:
        self.polecats: list[dict[str, object]] = []
        self.recovery: dict[str, object] = {"verdict": "SAFE_TO_NUKE", "safe_to_nuke": True}
        # The operator's own git probe of the worktree: stashes, unpushed commits, branch, porcelain.
        self.git = "ok\n0\n0\npolecat/Toast/de-abc@x\nc0ffee\n"
        self.runner = ScriptedRunner(
            {
                ("gastown-git-probe",): lambda c: Outcome(stdout=self.git),
                ("-c",): Outcome(stdout=f"ok\n{TOWN}\n\n"),
                ("polecat", "list"): lambda c: Outcome(stdout=json.dumps(self.polecats)),
                ("polecat", "status"): self.status,
                ("polecat", "check-recovery"): lambda c: Outcome(stdout=json.dumps(self.recovery)),
                ("polecat", "nuke"): self.nuke,
                ("sling",): self.sling,
                ("session", "stop"): lambda c: Outcome(stdout="✓ Session stopped."),
            }
        )

    def sling(self, call: Call) -> Outcome:
        self.polecats.append(
            {
                "rig": "demo",
                "name": "Toast",
                "state": "working",
                "issue": call.argv[2],
                "session_running": True,
            }
        )
        return Outcome(stdout="✓ Polecat Toast spawned (session start deferred)\n")

    def status(self, call: Call) -> Outcome:
        name = call.argv[3].split("/")[1]
        clone = f"{TOWN}/demo/polecats/{name}/demo"
        return Outcome(
            stdout=json.dumps({"rig": "demo", "name": name, "session_id": f"de-{name}", "clone_path": clone})
        )

    def nuke(self, call: Call) -> Outcome:
        self.polecats.clear()
        return Outcome(stdout="✓ Nuked")

    def slings(self) -> int:
        return len(self.runner.argvs("sling"))


def dispatcher(town: FakeTown) -> GtDispatcher:
    return GtDispatcher(town.runner, host="h", gt_binary="gt", poll_interval=5, list_ttl=0)


def polecat(**status_local: object) -> Polecat:
    return make_polecat(
        "p", bead="de-abc", local={"dispatcher": "gt", "townRoot": TOWN}, status_local=status_local or None
    )


async def test_first_dispatch_slings_and_reports_name_socket_and_session() -> None:
    town = FakeTown()
    obs = await dispatcher(town).dispatch(polecat())
    assert town.slings() == 1
    assert obs.phase is Phase.WORKING
    assert obs.local is not None
    assert obs.local.polecatName == "Toast"
    assert obs.local.tmuxSession == "de-Toast"
    assert obs.local.tmuxSocket == town_socket_name(TOWN, TOWN)
    assert obs.requeue_after == 5


async def test_recorded_name_means_no_sling() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Nux", "state": "working", "issue": "de-abc"})
    obs = await dispatcher(town).dispatch(polecat(polecatName="Nux"))
    assert town.slings() == 0
    assert obs.phase is Phase.WORKING


async def test_lost_status_is_recovered_from_the_bead_not_slung_again() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Nux", "state": "working", "issue": "de-abc"})
    obs = await dispatcher(town).dispatch(polecat())  # crash: the name never reached status
    assert town.slings() == 0
    assert obs.local is not None and obs.local.polecatName == "Nux"


async def test_a_dispatched_polecat_that_vanished_is_done_not_redispatched() -> None:
    town = FakeTown()
    d = dispatcher(town)
    obs = await d.dispatch(polecat(polecatName="Toast"))
    assert obs.phase is Phase.DONE and obs.reason == "PolecatCleanedUp"
    assert town.slings() == 0


async def test_a_reused_name_on_another_bead_is_not_ours() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": "working", "issue": "de-other"})
    obs = await dispatcher(town).dispatch(polecat(polecatName="Toast"))
    assert obs.phase is Phase.DONE and obs.reason == "PolecatCleanedUp"
    assert town.slings() == 0


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("working", Phase.WORKING),
        ("idle", Phase.DONE),
        ("done", Phase.DONE),
        ("stuck", Phase.STUCK),
        ("stalled", Phase.STUCK),
        ("review-needed", Phase.STUCK),
        ("zombie", Phase.FAILED),
        ("something-new", Phase.STUCK),
    ],
)
async def test_gt_states_map_to_phases(state: str, phase: Phase) -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": state, "issue": "de-abc"})
    obs = await dispatcher(town).observe(polecat(polecatName="Toast"))
    assert obs.phase is phase
    assert "demo/Toast" in obs.message
    assert (obs.requeue_after is None) == (phase in (Phase.DONE, Phase.FAILED))


async def test_release_nukes_only_when_safe() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": "done", "issue": "de-abc"})
    town.recovery = {
        "verdict": "NEEDS_RECOVERY",
        "needs_recovery": True,
        "blockers": ["git_state=has_unpushed unpushed_commits=2"],
    }
    town.git = "ok\n0\n2\npolecat/Toast/de-abc@x\nc0ffee\n"
    d = dispatcher(town)
    kept = await d.release(polecat(polecatName="Toast"), force=False)
    assert not kept.done
    assert kept.reason == "UnsafeToNuke"
    assert "has_unpushed" in kept.message and "force-delete" in kept.message
    assert (
        "2 unpushed commit(s)" in kept.message
        and "git -C /srv/town/demo/polecats/Toast/demo push" in kept.message
    )
    assert town.runner.argvs("polecat", "nuke") == []
    forced = await d.release(polecat(polecatName="Toast"), force=True)
    assert forced.done
    assert town.runner.argvs("polecat", "nuke") == [["gt", "polecat", "nuke", "demo/Toast", "--force"]]


async def test_release_of_a_safe_polecat_nukes_without_force() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": "done", "issue": "de-abc"})
    released = await dispatcher(town).release(polecat(polecatName="Toast"), force=False)
    assert released.done
    assert town.runner.argvs("polecat", "nuke") == [["gt", "polecat", "nuke", "demo/Toast"]]


async def test_release_with_nothing_dispatched_is_immediate() -> None:
    town = FakeTown()
    assert (await dispatcher(town).release(polecat(), force=False)).done
    assert town.runner.argvs("polecat", "check-recovery") == []


async def test_terminate_stops_the_session() -> None:
    town = FakeTown()
    town.polecats.append(
        {"rig": "demo", "name": "Toast", "state": "working", "issue": "de-abc", "session_running": True}
    )
    await dispatcher(town).terminate(polecat(polecatName="Toast"))
    assert town.runner.argvs("session", "stop") == [["gt", "session", "stop", "demo/Toast"]]


async def test_no_town_anywhere_is_a_user_error() -> None:
    d = GtDispatcher(FakeTown().runner, host="h")
    with pytest.raises(UserError) as info:
        await d.observe(make_polecat("p", local={"dispatcher": "gt"}))
    assert info.value.reason == "TownNotConfigured"


async def test_a_stopped_polecat_whose_work_is_pushed_goes_without_force() -> None:
    # The real gt: stopped with its bead still hooked -> NEEDS_RECOVERY "not-idle", no blockers.
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": "stalled", "issue": "de-abc"})
    town.recovery = {"verdict": "NEEDS_RECOVERY", "needs_recovery": True, "reason": "not-idle"}
    town.git = "ok\n0\n0\npolecat/Toast/de-abc@x\nc0ffee\n?? .claude/settings.json\n"  # runtime files only
    released = await dispatcher(town).release(polecat(polecatName="Toast"), force=False)
    assert released.done and released.reason == "NukedWorkPushed"
    assert "pushed" in released.message and "NEEDS_RECOVERY" in released.message
    assert town.runner.argvs("polecat", "nuke") == [["gt", "polecat", "nuke", "demo/Toast", "--force"]]


async def test_a_stopped_polecat_with_uncommitted_work_is_kept() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "Toast", "state": "stalled", "issue": "de-abc"})
    town.recovery = {"verdict": "NEEDS_RECOVERY", "needs_recovery": True, "reason": "not-idle"}
    town.git = "ok\n0\n0\npolecat/Toast/de-abc@x\nc0ffee\n?? WIP.txt\n"
    kept = await dispatcher(town).release(polecat(polecatName="Toast"), force=False)
    assert not kept.done and kept.reason == "UnsafeToNuke"
    assert "1 uncommitted file(s)" in kept.message
    assert town.runner.argvs("polecat", "nuke") == []


async def test_release_keeps_the_session_of_a_polecat_with_unpushed_work() -> None:
    town = FakeTown()
    town.polecats.append(
        {"rig": "demo", "name": "Toast", "state": "working", "issue": "de-abc", "session_running": True}
    )
    town.recovery = {"verdict": "WORKING", "reason": "not-idle"}
    town.git = "ok\n0\n1\npolecat/Toast/de-abc@x\nc0ffee\n"
    kept = await dispatcher(town).release(polecat(polecatName="Toast"), force=False)
    assert not kept.done and "WORKING" in kept.message
    assert town.runner.argvs("session", "stop") == [] and town.runner.argvs("polecat", "nuke") == []


async def test_a_resling_by_gt_is_followed_not_read_as_done() -> None:
    # The old polecat's session died; gt re-slung the bead to a new polecat, the old one is idle.
    town = FakeTown()
    town.polecats += [
        {"rig": "demo", "name": "obsidian", "state": "idle", "issue": ""},
        {"rig": "demo", "name": "quartz", "state": "working", "issue": "de-abc", "session_running": True},
    ]
    obs = await dispatcher(town).observe(polecat(polecatName="obsidian"))
    assert obs.phase is Phase.WORKING and obs.reason == "Reslung"
    assert obs.local is not None and obs.local.polecatName == "quartz"
    assert "obsidian" in obs.message and "quartz" in obs.message


async def test_an_idle_polecat_with_nobody_else_on_the_bead_is_done() -> None:
    town = FakeTown()
    town.polecats.append({"rig": "demo", "name": "obsidian", "state": "idle", "issue": ""})
    obs = await dispatcher(town).observe(polecat(polecatName="obsidian"))
    assert obs.phase is Phase.DONE and obs.reason == "Idle"


async def test_an_unanswered_sling_is_dispatching_and_the_bead_is_checked_first() -> None:
    town = FakeTown()

    def slow_sling(call: object) -> Outcome:
        raise TransientError("SSHCommandTimeout", "gt sling did not finish within 600s")

    town.runner.answers[("sling",)] = slow_sling
    d = dispatcher(town)
    obs = await d.dispatch(polecat())
    assert obs.phase is Phase.DISPATCHING and obs.reason == "SlingUnconfirmed"
    # gt had slung after all: the next dispatch finds the bead's polecat and slings nothing.
    town.polecats.append({"rig": "demo", "name": "quartz", "state": "working", "issue": "de-abc"})
    again = await d.dispatch(polecat())
    assert again.phase is Phase.WORKING and again.local is not None and again.local.polecatName == "quartz"
    assert town.slings() == 1


async def test_done_records_the_worktrees_result_once() -> None:
    town = FakeTown()
    town.polecats = [
        {"rig": "demo", "name": "Toast", "state": "idle", "issue": "de-abc", "session_running": True}
    ]
    done = await dispatcher(town).observe(polecat(polecatName="Toast"))
    assert done.phase is Phase.DONE and done.result is not None, done
    assert (done.result.branch, done.result.commit, done.result.pushed) == (
        "polecat/Toast/de-abc@x",
        "c0ffee",
        True,
    )
    probes = len(town.runner.argvs("gastown-git-probe"))
    base = polecat(polecatName="Toast")
    assert base.status is not None
    recorded = base.model_copy(update={"status": base.status.model_copy(update={"result": done.result})})
    again = await dispatcher(town).observe(recorded)
    assert again.result is None and len(town.runner.argvs("gastown-git-probe")) == probes  # no second look
