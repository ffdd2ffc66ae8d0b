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
    assert ex.needs_finalizer is False


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


async def test_release_is_immediate() -> None:
    release = await executor({}).release(polecat(), force=False)
    assert release.done is True


def test_attach_command() -> None:
    assert executor({}).attach_command(polecat()) == [
        "kubectl",
        "logs",
        "--follow",
        "--namespace",
        "team-a",
        "pod/polecat-fix-login",
        "--container",
        "agent",
    ]


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
