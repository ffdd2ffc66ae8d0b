"""The admission webhook on the lab: the shipped configuration, registered for one test namespace.

The configuration is the shipped ``webhooks/validatingwebhookconfiguration.yaml``
(rules, failurePolicy, timeout), with ``clientConfig.url`` pointed at 127.0.0.1 and a
namespaceSelector on the test's own namespace, so no other test is affected. It is
removed on exit. :data:`PROBE` is a Polecat only the webhook rejects, to tell when the
apiserver has the webhook in its path.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from gastown.devcluster.lab import Lab
from gastown.webhook.server import PATH
from tests.support.crd import set_status
from tests.support.waiting import wait_for
from tests.unit.webhook.invalid_examples import InvalidExample

REPO = Path(__file__).resolve().parents[2]
VWC_FILE = REPO / "webhooks" / "validatingwebhookconfiguration.yaml"
WEBHOOK_NAME = "validate.polecats.gastown.gastown.io"
DENIED_BY = f'admission webhook "{WEBHOOK_NAME}" denied the request'
# A Polecat only the webhook rejects: a probe for "is the webhook in the path yet?".
PROBE = {
    "apiVersion": "gastown.gastown.io/v1alpha1",
    "kind": "Polecat",
    "metadata": {"name": "webhook-probe"},
    "spec": {"rig": "gastown", "beadID": "gt-probe", "local": {"dispatcher": "tmux"}},
}


def configuration(name: str, namespace: str, port: int, ca_bundle: bytes) -> dict[str, Any]:
    """The shipped configuration, pointed at 127.0.0.1:port and scoped to one namespace."""
    vwc: dict[str, Any] = yaml.safe_load(VWC_FILE.read_text())
    vwc["metadata"]["name"] = name
    hook = vwc["webhooks"][0]
    hook["clientConfig"] = {
        "url": f"https://127.0.0.1:{port}{PATH}",
        "caBundle": base64.b64encode(ca_bundle).decode(),
    }
    hook["namespaceSelector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]
    }
    return vwc


@contextlib.asynccontextmanager
async def webhook_registered(
    lab: Lab,
    namespace: str,
    port: int,
    ca_cert: bytes,
    *,
    probe: dict[str, Any] = PROBE,
    until: str = DENIED_BY,
) -> AsyncIterator[str]:
    """Register the webhook at ``https://127.0.0.1:port``; wait until a server-side dry-run
    apply of ``probe`` prints ``until`` (the apiserver has loaded the configuration);
    yield what that apply printed on stderr."""
    name = f"gastown-test-{uuid.uuid4().hex[:8]}"
    await lab.kubectl("apply", "-f", "-", input=json.dumps(configuration(name, namespace, port, ca_cert)))
    try:

        async def answered() -> tuple[str] | None:
            _, out, err = await lab.kubectl(
                "-n", namespace, "apply", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            )
            return (err,) if until in out + err else None

        (printed,) = await wait_for(
            answered, timeout=20, what=f"the apiserver to answer {until!r} with the webhook in place"
        )
        yield printed
    finally:
        await lab.kubectl(
            "delete", "validatingwebhookconfiguration", name, "--ignore-not-found", "--wait=false"
        )


async def apply_example(lab: Lab, namespace: str, example: InvalidExample) -> tuple[int, str]:
    """Create the original (updates only), mark it dispatched if asked, apply the bad one."""
    if example.update:
        await lab.kubectl("-n", namespace, "apply", "-f", "-", input=example.document_text(0))
        if example.dispatched:
            name = example.original["metadata"]["name"]
            await set_status(lab, namespace, name, {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"})
    rc, out, err = await lab.kubectl(
        "-n", namespace, "apply", "-f", "-", input=example.document_text(-1), check=False
    )
    return rc, out + err
