"""KubernetesExecutor paths that need no apiserver: cache reads, ownership, error mapping.

The API paths (create, 409, reference checks, delete, logs) run against the real
apiserver in tests/integration/test_pod_on_lab.py.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest

from gastown.api.models import Phase
from gastown.executors.base import Executor, TransientError, UserError
from gastown.executors.kubernetes.executor import KubernetesExecutor, api_error
from gastown.executors.kubernetes.pod import ANNOTATION_STOP
from gastown.kube import KubeClient
from gastown.kube import api_error as http_error
from gastown.settings import PodDefaults
from tests.unit.executors.kubernetes.polecats import UID, polecat


class _NoApi:
    """Stands in for the apiserver client on paths that must not call the API: any use fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the API was used ({name}) on a path that must only read the cache")


def executor(pods: dict[tuple[str, str], dict[str, Any]]) -> KubernetesExecutor:
    return KubernetesExecutor(
        cast(KubeClient, _NoApi()), lambda ns, name: pods.get((ns, name)), PodDefaults()
    )


def running_pod(owner_uid: str | None = UID, kind: str = "Polecat") -> dict[str, Any]:
    refs = [{"kind": kind, "uid": owner_uid, "controller": True}] if owner_uid else []
    return {
        "metadata": {
            "name": "polecat-fix-login",
            "namespace": "team-a",
            "uid": "p1",
            "ownerReferences": refs,
        },
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running"},
    }


def test_is_an_executor() -> None:
    ex: Executor = executor({})
    # A deletion stops the Pod and records its result first; the finalizer comes with the Pod create.
    assert ex.needs_finalizer is True
    assert ex.finalizer_with_dispatch is True


async def test_observe_reads_the_cache() -> None:
    ex = executor({("team-a", "polecat-fix-login"): running_pod()})
    obs = await ex.observe(polecat())
    assert obs.phase is Phase.WORKING
    assert (await executor({}).observe(polecat())).phase is None


async def test_a_stale_pod_of_an_earlier_polecat_is_waited_out() -> None:
    ex = executor({("team-a", "polecat-fix-login"): running_pod(owner_uid="older-uid")})
    obs = await ex.observe(polecat())
    assert obs.phase is None and obs.reason == "StalePod"
    with pytest.raises(TransientError) as err:
        await ex.dispatch(polecat())
    assert err.value.reason == "StalePod"


async def test_a_foreign_pod_with_our_name_is_a_user_problem() -> None:
    ex = executor({("team-a", "polecat-fix-login"): running_pod(owner_uid=None)})
    obs = await ex.observe(polecat())
    assert (obs.phase, obs.reason) == (Phase.STUCK, "PodNameTaken")
    with pytest.raises(UserError) as err:
        await ex.dispatch(polecat())
    assert "polecat-fix-login" in err.value.message and "does not own" in err.value.message
    other_owner = executor({("team-a", "polecat-fix-login"): running_pod(kind="Job")})
    assert (await other_owner.observe(polecat())).reason == "PodNameTaken"


async def test_dispatch_with_the_pod_cached_does_not_create() -> None:
    ex = executor({("team-a", "polecat-fix-login"): running_pod()})
    obs = await ex.dispatch(polecat())
    assert obs.phase is Phase.WORKING


@pytest.mark.parametrize("phase", ["Done", "Failed", "Terminated"])
async def test_finished_work_is_not_recreated(phase: str) -> None:
    done = polecat(
        status={
            "phase": phase,
            "result": {"branch": "polecat/fix-login", "commit": "abc", "pushed": True},
        }
    )
    obs = await executor({}).dispatch(done)
    assert obs.phase == Phase(phase)
    assert obs.reason == "PodGone"
    assert obs.result is not None and obs.result.commit == "abc"


async def test_release_without_a_pod_is_immediate() -> None:
    release = await executor({}).release(polecat(), force=False)
    assert release.done is True


KEY = ("team-a", "polecat-fix-login")


def ended_pod(phase: str, message: str, *, stopped: bool = True) -> dict[str, Any]:
    pod = running_pod()
    pod["status"] = {
        "phase": phase,
        "reason": "DeadlineExceeded" if phase == "Failed" else None,
        "containerStatuses": [
            {
                "name": "agent",
                "state": {
                    "terminated": {"exitCode": 0, "message": message, "startedAt": "2026-01-01T00:00:00Z"}
                },
            }
        ],
    }
    if stopped:
        pod["metadata"]["annotations"] = {ANNOTATION_STOP: "Delete"}
    return pod


PUSHED = orjson.dumps({"pushed": True, "branch": "polecat/fix-login", "commit": "c" * 40}).decode()
REFUSED = orjson.dumps({"pushed": False, "branch": "polecat/fix-login", "message": "hook declined"}).decode()


async def test_release_of_finished_work_is_immediate_and_calls_nothing() -> None:
    finished = polecat(status={"phase": "Failed"})
    assert (await executor({KEY: running_pod()}).release(finished, force=False)).done is True
    forced = await executor({KEY: running_pod()}).release(polecat(), force=True)
    assert forced.done is True and "unpushed work" in forced.message


async def test_release_of_a_stopped_and_pushed_pod_records_its_result() -> None:
    release = await executor({KEY: ended_pod("Failed", PUSHED)}).release(polecat(), force=False)
    assert release.done is True
    assert release.observation is not None and release.observation.phase is Phase.TERMINATED
    assert release.observation.result is not None and release.observation.result.pushed is True


async def test_release_of_unpushed_work_is_held_saying_what_to_do() -> None:
    release = await executor({KEY: ended_pod("Failed", REFUSED)}).release(polecat(), force=False)
    assert (release.done, release.reason) == (False, "WorkNotSaved")
    assert "hook declined" in release.message
    assert "gastown logs -n team-a fix-login" in release.message
    assert "kubectl logs -n team-a pod/polecat-fix-login -c agent" in release.message
    assert "gastown.gastown.io/force-delete=true" in release.message and "LOSES" in release.message
    assert release.observation is not None and release.observation.result is not None
    assert release.observation.result.pushed is False


async def test_a_deletion_held_for_unpushed_work_stays_held_once_the_status_is_terminal() -> None:
    """The status written while held is terminal (Terminated): that is not "ended before"."""
    held = polecat(status={"phase": "Terminated"})
    release = await executor({KEY: ended_pod("Failed", REFUSED)}).release(held, force=False)
    assert (release.done, release.reason) == (False, "WorkNotSaved")
    # Ended before the deletion (stopped by Terminate, or on its own): released at once.
    terminated = ended_pod("Failed", REFUSED)
    terminated["metadata"]["annotations"] = {ANNOTATION_STOP: "Terminate"}
    assert (await executor({KEY: terminated}).release(held, force=False)).done is True


async def test_release_of_a_pod_that_succeeded_without_a_report_goes_unconfirmed() -> None:
    """kwok in the lab: Succeeded (or stopped, exit 0) and no termination message. Released, saying so."""
    release = await executor({KEY: ended_pod("Succeeded", "", stopped=False)}).release(polecat(), force=False)
    assert (release.done, release.reason) == (True, "NoResultReported")
    assert "not confirmed" in release.message
    stopped_clean = await executor({KEY: ended_pod("Failed", "")}).release(polecat(), force=False)
    assert (stopped_clean.done, stopped_clean.reason) == (True, "NoResultReported")
    killed = ended_pod("Failed", "")
    killed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 137
    held = await executor({KEY: killed}).release(polecat(), force=False)
    assert (held.done, held.reason) == (False, "WorkNotSaved")


async def test_release_while_the_stop_is_under_way_waits_without_calls() -> None:
    stopping = running_pod()
    stopping["metadata"]["annotations"] = {ANNOTATION_STOP: "Delete"}
    release = await executor({KEY: stopping}).release(polecat(), force=False)
    assert (release.done, release.reason) == (False, "Stopping")
    assert "saving the work to branch polecat/fix-login" in release.message
    assert release.observation is not None and release.observation.stopping
    # Terminate is just as idempotent: a Pod already stopping is not patched again.
    observation = await executor({KEY: stopping}).terminate(polecat())
    assert (observation.phase, observation.reason) == (Phase.WORKING, "Stopping")


def test_attach_command() -> None:
    assert executor({}).attach_command(polecat()) == [
        "kubectl", "attach", "-it", "--namespace", "team-a", "pod/polecat-fix-login", "--container", "agent",
    ]  # fmt: skip
    assert executor({}).attach_command(polecat(), shell="/bin/sh") == [
        "kubectl", "exec", "-it", "--namespace", "team-a", "pod/polecat-fix-login", "--container", "agent",
        "--", "/bin/sh",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (400, UserError, "Invalid"),
        (403, UserError, "Forbidden"),
        (404, UserError, "NotFound"),
        (422, UserError, "Invalid"),
        (401, UserError, "Forbidden"),
        (409, TransientError, "ApiError"),
        (429, TransientError, "TooManyRequests"),
        (500, TransientError, "ApiError"),
        (503, TransientError, "ApiError"),
        (504, TransientError, "ApiError"),
    ],
)
def test_api_error_mapping(status: int, kind: type[Exception], reason: str) -> None:
    body = orjson.dumps({"message": 'pods "p" is forbidden: violates PodSecurity'})
    err = api_error(http_error(status, "", body), "creating Pod p")
    assert isinstance(err, kind)
    assert err.reason == reason
    assert err.message == 'creating Pod p failed: pods "p" is forbidden: violates PodSecurity'


def test_api_error_without_body() -> None:
    assert api_error(http_error(502, "Bad Gateway", b"{}"), "doing x").message == "doing x failed: HTTP 502"


def test_a_connection_fault_is_transient() -> None:
    err = api_error(TimeoutError(), "creating Pod p")
    assert isinstance(err, TransientError)
    assert err.reason == "ApiUnreachable"


async def test_dispatch_refuses_what_the_policy_does_not_allow_without_calling_the_api() -> None:
    """The webhook can be down or disabled: the executor checks the policy again, before any Pod."""
    defaults = PodDefaults(allowed_images=["registry.example.com/agents/*"])
    ex = KubernetesExecutor(cast(KubeClient, _NoApi()), lambda ns, name: None, defaults)
    with pytest.raises(UserError) as err:
        await ex.dispatch(polecat(image="docker.io/evil/miner:1.0", serviceAccountName="default"))
    assert err.value.reason == "NotAllowedByPolicy"
    message = err.value.message
    assert message.startswith("spec.kubernetes.image: image 'docker.io/evil/miner:1.0' is not allowed")
    assert "; spec.kubernetes.serviceAccountName: ServiceAccount 'default' is not allowed" in message
