"""`gastown rig ...` and `gastown convoy ...` against the real test lab's apiserver.

The Rig, Convoy and Polecat CRDs are installed from crds/ (tests/support/crd.py). No
operator runs here: the Rig and Convoy controllers are built separately, so where a
command needs their work (counts, bead results, the Complete condition, capacity) the
TEST stands in for them by writing status through the status subresource and Events
through events.k8s.io/v1, the API calls the controllers make. What is under test is the
CLI: what it sends, what it reads, and that `convoy watch` follows a real watch (each
status is written only after the previous one has been printed, so every line is a
change the watch delivered, not an end state read once).

Short commands run in-process with click's CliRunner in a worker thread; `convoy watch`
and `convoy create --watch` run as real processes so the test can read their lines as
they come.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kubernetes_asyncio import client

from gastown.api.models import GROUP, VERSION
from gastown.cli.errors import ExitCode
from gastown.cli.user import main
from gastown.controller.events import build_event
from gastown.devcluster.lab import Lab
from tests.unit.webhook.invalid_examples import EXAMPLES

pytestmark = pytest.mark.lab

GASTOWN = Path(sys.executable).with_name("gastown")


async def gastown(lab: Lab, *args: str) -> Result:
    """Run the CLI in-process (in a thread: it runs its own event loop) against the lab."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, ["--kubeconfig", str(lab.kubeconfig), *args])


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }


async def set_status(
    api: client.ApiClient, namespace: str, plural: str, name: str, status: dict[str, Any]
) -> None:
    """Stand in for a controller: write status through the status subresource."""
    await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": status},
        _content_type="application/merge-patch+json", _request_timeout=30,
    )  # fmt: skip


async def create(api: client.ApiClient, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, _request_timeout=30
    )
    return result


def polecat(name: str, rig: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": name},
        "spec": {"rig": rig, "beadID": f"gt-{name}", "local": {"dispatcher": "tmux", "command": "agent"}},
    }


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), f"expected one line, got {text!r}"
    assert "Traceback" not in text
    return text.rstrip("\n")


def rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines()[1:]}


class Process:
    """A real `gastown` process whose stdout lines are read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line_with(self, words: str, timeout: float = 60) -> str:
        """The next stdout line containing ``words`` (earlier lines are kept in ``lines``)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                assert raw, f"the command ended before printing {words!r}; so far: {self.lines}"
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if words in line:
                    return line

    async def finish(self, timeout: float = 60) -> tuple[int, list[str], str]:
        """(exit code, every stdout line, stderr) once the process ends by itself."""
        async with asyncio.timeout(timeout):
            out, err = await self.proc.communicate()
        self.lines += out.decode().splitlines()
        return self.proc.returncode or 0, self.lines, err.decode()


@asynccontextmanager
async def run(lab: Lab, *args: str) -> AsyncIterator[Process]:
    proc = await asyncio.create_subprocess_exec(
        str(GASTOWN), "--kubeconfig", str(lab.kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield Process(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------------------
# rig
# --------------------------------------------------------------------------------------
async def test_rig_create_list_and_describe(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    quick = await gastown(
        lab, "-n", namespace, "rig", "create", "webapp", "--mode", "kubernetes",
        "--repo", "git@github.com:example/gastown.git", "--git-secret", "repo-deploy-key",
        "--agent-secret", "agent-api-key", "--max-active", "2",
    )  # fmt: skip
    assert quick.exit_code == 0, quick.output
    assert quick.stdout == f"rig.gastown.gastown.io/webapp created in namespace {namespace}\n"
    from_file = await gastown(
        lab, "-n", namespace, "rig", "create", "-f", str(EXAMPLES / "fleet-local" / "rig.yaml")
    )
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == f"rig.gastown.gastown.io/scratch created in namespace {namespace}\n"

    # The Rig controller's part, played by the test: status and the rig's Polecats.
    await set_status(k8s_api, namespace, "rigs", "webapp", {"activePolecats": 2, "waitingPolecats": 1})
    for name, phase in (("w-1", "Working"), ("w-2", "Dispatching"), ("w-3", None), ("other", "Working")):
        await create(
            k8s_api, namespace, "polecats", polecat(name, "scratch" if name == "other" else "webapp")
        )
        if phase:
            await set_status(k8s_api, namespace, "polecats", name, {"phase": phase})
    waiting = cond(
        "Dispatched", "False", "RigAtCapacity", "rig webapp allows 2 active Polecats; 2 are active"
    )
    await set_status(k8s_api, namespace, "polecats", "w-3", {"phase": "Pending", "conditions": [waiting]})

    listed = await gastown(lab, "-n", namespace, "rig", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split() == ["NAME", "MODE", "MAX", "ACTIVE", "WAITING", "AGE"]
    table = rows(listed.stdout)
    assert table["webapp"][:5] == ["webapp", "kubernetes", "2", "2", "1"]
    assert table["scratch"][:5] == ["scratch", "local", "2", "-", "-"]

    described = await gastown(lab, "-n", namespace, "rig", "describe", "webapp")
    assert described.exit_code == 0, described.output
    lines = [" ".join(line.split()) for line in described.stdout.splitlines()]
    assert "Defaults (kubernetes):" in lines
    assert "Repository: git@github.com:example/gastown.git" in lines
    assert "Agent Secret: agent-api-key (key api-key)" in lines
    capacity = lines[lines.index("Capacity:") + 1 : lines.index("Capacity:") + 4]
    assert capacity == ["Max Active: 2", "Active: 2", "Waiting: 1"]
    block = lines[lines.index("Polecats (3):") + 1 : lines.index("Polecats (3):") + 5]
    assert block == ["PHASE COUNT POLECATS", "Pending 1 w-3", "Dispatching 1 w-2", "Working 1 w-1"]
    assert "other" not in described.stdout

    as_json = json.loads((await gastown(lab, "-n", namespace, "rig", "list", "-o", "json")).stdout)
    assert [(i["kind"], i["metadata"]["name"]) for i in as_json["items"]] == [
        ("Rig", "scratch"),
        ("Rig", "webapp"),
    ]

    missing = await gastown(lab, "-n", namespace, "rig", "describe", "nope")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert one_line(missing.stderr) == f'gastown: Rig "nope" in namespace "{namespace}" not found'
    again = await gastown(lab, "-n", namespace, "rig", "create", "webapp")
    assert again.exit_code == ExitCode.FAILED and "already exists" in one_line(again.stderr)


# --------------------------------------------------------------------------------------
# convoy create / list / describe
# --------------------------------------------------------------------------------------
async def test_convoy_create_list_and_describe(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    empty = await gastown(lab, "-n", namespace, "convoy", "list")
    assert empty.exit_code == 0 and empty.stdout == "", empty.output
    assert empty.stderr == f"No Convoys found in namespace {namespace}.\n"

    quick = await gastown(
        lab, "-n", namespace, "convoy", "create", "batch-1", "--rig", "gastown",
        "--bead", "gt-abc12=Fix the login bug", "--bead", "gt-def34=Add rate limiting", "--bead", "gt-ghi56",
        "--task", "Tidy up", "--parallelism", "2", "--failure-policy", "Stop", "--max-failures", "1",
        "--ttl", "60",
    )  # fmt: skip
    assert quick.exit_code == 0, quick.output
    assert quick.stdout == f"convoy.gastown.gastown.io/batch-1 created in namespace {namespace}\n"
    path = EXAMPLES / "fleet-kubernetes" / "convoy.yaml"
    from_file = await gastown(lab, "-n", namespace, "convoy", "create", "-f", str(path))
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == f"convoy.gastown.gastown.io/webapp-sprint created in namespace {namespace}\n"

    stored = await client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "convoys", "batch-1"
    )
    assert stored["spec"]["beads"][0] == {"beadID": "gt-abc12", "task": "Fix the login bug"}
    assert (stored["spec"]["parallelism"], stored["spec"]["failurePolicy"]) == (2, "Stop")
    assert stored["spec"]["ttlSecondsAfterFinished"] == 60

    # The Convoy controller's part, played by the test.
    started = now()
    await set_status(
        k8s_api, namespace, "convoys", "batch-1",
        {
            "total": 3, "startTime": started, "counts": {"done": 1, "failed": 1, "working": 1},
            "beads": [
                {"beadID": "gt-abc12", "polecat": "batch-1-1", "phase": "Done", "branch": "polecat/batch-1-1",
                 "commit": "abc1234", "completionTime": started},
                {"beadID": "gt-def34", "polecat": "batch-1-2", "phase": "Failed", "reason": "CloneFailed"},
                {"beadID": "gt-ghi56", "polecat": "batch-1-3", "phase": "Working"},
            ],
            "conditions": [
                cond("Ready", "False", "FailureLimitReached", "1 of 1 allowed failures: no new Polecats"),
                cond("Complete", "False", "Working", "1 bead still working"),
            ],
        },
    )  # fmt: skip
    obj = await client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "convoys", "batch-1"
    )
    event = build_event(
        obj, type="Warning", reason="BeadFailed", note="gt-def34: polecat batch-1-2 Failed (CloneFailed)",
        action="Reconcile", instance="test", now=datetime.now(UTC),
    )  # fmt: skip
    await client.EventsV1Api(k8s_api).create_namespaced_event(namespace, event, _request_timeout=30)

    listed = await gastown(lab, "-n", namespace, "convoy", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split() == [
        "NAME", "RIG", "DONE", "WORKING", "PENDING", "FAILED", "STATE", "AGE",
    ]  # fmt: skip
    table = rows(listed.stdout)
    assert table["batch-1"][:7] == ["batch-1", "gastown", "1/3", "1", "0", "1", "Running"]
    assert table["webapp-sprint"][:7] == ["webapp-sprint", "webapp", "0/3", "0", "3", "0", "Pending"]
    names = await gastown(lab, "-n", namespace, "convoy", "list", "-o", "name")
    assert names.stdout.split() == [
        "convoy.gastown.gastown.io/batch-1",
        "convoy.gastown.gastown.io/webapp-sprint",
    ]

    described = await gastown(lab, "-n", namespace, "convoy", "describe", "batch-1")
    assert described.exit_code == 0, described.output
    lines = [" ".join(line.split()) for line in described.stdout.splitlines()]
    assert "Failure Policy: Stop after 1 failed" in lines
    assert "Progress: 2/3 finished: 1 working, 1 done, 1 failed" in lines
    assert any(line.startswith(f"Started: {started}") for line in lines)
    beads = lines[lines.index("Beads:") + 1 : lines.index("Conditions:")]
    assert beads == [
        "BEAD POLECAT PHASE BRANCH REASON",
        "gt-abc12 batch-1-1 Done polecat/batch-1-1",
        "gt-def34 batch-1-2 Failed <none> CloneFailed",
        "gt-ghi56 batch-1-3 Working <none>",
    ]
    assert any(line.startswith("Ready False FailureLimitReached") for line in lines)
    events = described.stdout[described.stdout.index("\nEvents:") :]
    assert "BeadFailed" in events and "gt-def34: polecat batch-1-2 Failed (CloneFailed)" in events

    missing = await gastown(lab, "-n", namespace, "convoy", "describe", "nope")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert one_line(missing.stderr) == f'gastown: Convoy "nope" in namespace "{namespace}" not found'


# --------------------------------------------------------------------------------------
# convoy watch
# --------------------------------------------------------------------------------------
async def test_convoy_watch_follows_each_change_until_complete(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    """Exit 0: every bead Done. Each status is written after the previous one was printed."""
    created = await gastown(
        lab, "-n", namespace, "convoy", "create", "soak", "--rig", "r", "--count", "2", "--task", "t"
    )
    assert created.exit_code == 0, created.output
    async with run(lab, "-n", namespace, "convoy", "watch", "soak", "--timeout", "120") as watch:
        assert "convoy/soak  0/2 finished (2 pending) Pending" in await watch.line_with("convoy/soak")
        steps = [
            ({"total": 2, "startTime": now(), "counts": {"working": 2}}, "0/2 finished (2 working) Running"),
            ({"counts": {"working": 1, "done": 1}}, "1/2 finished (1 working, 1 done) Running"),
            (
                {
                    "counts": {"working": 0, "done": 2},
                    "completionTime": now(),
                    "conditions": [cond("Complete", "True", "AllDone")],
                },
                "2/2 finished (2 done) Complete",
            ),
        ]
        for status, printed in steps:
            await set_status(k8s_api, namespace, "convoys", "soak", status)
            await watch.line_with(printed)
        code, lines, err = await watch.finish()
    assert code == 0, err
    assert err == ""
    assert lines[-1] == "convoy/soak Complete: 2 done (of 2)"


async def test_convoy_watch_of_several_exits_1_naming_the_failures(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    for name in ("good", "bad"):
        result = await gastown(
            lab,
            "-n",
            namespace,
            "convoy",
            "create",
            name,
            "--rig",
            "r",
            "--bead",
            "gt-1=One",
            "--bead",
            "gt-2=Two",
        )
        assert result.exit_code == 0, result.output
    async with run(lab, "-n", namespace, "convoy", "watch", "--timeout", "120") as watch:  # every Convoy
        await watch.line_with("convoy/good  0/2 finished (2 pending) Pending")
        await set_status(
            k8s_api, namespace, "convoys", "good",
            {"total": 2, "counts": {"done": 2}, "conditions": [cond("Complete", "True", "AllDone")]},
        )  # fmt: skip
        await watch.line_with("convoy/good  2/2 finished (2 done) Complete")
        beads = [
            {"beadID": "gt-1", "polecat": "bad-1", "phase": "Done"},
            {"beadID": "gt-2", "polecat": "bad-2", "phase": "Failed", "reason": "AgentFailed"},
        ]
        await set_status(
            k8s_api, namespace, "convoys", "bad",
            {"total": 2, "counts": {"done": 1, "failed": 1}, "beads": beads,
             "conditions": [cond("Complete", "True", "Finished")]},
        )  # fmt: skip
        code, lines, err = await watch.finish()
    assert code == ExitCode.FAILED
    assert "convoy/bad  bead gt-2 (polecat bad-2) Failed: AgentFailed" in "\n".join(lines)
    assert lines[-2:] == ["convoy/bad Failed: 1 done, 1 failed (of 2)", "convoy/good Complete: 2 done (of 2)"]
    assert one_line(err) == (
        "gastown: 1 of 2 Convoys did not finish every bead: convoy/bad (1 of 2 beads not Done)"
    )


async def test_convoy_create_watch_and_a_deleted_convoy(
    lab: Lab, k8s_api: client.ApiClient, namespace: str, crd: None
) -> None:
    async with run(
        lab,
        "-n",
        namespace,
        "convoy",
        "create",
        "quick",
        "--rig",
        "r",
        "--bead",
        "gt-1=Do the one thing",
        "--watch",
        "--timeout",
        "120",
    ) as watch:
        await watch.line_with(f"convoy.gastown.gastown.io/quick created in namespace {namespace}")
        await watch.line_with("convoy/quick  0/1 finished (1 pending) Pending")
        await client.CustomObjectsApi(k8s_api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "convoys", "quick"
        )
        code, _, err = await watch.finish()
    assert code == ExitCode.FAILED
    assert one_line(err) == "gastown: convoy/quick was deleted while watching it"

    missing = await gastown(lab, "-n", namespace, "convoy", "watch", "nope")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert one_line(missing.stderr) == f'gastown: Convoy "nope" in namespace "{namespace}" not found'
    assert (await gastown(lab, "-n", namespace, "convoy", "watch")).stderr == (
        f"No Convoys found in namespace {namespace}.\n"
    )
