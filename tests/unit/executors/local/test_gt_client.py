"""The gt client: the real CLI's output formats and errors, and how calls are shared."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from gastown.executors.base import TransientError, UserError
from gastown.executors.local.gt import (
    GtClient,
    GtPolecat,
    GtPolecatStatus,
    GtRecovery,
    is_runtime_path,
    parse_gt_time,
    parse_json,
    parse_spawned_name,
)

from .scripted import Outcome, ScriptedRunner

TOWN = "/srv/town"
PROBE_OK = Outcome(stdout=f"ok\n{TOWN}\n\n")

# Shaped like the real `gt polecat list --json` (PolecatListItem, omitempty honoured).
LIST_JSON = json.dumps(
    [
        {
            "rig": "demo",
            "name": "Toast",
            "state": "working",
            "issue": "de-abc",
            "cleanup_status": "clean",
            "branch": "polecat/Toast-1",
            "reusable": False,
            "safe_to_nuke": True,
            "needs_recovery": False,
            "needs_mq_submit": False,
            "counts_toward_capacity": True,
            "session_running": True,
        },
        {
            "rig": "demo",
            "name": "Ghost",
            "state": "zombie",
            "reusable": False,
            "safe_to_nuke": False,
            "needs_recovery": False,
            "needs_mq_submit": False,
            "counts_toward_capacity": False,
            "session_running": True,
            "zombie": True,
            "session_name": "de-Ghost",
        },
    ],
    indent=2,
)


def client(runner: ScriptedRunner, **kw: object) -> GtClient:
    runner.answers.setdefault(("-c",), PROBE_OK)
    return GtClient(runner, town_root=TOWN, gt_binary="gt", **kw)  # type: ignore[arg-type]


def test_spawned_name_is_parsed_from_real_looking_output() -> None:
    out = (
        "Target is rig 'demo', spawning fresh polecat...\n"
        "\x1b[1m✓\x1b[0m Polecat Furiosa spawned (session start deferred)\n"
    )
    assert parse_spawned_name(out) == "Furiosa"
    assert parse_spawned_name("✓ Polecat Nux reused (idle → working, session start deferred)") == "Nux"
    assert parse_spawned_name("nothing here") is None


def test_json_is_found_after_warning_lines() -> None:
    assert parse_json('Warning: rigs.json missing\n[{"name": "a"}]\n') == [{"name": "a"}]
    with pytest.raises(TransientError):
        parse_json("no json at all")


def test_list_items_keep_gt_fields() -> None:
    items = [GtPolecat.from_json(o) for o in json.loads(LIST_JSON)]
    assert items[0] == GtPolecat(
        rig="demo",
        name="Toast",
        state="working",
        issue="de-abc",
        session_running=True,
        cleanup_status="clean",
    )
    assert items[1].zombie and items[1].session_name == "de-Ghost" and items[1].issue == ""


def test_status_times_use_gt_layout() -> None:
    status = GtPolecatStatus.from_json(
        {
            "rig": "demo",
            "name": "Toast",
            "state": "working",
            "clone_path": "/x",
            "branch": "b",
            "session_running": True,
            "session_id": "de-Toast",
            "created_at": "2026-01-02 15:04:05",
            "last_activity": "garbage",
        }
    )
    assert status.created_at == datetime(2026, 1, 2, 15, 4, 5, tzinfo=UTC)
    assert status.last_activity is None
    assert status.session_id == "de-Toast"
    assert parse_gt_time(None) is None


def test_recovery_is_safe_only_on_safe_to_nuke() -> None:
    assert GtRecovery.from_json({"verdict": "SAFE_TO_NUKE", "safe_to_nuke": True}).safe
    for verdict in ("NEEDS_RECOVERY", "PENDING_MR", "NEEDS_MQ_SUBMIT", ""):
        assert not GtRecovery.from_json({"verdict": verdict, "needs_recovery": True}).safe
    rec = GtRecovery.from_json({"verdict": "NEEDS_RECOVERY", "blockers": ["git_state=has_unpushed"]})
    assert rec.blockers == ("git_state=has_unpushed",)


async def test_concurrent_polls_of_one_rig_share_one_list_call() -> None:
    runner = ScriptedRunner({("polecat", "list"): Outcome(stdout=LIST_JSON)}, delay=0.01)
    gt = client(runner, list_ttl=60)
    results = await asyncio.gather(*(gt.list_polecats("demo") for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert gt.list_calls == 1
    await gt.list_polecats("demo")
    assert gt.list_calls == 1  # cached within the ttl
    await gt.list_polecats("demo", fresh=True)
    assert gt.list_calls == 2
    await gt.list_polecats("other")
    assert gt.list_calls == 3  # one call per rig


async def test_list_failure_is_not_cached() -> None:
    outcomes = iter([Outcome(exit_status=1, stderr="boom"), Outcome(stdout="[]")])
    runner = ScriptedRunner({("polecat", "list"): lambda call: next(outcomes)})
    gt = client(runner, list_ttl=60)
    with pytest.raises(TransientError):
        await gt.list_polecats("demo")
    assert await gt.list_polecats("demo") == []


async def test_gt_runs_in_the_town_with_gt_town_root() -> None:
    runner = ScriptedRunner({("polecat", "list"): Outcome(stdout="[]")})
    await client(runner).list_polecats("demo")
    call = runner.calls[-1]
    assert call.argv == ["gt", "polecat", "list", "demo", "--json"]
    assert call.cwd == TOWN
    assert call.env == {"GT_TOWN_ROOT": TOWN}
    assert call.idempotent


async def test_sling_sends_the_task_on_stdin_and_is_never_retried() -> None:
    runner = ScriptedRunner(
        {("sling",): Outcome(stdout="✓ Polecat Toast spawned (session start deferred)\n")}
    )
    slung = await client(runner).sling("de-abc", "demo", task="fix it; $(rm -rf /)")
    assert slung.name == "Toast" and not slung.unknown
    call = runner.calls[-1]
    assert call.argv == ["gt", "sling", "de-abc", "demo", "--stdin"]
    assert call.input == "fix it; $(rm -rf /)"
    assert not call.idempotent


async def test_sling_without_task_reads_no_stdin() -> None:
    runner = ScriptedRunner({("sling",): Outcome(stdout="✓ Polecat Toast spawned\n")})
    await client(runner).sling("de-abc", "demo", task=None)
    assert runner.calls[-1].argv == ["gt", "sling", "de-abc", "demo"]
    assert runner.calls[-1].input is None


@pytest.mark.parametrize(
    ("probe", "reason"),
    [(Outcome(stdout="gt-missing\n"), "GtNotInstalled"), (Outcome(stdout="town-missing\n"), "TownNotFound")],
)
async def test_probe_failures_are_user_errors_that_say_what_to_fix(probe: Outcome, reason: str) -> None:
    runner = ScriptedRunner({("-c",): probe})
    with pytest.raises(UserError) as info:
        await client(runner).list_polecats("demo")
    assert info.value.reason == reason
    assert TOWN in info.value.message or "GASTOWN_GT_BINARY" in info.value.message


async def test_probe_passes_town_and_binary_as_arguments_not_code() -> None:
    runner = ScriptedRunner()
    gt = client(runner)
    info = await gt.town()
    argv = runner.calls[0].argv
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == [TOWN, "gt"]
    assert TOWN not in argv[2]
    assert info.canonical_root == TOWN and info.gt_tmux_socket is None


async def test_probe_reports_gt_tmux_socket() -> None:
    runner = ScriptedRunner({("-c",): Outcome(stdout=f"ok\n{TOWN}\nmysock\n")})
    assert (await client(runner).town()).gt_tmux_socket == "mysock"


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("Error: rig 'demo' not found\n", "RigNotFound"),
        ("Error: finding town root: not in a Gas Town workspace\n", "TownNotFound"),
        ("sh: 1: gt: command not found\n", "GtNotInstalled"),
    ],
)
async def test_gt_errors_map_to_user_errors(stderr: str, reason: str) -> None:
    runner = ScriptedRunner({("polecat",): Outcome(exit_status=1, stderr=stderr)})
    with pytest.raises(UserError) as info:
        await client(runner).list_polecats("demo")
    assert info.value.reason == reason


async def test_other_sling_failures_are_transient() -> None:
    runner = ScriptedRunner({("sling",): Outcome(exit_status=1, stderr="Error: dolt server busy")})
    with pytest.raises(TransientError) as info:
        await client(runner).sling("de-abc", "demo", task=None)
    assert "dolt server busy" in info.value.message


async def test_missing_polecat_is_none_not_an_error() -> None:
    missing = Outcome(exit_status=1, stderr="Error: polecat 'Toast' not found in rig 'demo'")
    runner = ScriptedRunner({("polecat", "status"): missing, ("polecat", "check-recovery"): missing})
    gt = client(runner)
    assert await gt.status("demo", "Toast") is None
    assert await gt.check_recovery("demo", "Toast") is None


async def test_find_by_issue_ignores_zombies() -> None:
    runner = ScriptedRunner({("polecat", "list"): Outcome(stdout=LIST_JSON)})
    gt = client(runner)
    found = await gt.find_by_issue("demo", "de-abc")
    assert found is not None and found.name == "Toast"
    assert await gt.find_by_issue("demo", "de-zzz") is None


async def test_nuke_passes_force_only_when_asked() -> None:
    runner = ScriptedRunner({("polecat", "nuke"): Outcome(stdout="ok")})
    gt = client(runner)
    await gt.nuke("demo", "Toast", force=False)
    await gt.nuke("demo", "Toast", force=True)
    assert runner.argvs("polecat", "nuke") == [
        ["gt", "polecat", "nuke", "demo/Toast"],
        ["gt", "polecat", "nuke", "demo/Toast", "--force"],
    ]


# The real gt v1.2.1's sling failures (cobra prints usage text after the error line).
USAGE = "Usage:\n  gt sling <bead-or-formula> [target] [flags]\n\nFlags:\n" + "  --x  y\n" * 40


@pytest.mark.parametrize(
    ("stderr", "reason", "hint"),
    [
        ("Error: checking bead status: bead 'de-zzz' not found\n" + USAGE, "BeadNotFound", "bd create"),
        ("Error: bead de-zzz is closed (work already completed)\n" + USAGE, "BeadClosed", "bd reopen de-zzz"),
    ],
)
async def test_beads_gt_cannot_sling_are_user_errors_that_say_what_to_do(
    stderr: str, reason: str, hint: str
) -> None:
    runner = ScriptedRunner({("sling",): Outcome(exit_status=1, stderr=stderr)})
    with pytest.raises(UserError) as info:
        await client(runner).sling("de-zzz", "demo", task=None)
    assert info.value.reason == reason
    assert hint in info.value.message and f"{TOWN}/demo" in info.value.message


@pytest.mark.parametrize(
    "fault", [TransientError("SSHCommandTimeout", "t"), TransientError("SSHConnectionLost", "d")]
)
async def test_a_sling_that_did_not_answer_is_unknown_not_failed(fault: TransientError) -> None:
    async def slow(argv: object, **kw: object) -> Outcome:
        if list(argv)[1:2] == ["sling"]:  # type: ignore[call-overload]
            raise fault
        return Outcome(stdout=f"ok\n{TOWN}\n\n")

    gt = GtClient(slow, town_root=TOWN)  # type: ignore[arg-type]
    slung = await gt.sling("de-abc", "demo", task=None)
    assert slung.unknown and slung.name is None


async def test_sling_time_limit_fits_gts_prompt_wait() -> None:
    seen: list[float | None] = []

    async def run(argv: list[str], *, time_limit: float | None = None, **kw: object) -> Outcome:
        seen.append(time_limit)
        return Outcome(stdout=f"ok\n{TOWN}\n\n" if argv[0] == "sh" else "✓ Polecat quartz spawned\n")

    await GtClient(run, town_root=TOWN).sling("de-abc", "demo", task=None)  # type: ignore[arg-type]
    assert seen[-1] is not None and seen[-1] > 3 * 180  # gt waits up to 180 s per prompt wait


async def test_an_already_hooked_bead_names_its_polecat() -> None:
    out = "○ Bead de-abc is already hooked to demo/polecats/quartz, no-op\n"
    runner = ScriptedRunner({("sling",): Outcome(stdout=out)})
    slung = await client(runner).sling("de-abc", "demo", task=None)
    assert slung.name == "quartz" and slung.already_hooked


def test_the_five_recovery_verdicts() -> None:
    working = GtRecovery.from_json({"verdict": "WORKING", "reason": "not-idle"})
    assert working.working and working.known and not working.safe
    for verdict in ("SAFE_TO_NUKE", "PENDING_MR", "NEEDS_RECOVERY", "NEEDS_MQ_SUBMIT"):
        assert GtRecovery.from_json({"verdict": verdict}).known
    assert not GtRecovery.from_json({"verdict": "SOMETHING_NEW"}).known


def test_gt_runtime_paths_are_not_work() -> None:
    for path in (".beads/x.jsonl", ".claude/settings.json", "CLAUDE.local.md", "a/__pycache__/m.pyc", "x.db"):
        assert is_runtime_path(path), path
    for path in ("WORK.md", "src/app.py", "notes/db.txt"):
        assert not is_runtime_path(path), path


async def test_git_facts_count_what_nuking_would_lose() -> None:
    probe = "ok\n1\n2\npolecat/quartz/de-abc@x\nc0ffee\n?? WIP.txt\n?? .claude/settings.json\n M src/a.py\n"
    runner = ScriptedRunner({("-c",): Outcome(stdout=probe)})
    facts = await client(runner).git_facts("/srv/town/demo/polecats/quartz/demo")
    assert facts is not None
    assert (facts.uncommitted, facts.stashes, facts.unpushed, facts.commit) == (2, 1, 2, "c0ffee")
    assert not facts.all_pushed
    assert runner.calls[-1].argv[-1] == "/srv/town/demo/polecats/quartz/demo"  # an argument, not code


# gt v1.2.1's sling failures the user must fix: texts from the real binary (first four)
# and from its source (internal/cmd/sling.go, polecat_spawn.go).
@pytest.mark.parametrize(
    ("stderr", "reason", "hints"),
    [
        (
            "Error: resolving target: getting pane for demo: exit status 1\n",
            "RigNotFound",
            ["gt rig add", "spec.rig"],
        ),
        (
            "Error: starting polecat session: starting session: creating session: command binary not found: "
            "/nonexistent/agent\n",
            "AgentMisconfigured",
            ["/nonexistent/agent", f"{TOWN}/settings/config.json"],
        ),
        (
            "Error: starting polecat session: starting session: resolving agent config for nosuch: agent "
            "'nosuch' not found\n",
            "AgentMisconfigured",
            ["'nosuch'", "gt config default-agent"],
        ),
        (
            'Error: bead de-zzz (prefix "de") is not in rig "demo" — prefix not in routes\nCreate the task '
            "from the rig directory: cd demo && bd create --title=...\n",
            "BeadNotInRig",
            ["spec.rig", f"cd {TOWN}/demo && bd create"],
        ),
        (
            'Error: cross-rig mismatch: bead de-zzz (prefix "de") belongs to rig "other", '
            'but target is rig "demo"\n',
            "BeadNotInRig",
            ["rig 'other'", "spec.rig"],
        ),
        (
            "Error: bead de-zzz is already hooked to other/crew/mel\nUse --force to re-sling\n",
            "BeadTaken",
            ["other/crew/mel", "spec.beadID"],
        ),
        (
            'Error: refusing to sling deferred bead de-zzz: "later"\n'
            "Deferred work should not consume polecat slots.",
            "BeadDeferred",
            ["bd update de-zzz --status open"],
        ),
        (
            "Error: respawn limit reached for de-zzz (3 attempts). This bead keeps failing — "
            "investigate before re-dispatching.\n",
            "RespawnLimitReached",
            ["3 times", "gt sling respawn-reset de-zzz"],
        ),
        (
            f"Error: creating polecat: mkdir {TOWN}/demo/polecats/rust: permission denied\n",
            "PermissionDenied",
            ["GASTOWN_SSH_USER", TOWN],
        ),
    ],
)
async def test_sling_failures_the_user_must_fix_are_user_errors(
    stderr: str, reason: str, hints: list[str]
) -> None:
    runner = ScriptedRunner({("sling",): Outcome(exit_status=1, stderr=stderr + USAGE)})
    with pytest.raises(UserError) as info:
        await client(runner).sling("de-zzz", "demo", task=None)
    assert info.value.reason == reason, info.value.message
    for hint in hints:
        assert hint in info.value.message, info.value.message
    assert "Usage:" not in info.value.message


@pytest.mark.parametrize(
    "stderr",
    [
        "Error: bead de-zzz is already being slung; retry after the current assignment completes\n",
        "Error: timed out acquiring assignee sling lock for demo/polecats/rust after 30s "
        "(another sling may be stuck)\n",
        "Error: starting polecat session: getting pane for de-rust "
        "(session likely died during startup): exit 1\n",
    ],
)
async def test_sling_faults_that_may_pass_stay_transient(stderr: str) -> None:
    runner = ScriptedRunner({("sling",): Outcome(exit_status=1, stderr=stderr)})
    with pytest.raises(TransientError):
        await client(runner).sling("de-zzz", "demo", task=None)
