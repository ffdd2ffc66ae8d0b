"""From the agent Pod (as the informer cached it) to what the Polecat's status says.

``observe_pod`` is pure: a slim Pod dict (see ``slim_pod``) or None, and the Polecat,
in; an ``Observation`` out. The mapping:

=====================================================  =================================
Pod                                                    Polecat
=====================================================  =================================
none                                                   phase None (nothing runs)
Pending (scheduling, init ``git-clone`` running,       Dispatching
ContainerCreating, PodInitializing)
a container waiting with ImagePullBackOff,             Stuck, with Kubernetes' message
ErrImagePull, CreateContainerConfigError (e.g. a
missing Secret or key), ... ; phase Unknown
Running, but Ready False without a kubelet's reason    Stuck, NodeNotReady (see below)
Running/Pending, stopped by the operator (annotation   Working/Dispatching, Stopping
``gastown.gastown.io/stop``)
Running                                                Working
Failed/DeadlineExceeded, stopped by the operator       Terminated, Stopped, ``result`` and
                                                       ``work_saved`` from the report
Succeeded, report says pushed                          Done, ``result`` from the report
Succeeded, **no report** (see below)                   Done, reason NoResultReported
Failed                                                 Failed: CloneFailed (last line of the
                                                       clone's message), DeadlineExceeded,
                                                       OOMKilled, AgentFailed (exit code),
                                                       PushFailed, Evicted, PodFailed
=====================================================  =================================

The report is the runner's JSON termination message (``gastown.runner.termination``).

**Succeeded without a report.** Where no kubelet runs the runner (kwok in the test
lab; a custom image that does not use ``gastown-agent``), a Pod can succeed with no
termination message. Kubernetes says the work finished, so the Polecat is Done, with
reason ``NoResultReported``, ``result.pushed`` left unknown (None), ``result.branch``
the expected work branch and a message saying nothing confirmed the push. Treating it
as Failed would contradict the Pod; treating it as a confirmed push would be a lie.
A report that says ``pushed: false`` on a Succeeded Pod breaks the runner's contract
(it exits non-zero then) and is reported as Failed/PushFailed.

**A lost node.** When a kubelet stops reporting, its Pods stay ``Running`` (nobody is
left to say otherwise); after the node's grace period the node lifecycle controller
sets their ``Ready`` condition False, keeping the reason it had (none: a kubelet's
Ready=True carries none). A kubelet that sets Ready False itself always gives a
reason (``ContainersNotReady``, ``PodCompleted``). So Running + Ready False with no
reason is read as the node being lost: Stuck, NodeNotReady, instead of Working forever,
with ``node_lost_since`` the time that Ready condition flipped (its
``lastTransitionTime``, kept in the slim cache for this): the status module makes it a
terminal Failed/NodeLost once that lasted longer than the node-lost timeout.

**A stop on request.** ``desiredState: Terminated`` and a deletion stop a started Pod in
place (``KubernetesExecutor.stop``): ``activeDeadlineSeconds`` shortened to its elapsed
runtime and the annotation ``gastown.gastown.io/stop`` set. The kubelet then stops it as
for a deadline (SIGTERM: the runner stops the agent, commits, pushes and writes its
report); the Pod ends Failed/DeadlineExceeded and stays, so its report is read here.
Until then the work is ``stopping``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gastown.api.models import KubernetesStatus, Phase, Polecat, ResultStatus
from gastown.executors.base import Observation, WorkSaved
from gastown.executors.kubernetes.pod import AGENT_CONTAINER, ANNOTATION_STOP, CLONE_CONTAINER, pod_name

# Waiting reasons that will not resolve by themselves (without someone changing
# something: an image name, a Secret, a registry credential).
STUCK_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)

_CONDITION_FIELDS = ("type", "status", "reason", "message")
# Reasons a kubelet gives when it sets a Pod's Ready condition False itself.
_KUBELET_NOT_READY_REASONS = frozenset({"ContainersNotReady", "PodCompleted", "ReadinessGatesNotReady"})
_STATE_FIELDS = {
    "waiting": ("reason", "message"),
    "running": ("startedAt",),
    "terminated": ("exitCode", "signal", "reason", "message", "startedAt", "finishedAt"),
}


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """Only what the observer and the reconciler read, to keep the informer cache small.

    Takes a Pod in wire form (as the watch delivers it) and drops the spec (except
    ``nodeName``), managed fields, annotations (but the operator's stop mark), images,
    and everything else. Of the conditions' times only the Ready condition's
    ``lastTransitionTime`` stays (when a lost node's Pod went not-ready).
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    slim_meta = {
        key: meta[key]
        for key in (
            "name",
            "namespace",
            "uid",
            "labels",
            "ownerReferences",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
        )
        if meta.get(key) is not None
    }
    slim_status: dict[str, Any] = {
        key: status[key] for key in ("phase", "reason", "message", "startTime") if status.get(key) is not None
    }
    stop = (meta.get("annotations") or {}).get(ANNOTATION_STOP)
    if stop is not None:
        slim_meta["annotations"] = {ANNOTATION_STOP: stop}
    conditions = [_slim_condition(c) for c in status.get("conditions") or []]
    if conditions:
        slim_status["conditions"] = conditions
    for key in ("initContainerStatuses", "containerStatuses"):
        statuses = [_slim_container_status(s) for s in status.get(key) or []]
        if statuses:
            slim_status[key] = statuses
    out: dict[str, Any] = {"metadata": slim_meta, "status": slim_status}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        out["spec"] = {"nodeName": node}
    return out


def _slim_condition(cond: dict[str, Any]) -> dict[str, Any]:
    out = {k: cond[k] for k in _CONDITION_FIELDS if cond.get(k) is not None}
    if cond.get("type") == "Ready" and cond.get("lastTransitionTime") is not None:
        out["lastTransitionTime"] = cond["lastTransitionTime"]
    return out


def _slim_container_status(status: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": status.get("name", "")}
    for key in ("state", "lastState"):
        state = _slim_state(status.get(key) or {})
        if state:
            out[key] = state
    return out


def _slim_state(state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, fields in _STATE_FIELDS.items():
        value = state.get(kind)
        if isinstance(value, dict):
            out[kind] = {f: value[f] for f in fields if value.get(f) is not None}
    return out


def parse_report(message: str | None) -> ResultStatus | None:
    """The runner's JSON report as a ``ResultStatus``, or None if it is not one."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pushed"), bool):
        return None
    branch, commit, text = data.get("branch"), data.get("commit"), data.get("message")
    return ResultStatus(
        branch=branch if isinstance(branch, str) else None,
        commit=commit if isinstance(commit, str) else None,
        pushed=data["pushed"],
        message=text if isinstance(text, str) else None,
    )


def report_exit_code(message: str | None) -> int | None:
    """``agentExitCode`` of the runner's report, if there is a report."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    code = data.get("agentExitCode") if isinstance(data, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def observe_pod(pod: dict[str, Any] | None, polecat: Polecat) -> Observation:
    """What the Pod says about the Polecat's work (see the module docstring)."""
    name = pod_name(polecat)
    if pod is None:
        return Observation(phase=None, reason="PodNotFound", message=f"no Pod {name} exists")
    status = pod.get("status") or {}
    pod_phase = status.get("phase") or "Pending"
    node = (pod.get("spec") or {}).get("nodeName")
    k8s = KubernetesStatus(podName=name, podPhase=pod_phase, nodeName=node)
    inits = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
    containers = {s.get("name"): s for s in status.get("containerStatuses") or []}

    stop = stop_requested(pod)
    if pod_phase == "Succeeded":
        return _succeeded(polecat, k8s, containers.get(AGENT_CONTAINER))
    if pod_phase == "Failed" and stop is not None and status.get("reason") == "DeadlineExceeded":
        return _stopped(polecat, k8s, containers.get(AGENT_CONTAINER))
    if pod_phase == "Failed":
        return _failed(polecat, k8s, status, inits.get(CLONE_CONTAINER), containers.get(AGENT_CONTAINER))

    for cname, cstatus in [*inits.items(), *containers.items()]:
        waiting = (cstatus.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in STUCK_WAITING_REASONS:
            detail = waiting.get("message") or "no message from Kubernetes"
            return Observation(
                phase=Phase.STUCK,
                reason=reason,
                message=f"container {cname} of Pod {name} cannot start: {reason}: {detail}",
                kubernetes=k8s,
            )

    if pod_phase == "Unknown":
        return Observation(
            phase=Phase.STUCK,
            reason="PodUnknown",
            message=f"the node of Pod {name} ({node}) stopped reporting its state: check the node",
            kubernetes=k8s,
        )
    deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    if pod_phase == "Running" and _node_lost(status):
        since = node_lost_since(status)
        when = f" at {since.isoformat().replace('+00:00', 'Z')}" if since is not None else ""
        return Observation(
            phase=Phase.STUCK,
            reason="NodeNotReady",
            message=(
                f"node {node} of Pod {name} stopped reporting{when} (its kubelet is unreachable), so the "
                f"agent's state is unknown: check the node; if it does not come back within the "
                f"node-lost timeout the Polecat becomes Failed (NodeLost)"
            ),
            kubernetes=k8s,
            stopping=stop is not None,
            node_lost_since=since,
        )
    if stop is not None and pod_phase in ("Running", "Pending"):
        started = pod_phase == "Running"
        return Observation(
            phase=Phase.WORKING if started else Phase.DISPATCHING,
            reason="Stopping",
            message=(
                f"stopping on request: the runner is saving the work to branch {polecat.work_branch}"
                if started
                else f"stopping on request: Pod {name} is stopped before the agent started"
            ),
            kubernetes=k8s,
            stopping=True,
        )
    if pod_phase == "Running":
        if deleting:
            return Observation(
                phase=Phase.WORKING,
                reason="PodTerminating",
                message=f"Pod {name} is being deleted; the runner is saving the work to the branch",
                kubernetes=k8s,
            )
        return Observation(
            phase=Phase.WORKING,
            reason="PodRunning",
            message=f"the agent runs in Pod {name} on node {node}",
            kubernetes=k8s,
        )
    return _pending(name, k8s, status, inits.get(CLONE_CONTAINER))


def stop_requested(pod: dict[str, Any]) -> str | None:
    """Why the operator stopped ``pod`` (its ``gastown.gastown.io/stop`` annotation), if it did."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_STOP)
    return value if isinstance(value, str) else None


def node_lost_since(status: dict[str, Any]) -> datetime | None:
    """When the Pod's Ready condition last flipped (for a lost node: when it went not-ready)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime"))
    return None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API (``...Z``), or None if absent or not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _node_lost(status: dict[str, Any]) -> bool:
    """Ready False with no kubelet's reason: the node lifecycle controller marked it (node lost)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "False" and cond.get("reason") not in _KUBELET_NOT_READY_REASONS
    return False


def _pending(
    name: str, k8s: KubernetesStatus, status: dict[str, Any], clone: dict[str, Any] | None
) -> Observation:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason") or "Unschedulable"
            return Observation(
                phase=Phase.DISPATCHING,
                reason=reason,
                message=f"Pod {name} is not scheduled yet: {cond.get('message') or reason}",
                kubernetes=k8s,
            )
    if clone is not None and "running" in (clone.get("state") or {}):
        return Observation(
            phase=Phase.DISPATCHING,
            reason="Cloning",
            message=f"Pod {name} is cloning the repository",
            kubernetes=k8s,
        )
    if k8s.nodeName:
        return Observation(
            phase=Phase.DISPATCHING,
            reason="ContainerCreating",
            message=f"Pod {name} is starting on node {k8s.nodeName}",
            kubernetes=k8s,
        )
    return Observation(
        phase=Phase.DISPATCHING,
        reason="PodPending",
        message=f"Pod {name} is waiting to be scheduled",
        kubernetes=k8s,
    )


def _terminated(cstatus: dict[str, Any] | None) -> dict[str, Any] | None:
    if cstatus is None:
        return None
    term = (cstatus.get("state") or {}).get("terminated")
    return term if isinstance(term, dict) else None


def _last_line(text: str | None) -> str:
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _succeeded(polecat: Polecat, k8s: KubernetesStatus, agent: dict[str, Any] | None) -> Observation:
    term = _terminated(agent) or {}
    report = parse_report(term.get("message"))
    if report is None:
        text = (
            "the Pod succeeded but its runner reported no result (no termination message), "
            f"so the push to {polecat.work_branch} is not confirmed"
        )
        return Observation(
            phase=Phase.DONE,
            reason="NoResultReported",
            message=text,
            kubernetes=k8s,
            result=ResultStatus(branch=polecat.work_branch, pushed=None, message=text),
        )
    if not report.pushed:
        return Observation(
            phase=Phase.FAILED,
            reason="PushFailed",
            message=f"the work was not pushed: {report.message or 'no reason given'}",
            kubernetes=k8s,
            result=report,
        )
    commit = (report.commit or "")[:12]
    return Observation(
        phase=Phase.DONE,
        reason="Succeeded",
        message=f"the agent finished; commit {commit} is on branch {report.branch}",
        kubernetes=k8s,
        result=report,
    )


def _stopped(polecat: Polecat, k8s: KubernetesStatus, agent: dict[str, Any] | None) -> Observation:
    """A Pod the operator stopped that ended (Failed/DeadlineExceeded): what the runner saved."""
    term = _terminated(agent) or {}
    report = parse_report(term.get("message"))
    branch = polecat.work_branch

    def stopped(message: str, saved: WorkSaved, result: ResultStatus | None) -> Observation:
        return Observation(
            phase=Phase.TERMINATED,
            reason="Stopped",
            message=f"stopped on request; {message}",
            kubernetes=k8s,
            result=result,
            work_saved=saved,
        )

    if report is not None and report.pushed:
        text = f"the runner pushed the work: commit {(report.commit or '')[:12]} is on branch {report.branch}"
        return stopped(text, WorkSaved("True", "Pushed", text), report)
    if report is not None:
        text = f"the work was NOT pushed to {report.branch or branch}: {report.message or 'no reason given'}"
        return stopped(text, WorkSaved("False", "PushFailed", text), report)
    if not _agent_started(agent):
        text = "the agent had not started, so there was no work to save"
        return stopped(text, WorkSaved("True", "NothingToSave", text), None)
    text = f"the runner reported no result (no termination message), so the push to {branch} is not confirmed"
    # Exit 0 without a report: not the gastown runner (which always reports), but an agent
    # that stopped cleanly (a custom image; kwok in the lab) — unconfirmed, like a Pod that
    # succeeded without a report. Anything else without a report may have lost the work.
    clean = term.get("exitCode") == 0
    return stopped(
        text,
        WorkSaved("Unknown" if clean else "False", "NoResultReported", text),
        ResultStatus(branch=branch, pushed=None, message=text),
    )


def _agent_started(agent: dict[str, Any] | None) -> bool:
    """Whether the agent container ever ran (running now, or terminated after starting)."""
    if agent is None:
        return False
    state = agent.get("state") or {}
    term = state.get("terminated") or {}
    return "running" in state or bool(term.get("startedAt")) or bool(agent.get("lastState"))


def _failed(
    polecat: Polecat,
    k8s: KubernetesStatus,
    status: dict[str, Any],
    clone: dict[str, Any] | None,
    agent: dict[str, Any] | None,
) -> Observation:
    name = k8s.podName
    agent_term = _terminated(agent)
    report = parse_report(agent_term.get("message")) if agent_term else None
    saved = ""
    if report is not None:
        saved = (
            f"; its work was pushed to {report.branch} at {(report.commit or '')[:12]}"
            if report.pushed
            else f"; its work was NOT pushed: {report.message or 'no reason given'}"
        )

    def failed(reason: str, message: str) -> Observation:
        return Observation(phase=Phase.FAILED, reason=reason, message=message, kubernetes=k8s, result=report)

    if status.get("reason") == "DeadlineExceeded":
        k8s_spec = polecat.spec.kubernetes
        limit = f" ({k8s_spec.activeDeadlineSeconds}s)" if k8s_spec is not None else ""
        return failed(
            "DeadlineExceeded",
            f"Pod {name} ran longer than spec.kubernetes.activeDeadlineSeconds{limit} and was stopped{saved}",
        )
    clone_term = _terminated(clone)
    if clone_term is not None and clone_term.get("exitCode", 0) != 0:
        if clone_term.get("reason") == "OOMKilled":
            return failed("OOMKilled", f"the {CLONE_CONTAINER} container of Pod {name} ran out of memory")
        line = _last_line(clone_term.get("message")) or (
            f"no message; see kubectl logs -n {polecat.metadata.namespace} {name} -c {CLONE_CONTAINER}"
        )
        return failed(
            "CloneFailed", f"{CLONE_CONTAINER} failed (exit code {clone_term.get('exitCode')}): {line}"
        )
    if agent_term is not None and agent_term.get("reason") == "OOMKilled":
        return failed(
            "OOMKilled",
            f"the agent container of Pod {name} ran out of memory: raise "
            f"spec.kubernetes.resources.limits.memory{saved}",
        )
    if agent_term is not None and agent_term.get("exitCode", 0) != 0:
        code = report_exit_code(agent_term.get("message"))
        if report is not None and code == 0 and not report.pushed:
            return failed("PushFailed", f"the agent succeeded but its work was not pushed: {report.message}")
        if report is not None and code is not None:
            return failed("AgentFailed", f"the agent exited with code {code}{saved}")
        line = _last_line(agent_term.get("message"))
        detail = f": {line}" if line else ""
        return failed(
            "AgentFailed",
            f"the agent container exited with code {agent_term.get('exitCode')}{detail}",
        )
    if status.get("reason") == "Evicted":
        return failed("Evicted", f"Pod {name} was evicted: {status.get('message') or 'no message'}{saved}")
    detail = status.get("message") or status.get("reason") or "no reason given by Kubernetes"
    return failed("PodFailed", f"Pod {name} failed: {detail}{saved}")
