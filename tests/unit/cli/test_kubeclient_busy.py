"""The CLI's reads wait out a busy apiserver (HTTP 429) a few times, and nothing else.

A real HTTP server on localhost stands for the apiserver (the answers under test are
what a kube-apiserver sends: 429 "storage is (re)initializing" while a just-installed
CRD's watch cache starts, as the lab showed right after installing the CRDs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from gastown.cli import kubeclient
from gastown.cli.errors import CLIError, ExitCode
from gastown.cli.kubeclient import ClusterOptions, connect

BUSY = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "storage is (re)initializing",
    "reason": "TooManyRequests",
    "code": 429,
}


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[tuple[Path, list[int]]]:
    """(kubeconfig, answers): each request pops the next status code to answer with."""
    answers: list[int] = []
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        code = answers.pop(0) if answers else 200
        if code == 200:
            return web.json_response(
                {"kind": "ConvoyList", "metadata": {"resourceVersion": "7"}, "items": []}
            )
        body = BUSY if code == 429 else {**BUSY, "code": code, "message": "boom", "reason": "InternalError"}
        return web.Response(status=code, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    try:
        yield path, answers
    finally:
        await runner.cleanup()


async def test_a_busy_apiserver_is_waited_out(
    apiserver: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, answers = apiserver
    monkeypatch.setattr(kubeclient, "BUSY_RETRIES", (0.01, 0.01, 0.01))
    answers += [429, 429]
    async with connect(ClusterOptions(kubeconfig=path)) as cluster:
        result = await cluster.list_polecats("ns")
    assert result["metadata"]["resourceVersion"] == "7" and answers == []


async def test_busy_for_too_long_or_another_error_fails_at_once(
    apiserver: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, answers = apiserver
    monkeypatch.setattr(kubeclient, "BUSY_RETRIES", (0.01, 0.01))
    answers += [429, 429, 429, 429]
    async with connect(ClusterOptions(kubeconfig=path)) as cluster:
        with pytest.raises(CLIError) as busy:
            await cluster.get_polecat("ns", "x")
    assert answers == [429]  # three tries: the first and two retries
    assert "storage is (re)initializing" in busy.value.message
    answers[:] = [500, 200]
    async with connect(ClusterOptions(kubeconfig=path)) as cluster:
        with pytest.raises(CLIError) as other:
            await cluster.list_polecats("ns")
    assert answers == [200]  # no second try
    assert other.value.code is ExitCode.FAILED and "HTTP 500: boom" in other.value.message
