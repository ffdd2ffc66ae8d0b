"""The admission webhook is unreachable while ``failurePolicy: Fail`` is in force.

What must happen: the apiserver refuses every Polecat create/update (fail closed: no
spec the webhook would have refused gets in while it is away), ``kubectl apply`` says
clearly which webhook could not be called and why, and the rules that live in the
CRD itself (OpenAPI schema and CEL ``x-kubernetes-validations``) still reject their bad
examples with their own messages, because the apiserver checks the schema before it
calls validating webhooks.

Real parts: kube-apiserver's admission chain and the shipped
``webhooks/validatingwebhookconfiguration.yaml`` (failurePolicy Fail, timeoutSeconds
5), pointed at a port where nothing listens, then at one that accepts connections and
never answers. The configuration is scoped to this test's namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import yaml

from gastown.devcluster.lab import Lab, free_port
from gastown.webhook import certs
from tests.support.admission import VWC_FILE, WEBHOOK_NAME, webhook_registered
from tests.support.crd import install_crd, set_status
from tests.unit.webhook.invalid_examples import EXAMPLES, all_examples

pytestmark = [pytest.mark.reliability, pytest.mark.lab]

SCHEMA_EXAMPLES = [e for e in all_examples() if e.rejected_by == "schema"]
WEBHOOK_EXAMPLES = [e for e in all_examples() if e.rejected_by == "webhook" and not e.update]
FAILED_CALL = f'failed calling webhook "{WEBHOOK_NAME}"'


def _valid_polecat() -> str:
    obj = yaml.safe_load((EXAMPLES / "local" / "polecat.yaml").read_text())
    return json.dumps(obj)


def _webhook_at(lab: Lab, namespace: str, port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """The shipped configuration pointed at 127.0.0.1:port (with some CA: nothing answers
    there to check it); yields what kubectl printed for the first apply it blocked."""
    ca_cert, _ = certs.generate_ca("unreachable-webhook-ca")
    return webhook_registered(
        lab, namespace, port, ca_cert, probe=yaml.safe_load(_valid_polecat()), until=FAILED_CALL
    )


async def test_unreachable_webhook_fails_closed_with_a_clear_message_and_crd_rules_still_hold(
    lab: Lab, namespace: str
) -> None:
    await install_crd(lab)
    assert yaml.safe_load(VWC_FILE.read_text())["webhooks"][0]["failurePolicy"] == "Fail"
    assert SCHEMA_EXAMPLES and WEBHOOK_EXAMPLES  # the checks below are not vacuous
    # The objects the update examples change must exist before the webhook blocks creates.
    for example in SCHEMA_EXAMPLES:
        if example.update:
            await lab.kubectl("-n", namespace, "apply", "-f", "-", input=example.document_text(0))
            if example.dispatched:
                name = example.original["metadata"]["name"]
                await set_status(
                    lab, namespace, name, {"phase": "Working", "startTime": "2026-01-01T00:00:00Z"}
                )

    async with _webhook_at(lab, namespace, free_port()):
        rc, out, err = await lab.kubectl(
            "-n", namespace, "apply", "-f", "-", input=_valid_polecat(), check=False
        )
        assert rc != 0, out
        assert FAILED_CALL in err, err
        assert "connection refused" in err, err  # says why, not just that it failed
        rc, _, _ = await lab.kubectl("-n", namespace, "get", "polecat", "fix-login-bug", check=False)
        assert rc != 0  # nothing was created

        for example in WEBHOOK_EXAMPLES:  # fail closed: what the webhook would refuse stays out
            rc, out, err = await lab.kubectl(
                "-n", namespace, "apply", "-f", "-", input=example.document_text(-1), check=False
            )
            assert rc != 0 and FAILED_CALL in err, (example.id, out, err)

        for example in SCHEMA_EXAMPLES:  # the CRD's own rules answer first, with their messages
            rc, out, err = await lab.kubectl(
                "-n", namespace, "apply", "-f", "-", input=example.document_text(-1), check=False
            )
            assert rc != 0, (example.id, out)
            assert example.message in err, (example.id, err)
            assert FAILED_CALL not in err, (example.id, err)


async def test_webhook_that_never_answers_is_bounded_by_its_timeout(lab: Lab, namespace: str) -> None:
    """A webhook that accepts the connection and then says nothing (hung, overloaded):
    the apiserver gives up after the configuration's timeoutSeconds and refuses."""
    await install_crd(lab)
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never read, never answer, never close

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with _webhook_at(lab, namespace, port) as err:
            assert "context deadline exceeded" in err, err
            assert FAILED_CALL in err, err
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()
