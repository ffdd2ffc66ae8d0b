"""The webhook server alone, pinned to one core: ``python -m bench.webhook_server PORT CERT_DIR``.

Runs :class:`gastown.webhook.server.WebhookServer` exactly as the operator does, minus
the Secret lookups (no ApiClient), which would measure the apiserver instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gastown.settings import Settings
from gastown.webhook.server import WebhookServer


async def serve(port: int, cert_dir: Path) -> None:
    settings = Settings(
        webhook_host="127.0.0.1",
        webhook_port=port,
        webhook_cert_dir=cert_dir,
        ssh={"host": "127.0.0.1"},  # local mode enabled, so local Polecats are judged on their spec
    )
    server = WebhookServer(settings)
    await server.start()
    print("ready", flush=True)
    try:
        await server.run()  # the certificate reloader, as in the operator; runs until killed
    finally:
        await server.stop()


if __name__ == "__main__":
    os.sched_setaffinity(0, {0})  # bench.webhook_bench.SERVER_CORE
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
