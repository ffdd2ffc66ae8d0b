"""Registering a ValidatingWebhookConfiguration for one test namespace on the lab.

The configuration is the shipped ``webhooks/validatingwebhookconfiguration.yaml``
(rules, failurePolicy, timeout), with ``clientConfig.url`` pointed at 127.0.0.1 and a
namespaceSelector on the test's own namespace, so no other test is affected. It is
removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gastown.devcluster.lab import Lab
from tests.integration.test_webhook_on_lab import configuration


@contextlib.asynccontextmanager
async def webhook_registered(
    lab: Lab, namespace: str, port: int, ca_cert: bytes, *, probe: dict[str, Any], until: str
) -> AsyncIterator[str]:
    """Register the webhook at ``https://127.0.0.1:port``; wait until a server-side dry-run
    apply of ``probe`` prints ``until`` (the apiserver has loaded the configuration);
    yield what that apply printed on stderr."""
    name = f"gastown-rel-{uuid.uuid4().hex[:8]}"
    await lab.kubectl("apply", "-f", "-", input=json.dumps(configuration(name, namespace, port, ca_cert)))
    try:
        for _ in range(200):
            _, out, err = await lab.kubectl(
                "-n", namespace, "apply", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            )
            if until in out + err:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the apiserver never answered {until!r} with the webhook in place")
        yield err
    finally:
        await lab.kubectl(
            "delete", "validatingwebhookconfiguration", name, "--ignore-not-found", "--wait=false"
        )
