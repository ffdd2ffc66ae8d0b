"""The admission webhook's HTTPS server: ``POST /validate-polecat``.

:class:`WebhookServer` is one part of the operator process (the controller wires it in):
``await start()`` loads TLS, binds and serves; ``await run()`` is its long-lived task
(the certificate reloader and, with self-managed certificates, the certificate manager,
in one anyio task group), owned and cancelled by the caller (the manager supervises it);
``await stop()`` stops serving. ``port`` is the bound port (so tests can ask for port 0).

TLS comes from ``settings.webhook_cert_dir`` (``tls.crt``/``tls.key``, e.g. a Secret
mounted by cert-manager), reloaded when the files change; or, with no directory set,
from certificates the operator manages itself (:mod:`gastown.webhook.certs`), which
needs an apiserver client (:class:`gastown.kube.KubeClient`).

The handler is the pure :func:`gastown.webhook.review.review` plus, when a client
is given, lookups of the Secrets/ConfigMaps a Polecat references, turned into warnings
(never denials: a Secret may legitimately be created after the Polecat). Secrets are
read as metadata only (PartialObjectMetadata), so no Secret data reaches the operator:
for them the warning is about existence; ConfigMaps are also checked for the key. Lookups run
concurrently under a short overall timeout; if the cluster is slow the review goes out
without those warnings rather than late. The handler never answers 500: malformed
bodies get 400, oversized ones 413, and a bug in a rule becomes a denial that says so.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import anyio
import orjson
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from gastown.api.models import GROUP, VERSION
from gastown.api.paths import resource_path
from gastown.api.rig import PLURAL as RIG_PLURAL
from gastown.kube import JSON, METADATA_ONLY, Fault, KubeClient, classify
from gastown.metrics import WebhookObserver
from gastown.settings import Settings
from gastown.webhook import review, rules
from gastown.webhook.certs import CertManager
from gastown.webhook.review import AdmissionRequest
from gastown.webhook.tls import CertReloader

log = logging.getLogger(__name__)

PATH: Final = "/validate-polecat"
LOOKUP_TIMEOUT: Final = 1.5  # seconds for all reference lookups of one review together


def _json(body: dict[str, Any]) -> web.Response:
    """A compact JSON response (orjson: a fifth of the stdlib's time per review)."""
    return web.Response(body=orjson.dumps(body), content_type="application/json")


class WebhookServer:
    """The HTTPS admission server. Not reusable: one start(), one stop()."""

    def __init__(
        self,
        settings: Settings,
        client: KubeClient | None = None,
        *,
        cert_poll_interval: float = 5.0,
        lookup_timeout: float = LOOKUP_TIMEOUT,
        metrics: WebhookObserver | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._client = client
        self._cert_poll_interval = cert_poll_interval
        self._lookup_timeout = lookup_timeout
        self._runner: web.AppRunner | None = None
        self._tmpdir: Path | None = None
        self.reloader: CertReloader | None = None
        self.cert_manager: CertManager | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Load TLS, bind, serve; start the certificate tasks. Raises if TLS is unusable."""
        cert_file, key_file = await self._certificate_files()
        self.reloader = await asyncio.to_thread(
            CertReloader, cert_file, key_file, poll_interval=self._cert_poll_interval
        )
        app = web.Application(client_max_size=review.MAX_BODY_BYTES)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._settings.webhook_host,
            self._settings.webhook_port,
            ssl_context=self.reloader.context,
            backlog=1024,
        )
        await site.start()
        log.info("admission webhook serving https://%s:%d%s", self._settings.webhook_host, self.port, PATH)

    async def _certificate_files(self) -> tuple[Path, Path]:
        if self._settings.webhook_cert_dir is not None:
            directory = self._settings.webhook_cert_dir
            return directory / "tls.crt", directory / "tls.key"
        if self._client is None:
            raise ValueError(
                "the webhook needs certificates: set webhook_cert_dir (GASTOWN_WEBHOOK_CERT_DIR) "
                "or give it an apiserver client to manage its own"
            )
        self._tmpdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gastown-webhook-"))
        self.cert_manager = CertManager(self._client, self._settings, self._tmpdir)
        await self.cert_manager.ensure()
        return self.cert_manager.cert_file, self.cert_manager.key_file

    async def run(self) -> None:
        """Reload the certificate files (and manage the certificate) until cancelled."""
        if self.reloader is None:
            raise RuntimeError("start() the webhook server before run()")
        async with anyio.create_task_group() as group:
            group.start_soon(self.reloader.run, name="webhook-cert-reload")
            if self.cert_manager is not None:
                group.start_soon(self.cert_manager.run, name="webhook-cert-manager")

    async def stop(self) -> None:
        """Stop serving and remove the self-managed certificate files (cancel :meth:`run` first)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            await asyncio.to_thread(shutil.rmtree, self._tmpdir, True)
            self._tmpdir = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with webhook_port=0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the webhook server is not running")
        address = self._runner.addresses[0]
        return int(address[1])

    # -- requests ------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            return (await self._respond(request))[0]
        started = time.perf_counter()
        with self._metrics.in_flight():
            response, operation = await self._respond(request)
        self._metrics.on_request(operation, response.status, time.perf_counter() - started)
        return response

    async def _respond(self, request: web.Request) -> tuple[web.Response, str]:
        """The response, and the operation it answered ("" when the body never parsed)."""
        if request.content_length is not None and request.content_length > review.MAX_BODY_BYTES:
            return web.json_response({"error": "body too large"}, status=413), ""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": "body too large"}, status=413), ""
        try:
            admission = review.parse_review(body)
        except review.MalformedReviewError as exc:
            return web.json_response({"error": str(exc)}, status=400), ""
        try:
            lookups = self._client is not None and self._wants_lookups(admission)
            rig = await self._rig_lookup(admission) if lookups else None
            verdict = review.review(admission, self._settings, rig=rig)
            if verdict.allowed and lookups:
                verdict = verdict.with_warnings(await self._reference_warnings(admission, rig))
            response = review.build_response(admission, verdict)
        except Exception:
            log.exception("validating admission request %s failed", admission.uid)
            response = review.internal_error_response(admission)
        else:
            if not verdict.allowed:
                if self._metrics is not None:
                    self._metrics.on_denied(admission.operation, verdict.errors)
                log.info(
                    "denied %s of Polecat %s/%s (uid %s): %d problem(s)",
                    admission.operation,
                    admission.namespace,
                    admission.name,
                    admission.uid,
                    len(verdict.errors),
                )
        return _json(response), admission.operation

    @staticmethod
    def _wants_lookups(admission: AdmissionRequest) -> bool:
        """Look things up on CREATE and on spec changes, not on metadata-only updates."""
        if not admission.is_polecat or not isinstance(admission.object, Mapping):
            return False
        if admission.operation == "CREATE":
            return True
        old = admission.old_object
        return admission.operation == "UPDATE" and (
            not isinstance(old, Mapping) or old.get("spec") != admission.object.get("spec")
        )

    async def _rig_lookup(self, admission: AdmissionRequest) -> rules.RigLookup | None:
        """The Polecat's Rig, read live (a GET within the lookup timeout, like the Secrets).

        None when it could not be read (no name, a timeout, an error): the Polecat is then
        validated as if no one had looked, which warns rather than denies.
        """
        assert self._client is not None
        spec = admission.object.get("spec") if isinstance(admission.object, Mapping) else None
        name = spec.get("rig") if isinstance(spec, Mapping) else None
        meta = admission.object.get("metadata") if isinstance(admission.object, Mapping) else None
        namespace = admission.namespace or (meta.get("namespace") if isinstance(meta, Mapping) else None)
        if not isinstance(name, str) or not name or not namespace:
            return None
        path = resource_path(GROUP, VERSION, RIG_PLURAL, namespace=namespace, name=name)
        try:
            async with asyncio.timeout(self._lookup_timeout):
                obj = await self._client.get(path, request_timeout=self._lookup_timeout)
        except ApiException as exc:
            if classify(exc) is Fault.NOT_FOUND:
                return rules.RigLookup(None)
            log.debug("looking up Rig %s/%s failed: %s", namespace, name, exc.status)
            return None
        except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
            log.debug("looking up Rig %s/%s failed: %s", namespace, name, exc)
            return None
        return rules.RigLookup(obj)

    async def _reference_warnings(
        self, admission: AdmissionRequest, rig: rules.RigLookup | None
    ) -> list[str]:
        polecat = rules.parse_polecat(admission.object)
        if polecat is None:
            return []
        namespace = admission.namespace or polecat.metadata.namespace
        refs = rules.references(rules.effective_polecat(polecat, rig))
        if not refs or not namespace:
            return []
        try:
            async with asyncio.timeout(self._lookup_timeout):
                found = await asyncio.gather(*(self._check_reference(namespace, ref) for ref in refs))
        except TimeoutError:
            log.warning(
                "reference lookups for %s/%s timed out; no warnings about them",
                namespace,
                polecat.metadata.name,
            )
            return []
        return [w for w in found if w is not None]

    async def _check_reference(self, namespace: str, ref: rules.Reference) -> str | None:
        assert self._client is not None
        is_secret = ref.kind == "Secret"
        plural = "secrets" if is_secret else "configmaps"
        path = resource_path("", "v1", plural, namespace=namespace, name=ref.name)
        try:
            # A Secret is read as metadata only, so no Secret data ever reaches the operator:
            # the warning is about existence; type and keys are the Pod's business.
            obj = await self._client.get(
                path, accept=METADATA_ONLY if is_secret else JSON, request_timeout=self._lookup_timeout
            )
        except ApiException as exc:
            if classify(exc) is Fault.NOT_FOUND:
                return (
                    f"{ref.field}: {ref.kind} {ref.name!r} was not found in namespace {namespace!r}; "
                    "the agent Pod cannot start until it exists"
                )
            log.debug("looking up %s %s/%s failed: %s", ref.kind, namespace, ref.name, exc.status)
            return None
        except (OSError, ValueError, aiohttp.ClientError) as exc:  # connection trouble: no warning
            log.debug("looking up %s %s/%s failed: %s", ref.kind, namespace, ref.name, exc)
            return None
        if is_secret:
            return None
        keys = set(obj.get("data") or {}) | set(obj.get("binaryData") or {})
        if ref.key is not None and ref.key not in keys:
            return f"{ref.field}: {ref.kind} {ref.name!r} has no key {ref.key!r}"
        return None
