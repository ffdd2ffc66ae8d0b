"""What a Convoy should do next, and what its status says: pure, no I/O.

The Convoy controller (:mod:`gastown.controller.convoys`) gathers what it knows — the
Convoy as cached, a :class:`Member` per owned Polecat it sees, the Polecats it created
and has not seen yet — and :func:`plan` decides everything from that:

* **which Polecats to create**: the first beads (in spec order) that never had one,
  as many as keep the unfinished Polecats at or under ``spec.parallelism`` (Polecats
  not seen finished count, Pending ones and the ones just created included), none once
  failurePolicy Stop reached ``maxFailures`` or while the Convoy is being deleted;
* **which Polecats to delete** for ``spec.ttlSecondsAfterFinished``: finished ones whose
  result the *stored* Convoy status already records, once their TTL ran out; and when
  the next one expires (one requeue, no polling);
* **the status**: total, counts by phase, startTime, completionTime, one entry per bead
  that has (had) a Polecat, and the Ready and Complete conditions.

A bead "had a Polecat" when one is seen now, when this process created it, or when the
stored status names its Polecat: so a bead is never given a second Polecat, not after
its Polecat was deleted by its TTL, not after an operator restart (the names are
``<convoy>-<n>`` anyway, so a second create would meet AlreadyExists). A Polecat that
vanished before it finished (deleted by someone) leaves its bead Failed with reason
``PolecatDeleted``; it is not run again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gastown.api.convoy import (
    LABEL_CONVOY,
    Convoy,
    ConvoyBeadStatus,
    ConvoyCounts,
    ConvoyStatus,
    FailurePolicy,
)
from gastown.api.models import API_VERSION, KIND, TERMINAL_PHASES, Condition, Phase
from gastown.controller.status import READY, ConditionStatus, set_condition

COMPLETE = "Complete"

# Ready reasons
PROGRESSING = "Progressing"
FINISHED = "Finished"
FAILURE_LIMIT = "FailureLimitReached"
DELETING = "Deleting"
NAME_TAKEN = "PolecatNameTaken"
POLECAT_REJECTED = "PolecatRejected"
# Complete reasons
IN_PROGRESS = "InProgress"
ALL_DONE = "AllDone"
ALL_FINISHED = "AllFinished"
STOPPED = "Stopped"
# A bead's reason when its Polecat vanished before finishing.
POLECAT_DELETED = "PolecatDeleted"


@dataclass(frozen=True, slots=True)
class Member:
    """What the Convoy needs from one of its Polecats (read off the cached object)."""

    name: str
    owner_uid: str | None
    uid: str = ""
    phase: Phase | None = None
    reason: str | None = None
    branch: str | None = None
    commit: str | None = None
    completion_time: datetime | None = None
    deleting: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES


def member_of(obj: Mapping[str, Any]) -> Member | None:
    """A :class:`Member` from a (slim) Polecat, None if it is not a Convoy's."""
    meta = obj.get("metadata") or {}
    if not (meta.get("labels") or {}).get(LABEL_CONVOY):
        return None
    owner = next((o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("kind") == "Convoy"), None)
    status = obj.get("status") or {}
    try:
        phase = Phase(status["phase"]) if status.get("phase") else None
    except ValueError:
        phase = None
    reason = None
    if phase in (Phase.FAILED, Phase.STUCK, Phase.TERMINATED):
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
        reason = (ready or {}).get("reason") or None
    result = status.get("result") or {}
    completion = status.get("completionTime")
    try:
        completion_time = datetime.fromisoformat(completion) if completion else None
    except (TypeError, ValueError):
        completion_time = None
    return Member(
        name=str(meta.get("name")),
        owner_uid=owner,
        uid=str(meta.get("uid") or ""),
        phase=phase,
        reason=reason,
        branch=result.get("branch"),
        commit=result.get("commit"),
        completion_time=completion_time,
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True, slots=True)
class Bead:
    """One bead of the Convoy, in spec order (``index`` 1-based)."""

    index: int
    bead_id: str
    task: str | None


def beads_of(convoy: Convoy) -> list[Bead]:
    """The Convoy's beads: spec.beads, or ``<convoy>-1`` ... ``-<count>``."""
    if convoy.spec.beads is not None:
        return [Bead(i, b.beadID, b.task) for i, b in enumerate(convoy.spec.beads, start=1)]
    name = convoy.metadata.name
    return [Bead(i, f"{name}-{i}", None) for i in range(1, (convoy.spec.count or 0) + 1)]


def polecat_name(convoy_name: str, index: int) -> str:
    """The name of the Polecat for bead ``index`` (1-based): ``<convoy>-<index>``."""
    return f"{convoy_name}-{index}"


def polecat_for(convoy: Convoy, bead: Bead) -> dict[str, Any]:
    """The Polecat to create for ``bead``: the template's spec with the bead (and its task).

    Owned by the Convoy (controller, blockOwnerDeletion) and labelled with its name. The
    template's ``ttlSecondsAfterFinished`` is not copied: the Convoy deletes its Polecats
    itself, after recording their results (``spec.ttlSecondsAfterFinished``).
    """
    template = convoy.spec.template
    spec = template.spec.model_dump(mode="json", exclude_none=True)
    spec.pop("ttlSecondsAfterFinished", None)
    spec["beadID"] = bead.bead_id
    if bead.task is not None:
        spec["task"] = bead.task
    meta = template.metadata
    labels = {**(meta.labels if meta else {}), LABEL_CONVOY: convoy.metadata.name}
    metadata: dict[str, Any] = {
        "name": polecat_name(convoy.metadata.name, bead.index),
        "namespace": convoy.metadata.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": convoy.apiVersion,
                "kind": convoy.kind,
                "name": convoy.metadata.name,
                "uid": convoy.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if meta and meta.annotations:
        metadata["annotations"] = dict(meta.annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`plan` decided."""

    create: list[Bead] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    """Names of finished Polecats to delete now (TTL expired, result recorded)."""
    status: dict[str, Any] = field(default_factory=dict)
    """The new status, wire form (compare with :func:`normalize` of the stored one)."""
    requeue_after: float | None = None
    """Seconds until the next TTL expiry, if one is due later."""
    complete: bool = False


def normalize(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored Convoy status in wire form, for comparison; None if absent or unreadable."""
    if not raw:
        return None
    try:
        return ConvoyStatus.model_validate(raw).model_dump(mode="json", exclude_none=True)
    except ValidationError:
        return None


def _stored(convoy: Convoy) -> ConvoyStatus:
    return convoy.status or ConvoyStatus()


def plan(
    convoy: Convoy,
    members: Mapping[str, Member],
    *,
    created: Sequence[str] = (),
    rejected: str | None = None,
    now: datetime,
) -> Plan:
    """Decide creations, TTL deletions and the status (see the module doc).

    ``members``: owned Polecats by name, as cached; ``created``: names this process
    created and the cache does not show yet; ``rejected``: why the apiserver refused
    the last Polecat create (a user error: the template), shown in Ready.
    """
    stored = _stored(convoy)
    recorded = {b.beadID: b for b in stored.beads}
    recorded_names = {b.polecat for b in stored.beads if b.polecat}
    beads = beads_of(convoy)
    name = convoy.metadata.name
    uid = convoy.metadata.uid
    just_created = set(created)

    entries: list[ConvoyBeadStatus] = []
    counts = ConvoyCounts()
    unfinished = 0
    failures = 0
    finished = 0
    not_started: list[Bead] = []
    taken: list[str] = []
    for bead in beads:
        pname = polecat_name(name, bead.index)
        member = members.get(pname)
        old = recorded.get(bead.bead_id)
        if member is not None and member.owner_uid not in (None, uid):
            # Another object's Polecat holds the name (e.g. a deleted Convoy's, still being released).
            taken.append(pname)
            entry = old or ConvoyBeadStatus(beadID=bead.bead_id)
            if old is None:  # not created: it waits for the name (a create would meet AlreadyExists)
                counts.pending += 1
                continue
        elif member is not None:
            entry = ConvoyBeadStatus(
                beadID=bead.bead_id,
                polecat=pname,
                phase=member.phase or Phase.PENDING,
                reason=member.reason,
                branch=member.branch or (old.branch if old else None),
                commit=member.commit or (old.commit if old else None),
                completionTime=member.completion_time,
            )
        elif pname in just_created:
            entry = ConvoyBeadStatus(beadID=bead.bead_id, polecat=pname, phase=Phase.PENDING)
        elif old is not None and old.polecat:
            entry = old
            if old.phase not in TERMINAL_PHASES:
                entry = old.model_copy(
                    update={"phase": Phase.FAILED, "reason": POLECAT_DELETED, "completionTime": now}
                )
        else:
            not_started.append(bead)
            counts.pending += 1
            continue
        entries.append(entry)
        phase = entry.phase or Phase.PENDING
        setattr(counts, phase.value.lower(), getattr(counts, phase.value.lower()) + 1)
        if phase in TERMINAL_PHASES:
            finished += 1
            if phase is Phase.FAILED:
                failures += 1
        else:
            unfinished += 1

    total = len(beads)
    deleting = convoy.metadata.deletionTimestamp is not None
    spec = convoy.spec
    stopped = spec.failurePolicy is FailurePolicy.STOP and failures >= spec.maxFailures
    create: list[Bead] = []
    if not stopped and not deleting:
        create = not_started[: max(spec.parallelism - unfinished, 0)]
    started_now = bool(create)

    complete = finished == total or (stopped and unfinished == 0)
    completion_time = stored.completionTime
    if complete and completion_time is None:
        times = [e.completionTime for e in entries if e.completionTime is not None]
        completion_time = max(times) if times else now
    if not complete:
        completion_time = None
    start_time = stored.startTime or (now if (started_now or entries) else None)

    generation = convoy.metadata.generation
    conditions = _conditions(
        stored.conditions,
        generation=generation,
        now=now,
        total=total,
        finished=finished,
        failures=failures,
        unfinished=unfinished,
        waiting=len(not_started) + sum(1 for t in taken if t not in recorded_names),
        counts=counts,
        complete=complete,
        stopped=stopped,
        deleting=deleting,
        taken=taken,
        rejected=rejected,
        spec_parallelism=spec.parallelism,
        max_failures=spec.maxFailures,
    )
    status = ConvoyStatus(
        observedGeneration=generation,
        total=total,
        counts=counts,
        startTime=start_time,
        completionTime=completion_time,
        beads=entries,
        conditions=conditions,
    )

    delete, requeue = _expired(convoy, members, recorded, now)
    return Plan(
        create=create,
        delete=delete,
        status=status.model_dump(mode="json", exclude_none=True),
        requeue_after=requeue,
        complete=complete,
    )


def _expired(
    convoy: Convoy,
    members: Mapping[str, Member],
    recorded: Mapping[str, ConvoyBeadStatus],
    now: datetime,
) -> tuple[list[str], float | None]:
    """Finished Polecats past the Convoy's TTL whose result the stored status records."""
    ttl = convoy.spec.ttlSecondsAfterFinished
    if ttl is None:
        return [], None
    by_polecat = {b.polecat: b for b in recorded.values() if b.polecat}
    delete: list[str] = []
    soonest: float | None = None
    for member in members.values():
        if not member.finished or member.deleting or member.owner_uid not in (None, convoy.metadata.uid):
            continue
        entry = by_polecat.get(member.name)
        if entry is None or entry.phase is not member.phase:
            continue  # its result is not recorded yet: the status write comes first
        finished_at = member.completion_time or entry.completionTime
        if finished_at is None:
            continue
        remaining = (finished_at + timedelta(seconds=ttl) - now).total_seconds()
        if remaining <= 0:
            delete.append(member.name)
        else:
            soonest = remaining if soonest is None else min(soonest, remaining)
    return delete, soonest


def _conditions(
    old: list[Condition],
    *,
    generation: int,
    now: datetime,
    total: int,
    finished: int,
    failures: int,
    unfinished: int,
    waiting: int,
    counts: ConvoyCounts,
    complete: bool,
    stopped: bool,
    deleting: bool,
    taken: list[str],
    rejected: str | None,
    spec_parallelism: int,
    max_failures: int,
) -> list[Condition]:
    """Ready and Complete (reasons and messages in the module constants)."""
    c_status: ConditionStatus
    r_status: ConditionStatus
    summary = f"{counts.done} done, {counts.failed} failed, {counts.terminated} terminated"
    if complete and stopped:
        c_status, c_reason = "True", STOPPED
        c_message = (
            f"Stopped after {failures} failed Polecats (maxFailures {max_failures}): "
            f"{finished} of {total} beads finished ({summary}), {waiting} not started."
        )
    elif complete and counts.done == total:
        c_status, c_reason, c_message = "True", ALL_DONE, f"All {total} beads are Done."
    elif complete:
        c_status, c_reason = "True", ALL_FINISHED
        c_message = f"All {total} beads finished: {summary}."
    else:
        c_status, c_reason = "False", IN_PROGRESS
        c_message = f"{finished} of {total} beads finished ({summary})."

    if deleting:
        r_status, r_reason = "False", DELETING
        r_message = f"The Convoy is being deleted: no new Polecats are started; {unfinished} still finishing."
    elif stopped:
        r_status, r_reason = "False", FAILURE_LIMIT
        r_message = (
            f"{failures} Polecats failed (maxFailures {max_failures}, failurePolicy Stop): no new "
            f"Polecats are started; {unfinished} still running, {waiting} beads not started."
        )
    elif rejected is not None:
        r_status, r_reason = "False", POLECAT_REJECTED
        r_message = (
            f"Creating the Convoy's Polecats failed: {rejected.rstrip('. ')}. spec.template cannot be "
            "changed: delete the Convoy and create a corrected one (retried every minute meanwhile)."
        )
    elif taken:
        r_status, r_reason = "False", NAME_TAKEN
        shown = ", ".join(taken[:3]) + (" ..." if len(taken) > 3 else "")
        r_message = (
            f"Polecat names {shown} are held by objects this Convoy does not own: those beads wait "
            "until they are gone."
        )
    elif complete:
        r_status, r_reason, r_message = "True", FINISHED, f"All {total} beads finished."
    else:
        r_status, r_reason = "True", PROGRESSING
        r_message = (
            f"{unfinished} Polecats unfinished (parallelism {spec_parallelism}), "
            f"{waiting} beads waiting, {finished} of {total} finished."
        )
    conditions = set_condition(
        old, type=READY, status=r_status, reason=r_reason, message=r_message, generation=generation, now=now
    )
    return set_condition(
        conditions,
        type=COMPLETE,
        status=c_status,
        reason=c_reason,
        message=c_message,
        generation=generation,
        now=now,
    )
