"""Pod → Polecat phase: every row of the observer's table, in kubelet and kwok shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gastown.api.models import Phase
from gastown.executors.kubernetes.observer import observe_pod, parse_report, slim_pod
from gastown.executors.kubernetes.pod import ANNOTATION_STOP
from tests.unit.executors.kubernetes.polecats import UID, polecat

REPORT = {
    "branch": "polecat/fix-login",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "pushed": True,
    "agentExitCode": 0,
    "message": "the agent succeeded; committed its changes and pushed 0123456789ab to polecat/fix-login",
}


def pod(
    phase: str,
    *,
    init: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
    reason: str | None = None,
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    node: str | None = "node-1",
    deleting: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if conditions:
        status["conditions"] = conditions
    if init is not None:
        status["initContainerStatuses"] = [{"name": "git-clone", "state": init}]
    if agent is not None:
        status["containerStatuses"] = [{"name": "agent", "state": agent}]
    meta: dict[str, Any] = {
        "name": "polecat-fix-login",
        "namespace": "team-a",
        "uid": "pod-uid",
        "ownerReferences": [{"kind": "Polecat", "uid": UID, "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    out: dict[str, Any] = {"metadata": meta, "status": status}
    if node:
        out["spec"] = {"nodeName": node}
    return out


def terminated(code: int, reason: str = "", message: str = "") -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": code}
    if reason:
        term["reason"] = reason
    if message:
        term["message"] = message
    return {"terminated": term}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


DONE_CLONE = terminated(0, "Completed")


def test_no_pod_means_no_phase() -> None:
    obs = observe_pod(None, polecat())
    assert obs.phase is None and obs.reason == "PodNotFound"


@pytest.mark.parametrize(
    ("the_pod", "reason"),
    [
        (pod("Pending", node=None), "PodPending"),
        (
            pod("Pending", init=waiting("PodInitializing"), agent=waiting("PodInitializing")),
            "ContainerCreating",
        ),
        (pod("Pending", init={"running": {}}, agent=waiting("PodInitializing")), "Cloning"),
        (pod("Pending", init=DONE_CLONE, agent=waiting("ContainerCreating")), "ContainerCreating"),
    ],
)
def test_pending_is_dispatching(the_pod: dict[str, Any], reason: str) -> None:
    obs = observe_pod(the_pod, polecat())
    assert (obs.phase, obs.reason) == (Phase.DISPATCHING, reason)
    assert obs.kubernetes is not None and obs.kubernetes.podName == "polecat-fix-login"


def test_unschedulable_says_why() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    }
    obs = observe_pod(pod("Pending", conditions=[cond], node=None), polecat())
    assert (obs.phase, obs.reason) == (Phase.DISPATCHING, "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in obs.message


@pytest.mark.parametrize(
    ("container", "reason", "k8s_message"),
    [
        ("agent", "ImagePullBackOff", 'Back-off pulling image "registry.example/agent:nope"'),
        ("agent", "ErrImagePull", "rpc error: code = NotFound desc = failed to pull and unpack image"),
        ("agent", "CreateContainerConfigError", 'secret "agent-api-key" not found'),
        (
            "git-clone",
            "CreateContainerConfigError",
            "couldn't find key ssh-privatekey in Secret team-a/git-key",
        ),
        ("git-clone", "InvalidImageName", 'Failed to apply default image tag "Bad Image"'),
    ],
)
def test_cannot_start_is_stuck_with_kubernetes_message(container: str, reason: str, k8s_message: str) -> None:
    if container == "agent":
        the_pod = pod("Pending", init=DONE_CLONE, agent=waiting(reason, k8s_message))
    else:
        the_pod = pod("Pending", init=waiting(reason, k8s_message), agent=waiting("PodInitializing"))
    obs = observe_pod(the_pod, polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, reason)
    assert k8s_message in obs.message and container in obs.message


def test_running_is_working() -> None:
    obs = observe_pod(pod("Running", init=DONE_CLONE, agent={"running": {"startedAt": "x"}}), polecat())
    assert (obs.phase, obs.reason) == (Phase.WORKING, "PodRunning")
    assert obs.kubernetes is not None
    assert (obs.kubernetes.podPhase, obs.kubernetes.nodeName) == ("Running", "node-1")


def test_running_while_deleted_is_still_working() -> None:
    obs = observe_pod(pod("Running", agent={"running": {}}, deleting=True), polecat())
    assert (obs.phase, obs.reason) == (Phase.WORKING, "PodTerminating")


def test_running_on_a_lost_node_is_stuck() -> None:
    """The node lifecycle controller's mark (Ready False, reason kept empty) on a Running Pod."""
    lost = [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]
    obs = observe_pod(pod("Running", agent={"running": {}}, conditions=lost), polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, "NodeNotReady")
    assert "node-1" in obs.message and "stopped reporting" in obs.message
    # ... also while the Pod is being deleted (nobody is left to finish the deletion).
    obs = observe_pod(pod("Running", agent={"running": {}}, conditions=lost, deleting=True), polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, "NodeNotReady")


@pytest.mark.parametrize("reason", ["ContainersNotReady", "PodCompleted"])
def test_running_not_ready_by_the_kubelet_is_still_working(reason: str) -> None:
    """A kubelet's own Ready False (a container already exited, the Pod not yet final)."""
    cond = [{"type": "Ready", "status": "False", "reason": reason}]
    obs = observe_pod(pod("Running", agent={"running": {}}, conditions=cond), polecat())
    assert obs.phase == Phase.WORKING


def test_unknown_is_stuck() -> None:
    obs = observe_pod(pod("Unknown"), polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, "PodUnknown")


def test_succeeded_with_report_is_done_with_result() -> None:
    obs = observe_pod(
        pod("Succeeded", init=DONE_CLONE, agent=terminated(0, "Completed", json.dumps(REPORT))), polecat()
    )
    assert (obs.phase, obs.reason) == (Phase.DONE, "Succeeded")
    assert obs.result is not None
    assert obs.result.branch == REPORT["branch"]
    assert obs.result.commit == REPORT["commit"]
    assert obs.result.pushed is True
    assert obs.result.message == REPORT["message"]
    assert "0123456789ab" in obs.message


def test_succeeded_without_report_is_done_but_unconfirmed() -> None:
    """kwok (no kubelet, no runner) finishes Pods without a termination message."""
    obs = observe_pod(pod("Succeeded", init=DONE_CLONE, agent=terminated(0, "Completed")), polecat())
    assert (obs.phase, obs.reason) == (Phase.DONE, "NoResultReported")
    assert obs.result is not None
    assert obs.result.pushed is None
    assert obs.result.branch == "polecat/fix-login"
    assert "not confirmed" in obs.message


def test_succeeded_with_unpushed_report_is_failed() -> None:
    report = {**REPORT, "pushed": False, "message": "origin rejected the push"}
    obs = observe_pod(pod("Succeeded", agent=terminated(0, "Completed", json.dumps(report))), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "PushFailed")
    assert "origin rejected the push" in obs.message


def test_clone_failure_carries_its_last_line() -> None:
    message = (
        "Cloning into '/workspace/repo'...\n"
        "host key for github.com not in known_hosts ConfigMap git-known-hosts: add it\n"
    )
    the_pod = pod("Failed", init=terminated(1, "Error", message), agent=waiting("PodInitializing"))
    obs = observe_pod(the_pod, polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "CloneFailed")
    assert obs.message.endswith(
        "host key for github.com not in known_hosts ConfigMap git-known-hosts: add it"
    )
    assert "exit code 1" in obs.message


def test_clone_failure_without_message_points_at_the_logs() -> None:
    obs = observe_pod(pod("Failed", init=terminated(128, "Error")), polecat())
    assert obs.reason == "CloneFailed"
    assert "kubectl logs -n team-a polecat-fix-login -c git-clone" in obs.message


def test_deadline_exceeded_keeps_what_was_pushed() -> None:
    report = {**REPORT, "agentExitCode": 143}
    the_pod = pod(
        "Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        init=DONE_CLONE,
        agent=terminated(1, "Error", json.dumps(report)),
    )
    obs = observe_pod(the_pod, polecat(activeDeadlineSeconds=600))
    assert (obs.phase, obs.reason) == (Phase.FAILED, "DeadlineExceeded")
    assert "activeDeadlineSeconds (600s)" in obs.message
    assert obs.result is not None and obs.result.pushed is True
    assert "pushed to polecat/fix-login" in obs.message


def test_oom_killed() -> None:
    obs = observe_pod(pod("Failed", init=DONE_CLONE, agent=terminated(137, "OOMKilled")), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "OOMKilled")
    assert "resources.limits.memory" in obs.message


def test_agent_failure_reports_exit_code_and_saved_work() -> None:
    report = {**REPORT, "agentExitCode": 3, "message": "the agent exited with code 3; ..."}
    obs = observe_pod(
        pod("Failed", init=DONE_CLONE, agent=terminated(1, "Error", json.dumps(report))), polecat()
    )
    assert (obs.phase, obs.reason) == (Phase.FAILED, "AgentFailed")
    assert "code 3" in obs.message and "pushed to polecat/fix-login at 0123456789ab" in obs.message
    assert obs.result is not None and obs.result.pushed is True


def test_push_failure_after_agent_success() -> None:
    report = {**REPORT, "pushed": False, "message": "host key for github.com not in known_hosts"}
    obs = observe_pod(pod("Failed", agent=terminated(1, "Error", json.dumps(report))), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "PushFailed")
    assert "host key for github.com" in obs.message


def test_agent_failure_without_report_uses_the_log_line() -> None:
    """FallbackToLogsOnError: the message is the log tail, e.g. a custom image's crash."""
    obs = observe_pod(pod("Failed", agent=terminated(2, "Error", "Traceback...\nKeyError: 'x'\n")), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "AgentFailed")
    assert obs.message == "the agent container exited with code 2: KeyError: 'x'"
    assert obs.result is None


def test_kwok_failure_shape() -> None:
    """kwok's pod-finished stage: exit code from an annotation, message maybe empty."""
    obs = observe_pod(pod("Failed", init=DONE_CLONE, agent=terminated(1, "Error", "")), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "AgentFailed")
    assert "code 1" in obs.message


def test_evicted() -> None:
    obs = observe_pod(
        pod("Failed", reason="Evicted", message="The node was low on resource: ephemeral-storage."), polecat()
    )
    assert (obs.phase, obs.reason) == (Phase.FAILED, "Evicted")
    assert "ephemeral-storage" in obs.message


def test_other_failure() -> None:
    obs = observe_pod(pod("Failed", message="something odd"), polecat())
    assert (obs.phase, obs.reason) == (Phase.FAILED, "PodFailed")
    assert "something odd" in obs.message


@pytest.mark.parametrize(
    "message",
    ["", "not json", "[1, 2]", '{"pushed": "yes"}', '{"branch": "x"}', "null"],
)
def test_parse_report_rejects_what_is_not_a_report(message: str) -> None:
    assert parse_report(message) is None


def test_slim_pod_keeps_only_what_is_read() -> None:
    full = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "polecat-fix-login",
            "namespace": "team-a",
            "uid": "u1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"a": "b"},
            "annotations": {"big": "x" * 10000},
            "ownerReferences": [{"kind": "Polecat", "uid": UID, "controller": True}],
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "agent", "env": [{"name": "GASTOWN_TASK"}]}]},
        "status": {
            "phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "too long",
            "startTime": "2026-01-01T00:00:01Z",
            "hostIP": "10.0.0.1",
            "podIPs": [{"ip": "10.1.0.1"}],
            "conditions": [
                {"type": "Ready", "status": "False", "lastProbeTime": None, "reason": "PodFailed"}
            ],
            "initContainerStatuses": [
                {
                    "name": "git-clone",
                    "image": "i",
                    "imageID": "sha",
                    "state": {"terminated": {"exitCode": 0}},
                }
            ],
            "containerStatuses": [
                {
                    "name": "agent",
                    "image": "i",
                    "ready": False,
                    "state": {
                        "terminated": {"exitCode": 1, "reason": "Error", "message": "m", "containerID": "c"}
                    },
                    "lastState": {"waiting": {"reason": "X", "message": "y"}},
                }
            ],
        },
    }
    slim = slim_pod(full)
    assert slim == {
        "metadata": {
            "name": "polecat-fix-login",
            "namespace": "team-a",
            "uid": "u1",
            "labels": {"a": "b"},
            "ownerReferences": [{"kind": "Polecat", "uid": UID, "controller": True}],
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "too long",
            "startTime": "2026-01-01T00:00:01Z",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodFailed"}],
            "initContainerStatuses": [{"name": "git-clone", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {
                    "name": "agent",
                    "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "m"}},
                    "lastState": {"waiting": {"reason": "X", "message": "y"}},
                }
            ],
        },
    }
    # The observer reads a slim Pod exactly as it reads the full one.
    assert observe_pod(slim, polecat()) == observe_pod(full, polecat())


def test_slim_pod_of_a_fresh_pod() -> None:
    slim = slim_pod({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": []}})
    assert slim == {"metadata": {"name": "p", "namespace": "n"}, "status": {}}
    assert observe_pod(slim, polecat()).phase is Phase.DISPATCHING


# -- stopped on request, lost nodes ------------------------------------------------------


def stopped_pod(phase: str, **kwargs: Any) -> dict[str, Any]:
    the_pod = pod(phase, **kwargs)
    the_pod["metadata"]["annotations"] = {ANNOTATION_STOP: "Terminate"}
    return the_pod


def test_slim_pod_keeps_the_stop_mark_and_readys_transition_time() -> None:
    wire = pod("Running", agent={"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    wire["metadata"]["annotations"] = {ANNOTATION_STOP: "Delete", "other": "dropped"}
    wire["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]
    slim = slim_pod(wire)
    assert slim["metadata"]["annotations"] == {ANNOTATION_STOP: "Delete"}
    ready, scheduled = slim["status"]["conditions"]
    assert ready["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert "lastTransitionTime" not in scheduled


def test_running_after_a_stop_request_is_stopping() -> None:
    obs = observe_pod(stopped_pod("Running", init=DONE_CLONE, agent={"running": {}}), polecat())
    assert (obs.phase, obs.reason, obs.stopping) == (Phase.WORKING, "Stopping", True)
    assert obs.message == "stopping on request: the runner is saving the work to branch polecat/fix-login"


def deadline_killed(message: str = "", **kwargs: Any) -> dict[str, Any]:
    agent = {"terminated": {"exitCode": 143, "message": message, "startedAt": "2026-01-01T00:00:00Z"}}
    return stopped_pod("Failed", init=DONE_CLONE, agent=agent, reason="DeadlineExceeded", **kwargs)


def test_stopped_and_pushed_is_terminated_with_the_result() -> None:
    report = json.dumps({"pushed": True, "branch": "polecat/fix-login", "commit": "a" * 40, "message": "ok"})
    obs = observe_pod(deadline_killed(report), polecat())
    assert (obs.phase, obs.reason) == (Phase.TERMINATED, "Stopped")
    assert obs.result is not None and obs.result.pushed is True and obs.result.commit == "a" * 40
    assert obs.work_saved is not None and (obs.work_saved.status, obs.work_saved.reason) == ("True", "Pushed")
    assert "commit aaaaaaaaaaaa is on branch polecat/fix-login" in obs.message


def test_stopped_but_not_pushed_says_why() -> None:
    report = json.dumps(
        {"pushed": False, "branch": "polecat/fix-login", "message": "origin refused the push"}
    )
    obs = observe_pod(deadline_killed(report), polecat())
    assert (obs.phase, obs.reason) == (Phase.TERMINATED, "Stopped")
    assert obs.result is not None and obs.result.pushed is False
    assert obs.work_saved is not None and (obs.work_saved.status, obs.work_saved.reason) == (
        "False",
        "PushFailed",
    )
    assert "NOT pushed" in obs.message and "origin refused the push" in obs.message


def test_stopped_without_a_report_is_not_confirmed() -> None:
    """Killed (143) with no report: the runner may have lost the work (False). Exit 0 with no
    report: no runner, an agent that stopped cleanly (kwok, a custom image): Unknown."""
    obs = observe_pod(deadline_killed(""), polecat())
    assert obs.phase is Phase.TERMINATED
    assert obs.work_saved is not None and obs.work_saved.reason == "NoResultReported"
    assert obs.work_saved.status == "False"
    assert obs.result is not None and obs.result.pushed is None
    clean = deadline_killed("")
    clean["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 0
    unconfirmed = observe_pod(clean, polecat())
    assert unconfirmed.work_saved is not None and unconfirmed.work_saved.status == "Unknown"


def test_stopped_before_the_agent_started_had_nothing_to_save() -> None:
    the_pod = stopped_pod(
        "Failed", init={"running": {}}, agent=waiting("PodInitializing"), reason="DeadlineExceeded"
    )
    obs = observe_pod(the_pod, polecat())
    assert obs.phase is Phase.TERMINATED
    assert obs.work_saved is not None and (obs.work_saved.status, obs.work_saved.reason) == (
        "True",
        "NothingToSave",
    )


def test_an_own_deadline_without_a_stop_request_is_still_failed() -> None:
    the_pod = pod("Failed", init=DONE_CLONE, agent=terminated(143), reason="DeadlineExceeded")
    assert observe_pod(the_pod, polecat()).phase is Phase.FAILED


def test_a_lost_node_says_since_when() -> None:
    lost = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:05:00Z"}]
    obs = observe_pod(pod("Running", agent={"running": {}}, conditions=lost), polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, "NodeNotReady")
    assert obs.node_lost_since == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert "2026-01-01T00:05:00Z" in obs.message and "agent's state is unknown" in obs.message
    assert obs.stopping is False
    stopping = observe_pod(stopped_pod("Running", agent={"running": {}}, conditions=lost), polecat())
    assert (stopping.reason, stopping.stopping) == ("NodeNotReady", True)
