"""The console's web application and its server on its own address.

``create_app`` builds the aiohttp application: the guard's middlewares (``security``), the
jinja2 templates and static files of this package (nothing from elsewhere: private clouds are
offline), the login routes and every section of ``PAGES``. ``ConsoleServer`` serves it on the
``[console] listen`` address, never the API's, with the per-minute sampler running beside it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .context import Console, when, zone
from .pages import apps, audit, login, messages, overview, reviews, send, users
from .security import CONSOLE, errors, guard, headers
from .services import Services

log = logging.getLogger("cmpp_gateway.console")

# The sections' modules in the order of the navigation (one that shares another's SECTION,
# like ``send``, adds pages to it).
PAGES = (overview, apps, reviews, users, messages, send, audit)
MAX_FORM = 64 * 1024                    # bytes of a posted form (one with a file: ``uploads``)
STATIC = Path(__file__).resolve().parent / "static"


SECTIONS = tuple({page.SECTION.key: page.SECTION for page in PAGES}.values())


def create_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[headers, errors, guard], client_max_size=MAX_FORM)
    app[CONSOLE] = console
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True))
    env.globals.update(sections=SECTIONS, when=when, zone=zone)
    app.router.add_static("/static/", STATIC, name="static")
    login.add_routes(app.router)
    for page in PAGES:
        page.add_routes(app.router)
    return app


class ConsoleServer:
    """The console on its own address. ``start`` reads (or makes, once for all instances)
    the session key from the store unless the configuration names one."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.console: Console | None = None
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        settings = self.services.config.console
        key = settings.session_key or await self.services.store.console_key(
            "session", secrets.token_hex(32))
        self.console = Console(self.services, key.encode())
        self._sampler = asyncio.get_running_loop().create_task(self.console.rates.run(),
                                                               name="console-rates")
        self._runner = web.AppRunner(create_app(self.console), access_log=None,
                                     max_line_size=8190, max_field_size=8190)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.address = self._runner.addresses[0][:2]
        log.info("console on http://%s:%d", *self.address)
        return self.address

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
