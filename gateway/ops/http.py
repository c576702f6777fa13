"""The operators' endpoints: /metrics, /healthz and /readyz, on their own address.

/healthz answers 200 while the process serves requests (liveness). /readyz answers 200 only
when the store is open and can write and at least one channel is logged in, and 503
otherwise, with the reasons in JSON (readiness: take the instance out of rotation, don't
restart it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .logs import RequestErrorLog, SourceThrottle

Readiness = Callable[[], tuple[bool, dict]]


class OpsServer:
    def __init__(self, registry: CollectorRegistry, readiness: Readiness) -> None:
        self.registry = registry
        self.readiness = readiness
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        # A request that does not parse is noted without its bytes (RequestErrorLog).
        self._throttle = SourceThrottle(logging.getLogger("cmpp_gateway.ops"), "metrics client")
        self._runner = web.AppRunner(self.app(), access_log=None, logger=RequestErrorLog(
            logging.getLogger("aiohttp.server"), self._throttle))
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.address = site._server.sockets[0].getsockname()[:2]
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._throttle.flush()

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready, detail = self.readiness()
        return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)
