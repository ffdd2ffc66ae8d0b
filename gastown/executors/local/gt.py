"""A client for Gas Town's ``gt`` CLI on the target host.

It speaks the contract of the real gt (github.com/steveyegge/gastown,
``internal/cmd/polecat.go``, ``sling.go``, ``session.go``; checked against v1.2.1):

* ``gt sling <bead> <rig> [--stdin]`` spawns a polecat and prints
  ``✓ Polecat <Name> spawned ...`` (or ``Polecat <Name> reused ...``); the task text
  goes on stdin with ``--stdin`` (gt stores it as the bead's ``--args``).
* ``gt polecat list <rig> --json``: a JSON array of PolecatListItem (snake_case:
  rig, name, state, issue, session_running, zombie, session_name, ...).
* ``gt polecat status <rig>/<name> --json``: PolecatStatus (state, issue,
  session_running, session_id, created_at/last_activity as ``2006-01-02 15:04:05``).
* ``gt polecat check-recovery <rig>/<name> --json``: RecoveryStatus with a
  ``verdict`` of WORKING | SAFE_TO_NUKE | PENDING_MR | NEEDS_RECOVERY | NEEDS_MQ_SUBMIT
  (``internal/polecat/workstate.go``). Only an *idle* polecat is judged on its work:
  any other state answers WORKING (state working) or NEEDS_RECOVERY with reason
  ``not-idle`` and no blockers, so a stopped polecat whose bead is still hooked is
  NEEDS_RECOVERY even when every commit is pushed.
* ``gt polecat nuke <rig>/<name> [--force]``: without ``--force`` it refuses anything
  but SAFE_TO_NUKE (``blocked: ... has work on hook``); ``gt session stop <rig>/<name>``.
* ``gt sling`` refuses a bead missing from the rig's beads database (``bead '<id>' not
  found``) or closed (``bead <id> is closed``): user errors. It blocks until the agent
  shows its prompt (up to 180 s per wait, several waits; 436-452 s seen with an agent
  that never shows one), so its time limit is :data:`SLING_TIMEOUT`, and a timeout or a
  dropped connection means "unknown", never "failed": the dispatcher looks for the
  bead's polecat before anything else. Slinging a bead hooked to a live polecat is a
  no-op (``already hooked to <rig>/polecats/<name>``, exit 0). Its other failures that
  retrying cannot fix are user errors too (:func:`sling_user_error`): an unknown rig
  (``resolving target: getting pane for <rig>``), an agent gt cannot start (``command
  binary not found``, ``agent '<x>' not found``; gt rolls the spawn back), a bead of
  another rig, assigned elsewhere or deferred, the respawn breaker, ``permission denied``.

gt finds its town by walking up from the working directory to ``mayor/town.json``,
falling back to ``GT_TOWN_ROOT``; every call therefore runs in the town root with
``GT_TOWN_ROOT`` set. gt's states are lowercase: working, idle, done, stuck,
stalled, zombie (and review-needed).

``list_polecats`` is the polling path: one call per rig, cached for a short time and shared
by every Polecat of that rig (concurrent callers wait for the same call).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gastown.api.models import ResultStatus
from gastown.executors.base import TransientError, UserError
from gastown.executors.local.runner import CommandOutcome, Runner

GT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The five check-recovery verdicts of gt v1.2.1 (internal/polecat/workstate.go).
WORKING = "WORKING"
SAFE_TO_NUKE = "SAFE_TO_NUKE"
PENDING_MR = "PENDING_MR"
NEEDS_RECOVERY = "NEEDS_RECOVERY"
NEEDS_MQ_SUBMIT = "NEEDS_MQ_SUBMIT"
VERDICTS = (WORKING, SAFE_TO_NUKE, PENDING_MR, NEEDS_RECOVERY, NEEDS_MQ_SUBMIT)
# gt sling waits for the agent's prompt (180 s per wait, more than one wait per sling);
# past this the outcome is unknown and the dispatcher checks gt rather than assume.
SLING_TIMEOUT = 600.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SPAWNED = re.compile(r"Polecat (\S+) (?:spawned|reused)\b")
_ALREADY_HOOKED = re.compile(r"already hooked to (\S+?)/polecats/([^\s,]+)")
_BEAD_NOT_FOUND = re.compile(r"bead '([^']*)' not found")
_BEAD_CLOSED = re.compile(r"bead (\S+) is (closed|tombstone)")
# Other sling failures of gt v1.2.1 the user must fix (checked against its source and the
# real binary): an unknown rig (gt takes it for an agent's session name), the agent's
# configuration, the bead's place or state, the respawn breaker, file or git permissions.
_SLING_UNKNOWN_TARGET = re.compile(r"resolving target: getting pane for (\S+?):")
_AGENT_BINARY_MISSING = re.compile(r"command binary not found: (\S+)")
_AGENT_UNKNOWN = re.compile(r"agent '([^']*)' not found")
_BEAD_OTHER_RIG = re.compile(
    r"cross-rig mismatch: bead \S+ \(prefix \"[^\"]*\"\) belongs to rig \"([^\"]*)\""
)
_BEAD_NO_ROUTE = re.compile(r"is not in rig \"[^\"]*\" — prefix not in routes")
_BEAD_ASSIGNED = re.compile(r"bead \S+ is already (\S+) to (\S+)")
_BEAD_DEFERRED = re.compile(r"refusing to sling deferred bead")
_RESPAWN_LIMIT = re.compile(r"respawn limit reached for \S+ \((\d+) attempts\)")
_PERMISSION_DENIED = re.compile(r"permission denied", re.IGNORECASE)
# Git facts of a polecat's worktree, in one round trip: uncommitted paths, stashes,
# commits on HEAD that no remote-tracking branch has, and the branch.
_GIT_PROBE = r"""
cd -- "$1" 2>/dev/null || { echo missing; exit 0; }
git rev-parse --git-dir >/dev/null 2>&1 || { echo missing; exit 0; }
echo ok
git stash list 2>/dev/null | wc -l
git rev-list --count HEAD --not --remotes 2>/dev/null || echo -1
git rev-parse --abbrev-ref HEAD 2>/dev/null
git rev-parse HEAD 2>/dev/null || echo
git status --porcelain --untracked-files=all 2>/dev/null
"""
# Paths gt itself treats as runtime artifacts, not work (internal/git/git.go runtimeArtifactRoot).
_RUNTIME_DIRS = frozenset(
    {
        ".beads",
        ".claude",
        ".opencode",
        ".runtime",
        ".logs",
        "__pycache__",
        "node_modules",
        ".vite",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".cache",
        "coverage",
        "htmlcov",
    }
)


def is_runtime_path(path: str) -> bool:
    """Whether gt would ignore ``path`` when deciding if a worktree has uncommitted work."""
    parts = [p for p in path.strip().strip('"').split("/") if p]
    if not parts or any(part in _RUNTIME_DIRS for part in parts):
        return bool(parts)
    base = parts[-1]
    return base in ("CLAUDE.local.md", ".DS_Store") or base.lower().endswith((".db", ".pyc", ".pyo"))


# The probe prints what gt needs to be usable, in one round trip: gt on PATH, the
# town marker, the canonical town path (for the tmux socket) and GT_TMUX_SOCKET.
_PROBE = r"""
town=$1 gt=$2
if ! command -v "$gt" >/dev/null 2>&1; then echo gt-missing; exit 0; fi
if [ ! -f "$town/mayor/town.json" ]; then echo town-missing; exit 0; fi
canonical=$(realpath -e -- "$town" 2>/dev/null) || canonical=$town
printf 'ok\n%s\n%s\n' "$canonical" "${GT_TMUX_SOCKET-}"
"""


@dataclass(frozen=True, slots=True)
class SlingOutcome:
    """What ``gt sling`` said: the polecat's name (if printed), or that nobody knows yet."""

    name: str | None
    unknown: bool = False  # timed out or the connection dropped: gt may have slung
    already_hooked: bool = False  # gt said the bead is already on a live polecat (a no-op)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TownInfo:
    """What the probe learned about a town on the target host."""

    root: str
    canonical_root: str
    gt_tmux_socket: str | None


@dataclass(frozen=True, slots=True)
class GtPolecat:
    """One entry of ``gt polecat list --json``."""

    rig: str
    name: str
    state: str
    issue: str = ""
    session_running: bool = False
    zombie: bool = False
    session_name: str = ""
    cleanup_status: str = ""
    verdict: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GtPolecat:
        return cls(
            rig=str(obj.get("rig", "")),
            name=str(obj.get("name", "")),
            state=str(obj.get("state", "")),
            issue=str(obj.get("issue") or ""),
            session_running=bool(obj.get("session_running", False)),
            zombie=bool(obj.get("zombie", False)),
            session_name=str(obj.get("session_name") or ""),
            cleanup_status=str(obj.get("cleanup_status") or ""),
            verdict=str(obj.get("verdict") or ""),
        )


def parse_gt_time(value: str | None) -> datetime | None:
    """gt's ``2006-01-02 15:04:05`` (no zone: the host's clock, taken as UTC)."""
    if not value:
        return None
    try:
        return datetime.strptime(value, GT_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class GtPolecatStatus:
    """``gt polecat status <rig>/<name> --json``."""

    rig: str
    name: str
    state: str
    issue: str
    session_running: bool
    session_id: str
    created_at: datetime | None
    last_activity: datetime | None
    clone_path: str = ""
    branch: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GtPolecatStatus:
        return cls(
            rig=str(obj.get("rig", "")),
            name=str(obj.get("name", "")),
            state=str(obj.get("state", "")),
            issue=str(obj.get("issue") or ""),
            session_running=bool(obj.get("session_running", False)),
            session_id=str(obj.get("session_id") or ""),
            created_at=parse_gt_time(obj.get("created_at")),
            last_activity=parse_gt_time(obj.get("last_activity")),
            clone_path=str(obj.get("clone_path") or ""),
            branch=str(obj.get("branch") or ""),
        )


@dataclass(frozen=True, slots=True)
class GitFacts:
    """What a polecat's worktree holds that nuking it would lose (the operator's own look)."""

    uncommitted: int
    stashes: int
    unpushed: int  # commits on HEAD that no remote-tracking branch has; -1: unknown
    branch: str
    commit: str = ""  # HEAD

    @property
    def all_pushed(self) -> bool:
        return self.uncommitted == 0 and self.stashes == 0 and self.unpushed == 0

    def describe(self) -> str:
        parts = []
        if self.uncommitted:
            parts.append(f"{self.uncommitted} uncommitted file(s)")
        if self.stashes:
            parts.append(f"{self.stashes} stash(es)")
        if self.unpushed > 0:
            parts.append(f"{self.unpushed} unpushed commit(s)")
        if self.unpushed < 0:
            parts.append("commits that cannot be compared with any remote")
        return ", ".join(parts) or f"everything on branch {self.branch} pushed"

    def result(self, message: str) -> ResultStatus:
        """``status.result`` from these facts: the branch, HEAD, and whether HEAD reached a remote."""
        return ResultStatus(
            branch=self.branch or None,
            commit=self.commit or None,
            pushed=self.unpushed == 0 if self.unpushed >= 0 else None,
            message=f"{message.rstrip('. ')}; {self.describe()}",
        )


async def read_git_facts(run: Runner, path: str) -> GitFacts | None:
    """The operator's own look at a git work tree on the host (None: not one). Read-only."""
    res = await run(["sh", "-c", _GIT_PROBE, "gastown-git-probe", path], idempotent=True)
    lines = res.stdout.split("\n")
    if res.exit_status != 0 or not lines or lines[0] != "ok":
        return None
    try:
        stashes, unpushed = (int(v.strip()) for v in lines[1:3])
    except ValueError as exc:
        raise TransientError("GitProbeFailed", f"reading git state of {path} failed: {res.stderr}") from exc
    branch = lines[3].strip() if len(lines) > 3 else ""
    commit = lines[4].strip() if len(lines) > 4 else ""
    changed = [line[3:].split(" -> ")[-1] for line in lines[5:] if len(line) > 3]
    uncommitted = sum(1 for p in changed if not is_runtime_path(p))
    return GitFacts(uncommitted, stashes, unpushed, branch, commit)


@dataclass(frozen=True, slots=True)
class GtRecovery:
    """``gt polecat check-recovery <rig>/<name> --json``."""

    verdict: str
    safe_to_nuke: bool
    needs_recovery: bool
    cleanup_status: str = ""
    reason: str = ""
    blockers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def safe(self) -> bool:
        return self.verdict == SAFE_TO_NUKE and not self.needs_recovery

    @property
    def working(self) -> bool:
        """The polecat is still working (its agent runs): not a deletion decision yet."""
        return self.verdict == WORKING

    @property
    def known(self) -> bool:
        return self.verdict in VERDICTS

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GtRecovery:
        return cls(
            verdict=str(obj.get("verdict", "")),
            safe_to_nuke=bool(obj.get("safe_to_nuke", False)),
            needs_recovery=bool(obj.get("needs_recovery", False)),
            cleanup_status=str(obj.get("cleanup_status") or ""),
            reason=str(obj.get("reason") or ""),
            blockers=tuple(str(b) for b in obj.get("blockers") or ()),
        )


def parse_spawned_name(output: str) -> str | None:
    """The polecat name from ``gt sling`` output (``Polecat <Name> spawned``)."""
    match = _SPAWNED.search(_ANSI.sub("", output))
    return match.group(1) if match else None


def parse_json(output: str) -> Any:
    """gt's JSON, tolerating warning lines printed before it."""
    text = output.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for index, line in enumerate(text.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads("\n".join(text.splitlines()[index:]))
            except json.JSONDecodeError:
                continue
    raise TransientError("GtBadOutput", f"gt printed no JSON: {text[:300]!r}")


def _error_lines(text: str, limit: int = 400) -> str:
    """gt's ``Error:`` lines (cobra prints its usage text after them), else the tail."""
    errors = [
        line.strip() for line in _ANSI.sub("", text).splitlines() if line.startswith(("Error", "blocked"))
    ]
    return _tail("; ".join(errors), limit) if errors else _tail(text, limit)


def _tail(text: str, limit: int = 400) -> str:
    text = _ANSI.sub("", text).strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def sling_user_error(output: str, *, bead_id: str, rig: str, town_root: str) -> UserError | None:
    """A ``gt sling`` failure the user must fix, as a UserError saying what to fix; None otherwise.

    Pure, for the texts of gt v1.2.1. Left out on purpose (transient, retried): "already
    being slung", the sling lock timeouts, dolt and tmux hiccups, a dropped connection.
    """
    said = _error_lines(output, 300)
    where = f"{town_root}/{rig}"
    target = _SLING_UNKNOWN_TARGET.search(output)
    if target and target.group(1) == rig:
        return UserError(
            "RigNotFound",
            f"rig {rig!r} is not in the town at {town_root} (gt sling took it for an agent: {said}): add it "
            "with `gt rig add` or fix spec.rig",
        )
    missing = _AGENT_BINARY_MISSING.search(output)
    if missing:
        return UserError(
            "AgentMisconfigured",
            f"gt cannot start the agent: its command {missing.group(1)!r} is not installed on the local-mode "
            f"host ({said}); install it, or fix the agent's command in {town_root}/settings/config.json "
            "(`gt config agent set <name> <command>`)",
        )
    unknown = _AGENT_UNKNOWN.search(output)
    if unknown:
        return UserError(
            "AgentMisconfigured",
            f"gt has no agent {unknown.group(1)!r} ({said}): register it (`gt config agent set`) or set the "
            f"town's default agent (`gt config default-agent <name>` in {town_root})",
        )
    other = _BEAD_OTHER_RIG.search(output)
    if other or _BEAD_NO_ROUTE.search(output):
        owner = f"to rig {other.group(1)!r}" if other else "to no rig of the town (its prefix has no route)"
        return UserError(
            "BeadNotInRig",
            f"bead {bead_id!r} belongs {owner}, not to spec.rig {rig!r} ({said}): set spec.rig to the bead's "
            f'rig, or create the bead in this rig (`cd {where} && bd create "<title>" --type task`) and put '
            "its id in spec.beadID",
        )
    assigned = _BEAD_ASSIGNED.search(output)
    if assigned:
        return UserError(
            "BeadTaken",
            f"bead {bead_id!r} is already {assigned.group(1)} to {assigned.group(2)} ({said}): another agent "
            "has it; finish or unassign it there, or use another bead in spec.beadID",
        )
    if _BEAD_DEFERRED.search(output):
        return UserError(
            "BeadDeferred",
            f"bead {bead_id!r} is deferred and gt does not sling deferred work ({said}): reopen it "
            f"(`cd {where} && bd update {bead_id} --status open`) or use another bead",
        )
    limit = _RESPAWN_LIMIT.search(output)
    if limit:
        return UserError(
            "RespawnLimitReached",
            f"gt refuses to sling bead {bead_id!r} again: it failed {limit.group(1)} times ({said}); find "
            f"out why (`gastown logs`, the bead's history), then reset the counter (`cd {town_root} && gt "
            f"sling respawn-reset {bead_id}`)",
        )
    if _PERMISSION_DENIED.search(output):
        return UserError(
            "PermissionDenied",
            f"gt sling was denied access ({said}): the operator's SSH user (GASTOWN_SSH_USER) must be able "
            f"to write the town {town_root} (its owner, or a member of its group), and the rig's git remote "
            "must accept that user's key",
        )
    return None


class GtClient:
    """gt commands for one town, run through ``run`` (the SSH layer)."""

    def __init__(
        self,
        run: Runner,
        *,
        town_root: str,
        gt_binary: str = "gt",
        list_ttl: float = 1.0,
        sling_timeout: float = SLING_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._run = run
        self.town_root = town_root
        self.gt_binary = gt_binary
        self._list_ttl = list_ttl
        self._sling_timeout = sling_timeout
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._town: TownInfo | None = None
        self._lists: dict[str, tuple[float, asyncio.Future[list[GtPolecat]]]] = {}
        self.list_calls = 0  # how many `polecat list` commands ran (tests pin the sharing)

    # Town.
    async def town(self) -> TownInfo:
        """Check gt and the town once (cached on success); UserError says what to fix."""
        if self._town is not None:
            return self._town
        res = await self._run(
            ["sh", "-c", _PROBE, "gastown-gt-probe", self.town_root, self.gt_binary], idempotent=True
        )
        lines = res.stdout.splitlines()
        verdict = lines[0] if lines else ""
        if verdict == "gt-missing":
            raise UserError(
                "GtNotInstalled",
                f"Gas Town's gt ({self.gt_binary!r}) is not installed on the local-mode host: install it "
                "(go install github.com/steveyegge/gastown/cmd/gt) or set GASTOWN_GT_BINARY to its path; "
                "or use dispatcher tmux",
            )
        if verdict == "town-missing":
            raise UserError(
                "TownNotFound",
                f"no Gas Town town at {self.town_root} ({self.town_root}/mayor/town.json is missing): set "
                "spec.local.townRoot (or GASTOWN_TOWN_ROOT) to a town created with `gt install`",
            )
        if res.exit_status != 0 or verdict != "ok" or len(lines) < 2:
            raise TransientError("GtProbeFailed", f"probing gt and the town failed: {_tail(res.stderr)}")
        socket_env = lines[2] if len(lines) > 2 and lines[2] else None
        self._town = TownInfo(root=self.town_root, canonical_root=lines[1], gt_tmux_socket=socket_env)
        return self._town

    async def _gt(
        self,
        *args: str,
        input: str | None = None,
        time_limit: float | None = None,
        idempotent: bool = False,
    ) -> CommandOutcome:
        await self.town()
        res = await self._run(
            [self.gt_binary, *args],
            input=input,
            env={"GT_TOWN_ROOT": self.town_root},
            cwd=self.town_root,
            time_limit=time_limit,
            idempotent=idempotent,
        )
        if res.exit_status == 0:
            return res
        self._raise_known(args, res)
        return res

    def _raise_known(self, args: Sequence[str], res: CommandOutcome) -> None:
        err = _ANSI.sub("", res.stderr + "\n" + res.stdout)
        if res.exit_status == 127 or "command not found" in err:
            self._town = None
            raise UserError(
                "GtNotInstalled",
                f"gt ({self.gt_binary!r}) cannot be run on the local-mode host: {_tail(err)}; install Gas "
                "Town or set GASTOWN_GT_BINARY",
            )
        if "not in a Gas Town workspace" in err:
            self._town = None
            raise UserError(
                "TownNotFound",
                f"gt does not see a town at {self.town_root}: {_tail(err)}; fix spec.local.townRoot",
            )
        rig_missing = re.search(r"rig '([^']*)' not found", err)
        if rig_missing:
            raise UserError(
                "RigNotFound",
                f"rig {rig_missing.group(1)!r} is not in the town at {self.town_root}: add it with "
                "`gt rig add` or fix spec.rig",
            )

    # Commands.
    async def sling(self, bead_id: str, rig: str, *, task: str | None) -> SlingOutcome:
        """``gt sling <bead> <rig>``: what gt printed, or that the outcome is unknown.

        Not idempotent, so never retried here: callers check ``list`` for the bead
        first and confirm with ``list_polecats`` after. A timeout or a dropped
        connection is ``SlingOutcome(unknown=True)``, never a failure: gt may well
        have slung (it waits minutes for the agent's prompt).
        """
        args = ["sling", bead_id, rig]
        if task:
            args.append("--stdin")
        self.invalidate(rig)
        try:
            res = await self._gt(*args, input=task if task else None, time_limit=self._sling_timeout)
        except TransientError as exc:
            if exc.reason in ("SSHCommandTimeout", "SSHConnectionLost"):
                return SlingOutcome(name=None, unknown=True, detail=exc.message)
            raise
        finally:
            self.invalidate(rig)
        output = _ANSI.sub("", res.stdout + "\n" + res.stderr)
        if res.exit_status != 0:
            self._raise_bead_errors(bead_id, rig, output)
            self._raise_sling_user_errors(bead_id, rig, output)
            raise TransientError(
                "GtSlingFailed",
                f"gt sling {bead_id} {rig} failed ({res.exit_status}): {_error_lines(output)}",
            )
        hooked = _ALREADY_HOOKED.search(output)
        if hooked and hooked.group(1) == rig:
            return SlingOutcome(name=hooked.group(2), already_hooked=True)
        return SlingOutcome(name=parse_spawned_name(output))

    def _raise_bead_errors(self, bead_id: str, rig: str, output: str) -> None:
        """A bead gt cannot sling is the user's to fix: say how."""
        where = f"{self.town_root}/{rig}"
        if _BEAD_NOT_FOUND.search(output):
            raise UserError(
                "BeadNotFound",
                f"bead {bead_id!r} is not in rig {rig!r}'s beads database, and gt slings only existing "
                f'beads: create it on the host (`cd {where} && bd create "<title>" --type task`, then '
                "put the id it prints in spec.beadID) or fix spec.beadID",
            )
        closed = _BEAD_CLOSED.search(output)
        if closed:
            raise UserError(
                "BeadClosed",
                f"bead {bead_id!r} is {closed.group(2)} (its work was completed) and gt refuses to sling it: "
                f"reopen it (`cd {where} && bd reopen {bead_id}`) or use a new bead in spec.beadID",
            )

    def _raise_sling_user_errors(self, bead_id: str, rig: str, output: str) -> None:
        """The rest of gt's sling failures that retrying cannot fix (see :func:`sling_user_error`)."""
        error = sling_user_error(output, bead_id=bead_id, rig=rig, town_root=self.town_root)
        if error is not None:
            raise error

    def invalidate(self, rig: str) -> None:
        """Drop the cached list of ``rig`` (after a change we made)."""
        self._lists.pop(rig, None)

    async def list_polecats(self, rig: str, *, fresh: bool = False) -> list[GtPolecat]:
        """``gt polecat list <rig> --json``, shared by concurrent callers and cached briefly.

        While one call for a rig is in flight, other callers wait for its answer;
        a finished answer is reused for ``list_ttl`` seconds unless ``fresh``.
        """
        cached = self._lists.get(rig)
        if cached is not None:
            expires, shared = cached
            if not shared.done():
                return await asyncio.shield(shared)
            if not fresh and self._clock() < expires and shared.exception() is None:
                return shared.result()
        future: asyncio.Future[list[GtPolecat]] = asyncio.get_running_loop().create_future()
        self._lists[rig] = (self._clock() + self._list_ttl, future)
        try:
            items = await self._list_now(rig)
        except BaseException as exc:
            if self._lists.get(rig, (0.0, None))[1] is future:
                del self._lists[rig]
            shared_exc = exc if isinstance(exc, Exception) else TransientError("GtListCancelled", "cancelled")
            future.set_exception(shared_exc)
            future.exception()  # mark retrieved: waiters may be none
            raise
        future.set_result(items)
        return items

    async def _list_now(self, rig: str) -> list[GtPolecat]:
        self.list_calls += 1
        res = await self._gt("polecat", "list", rig, "--json", idempotent=True)
        if res.exit_status != 0:
            raise TransientError("GtListFailed", f"gt polecat list {rig} failed: {_tail(res.stderr)}")
        data = parse_json(res.stdout)
        if data is None:
            return []
        if not isinstance(data, list):
            raise TransientError("GtBadOutput", "gt polecat list --json did not print a JSON array")
        return [GtPolecat.from_json(item) for item in data if isinstance(item, dict)]

    async def find_by_issue(self, rig: str, bead_id: str, *, fresh: bool = False) -> GtPolecat | None:
        """The polecat of ``rig`` working on ``bead_id`` (issue == beadID), if any."""
        for item in await self.list_polecats(rig, fresh=fresh):
            if item.issue == bead_id and not item.zombie:
                return item
        return None

    async def status(self, rig: str, name: str) -> GtPolecatStatus | None:
        """``gt polecat status``; None when the polecat does not exist."""
        data = await self._polecat_json_object("status", rig, name)
        return None if data is None else GtPolecatStatus.from_json(data)

    async def check_recovery(self, rig: str, name: str) -> GtRecovery | None:
        """``gt polecat check-recovery``; None when the polecat does not exist."""
        data = await self._polecat_json_object("check-recovery", rig, name)
        return None if data is None else GtRecovery.from_json(data)

    async def _polecat_json_object(self, subcommand: str, rig: str, name: str) -> dict[str, Any] | None:
        """``gt polecat <subcommand> <rig>/<name> --json`` as a JSON object; None: no such polecat."""
        res = await self._gt_lenient("polecat", subcommand, f"{rig}/{name}", "--json", idempotent=True)
        if res is None:
            return None
        data = parse_json(res.stdout)
        if not isinstance(data, dict):
            raise TransientError("GtBadOutput", f"gt polecat {subcommand} --json did not print a JSON object")
        return data

    async def git_facts(self, path: str) -> GitFacts | None:
        """The operator's own look at a worktree (None: no such worktree). Read-only."""
        return await read_git_facts(self._run, path)

    async def nuke(self, rig: str, name: str, *, force: bool) -> None:
        args = ["polecat", "nuke", f"{rig}/{name}"]
        if force:
            args.append("--force")
        try:
            await self._gt_lenient(*args)
        finally:
            self.invalidate(rig)

    async def stop_session(self, rig: str, name: str) -> None:
        """``gt session stop``: ends the agent's session, keeps its worktree.

        gt answers ``session not found`` (exit 1) when there is no session: already stopped.
        """
        try:
            await self._gt_lenient(
                "session", "stop", f"{rig}/{name}", idempotent=True, absent="session not found"
            )
        finally:
            self.invalidate(rig)

    async def _gt_lenient(
        self, *args: str, idempotent: bool = False, absent: str | None = None
    ) -> CommandOutcome | None:
        """Run gt; None when gt says the polecat (or ``absent``) is not found; TransientError otherwise."""
        res = await self._gt(*args, idempotent=idempotent)
        if res.exit_status == 0:
            return res
        err = _ANSI.sub("", res.stderr + res.stdout)
        if re.search(r"polecat '[^']*' not found|not found in rig", err) or (absent and absent in err):
            return None
        raise TransientError(
            "GtFailed", f"gt {' '.join(args[:2])} failed ({res.exit_status}): {_error_lines(err)}"
        )
