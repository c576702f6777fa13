"""The operator's console under test: the simulator and a gateway serving the API and the
console on loopback port 0, an admin and a viewer account, and a browser-like HTTP client
that keeps cookies and sends each form with the CSRF token of the page it came from."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.channel import Backoff, PoolTuning
from gateway.config import load_config
from gateway.console import hash_password
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.store import AuditNote, ConsoleUser

FAST = PoolTuning(reconnect=Backoff(0.01, 0.05))
ADMIN = ("alice", "alice-password-1")
VIEWER = ("victor", "victor-password-1")
SHOP = ("shopkey", "shop-master-secret")
# The store of the stacks a test runs (tests/console/conftest.py's console_store sets one per
# backend); None: an SQLite file in the test's tmp_path.
STORE: str | None = None

CONFIG = """
[gateway]
store = "@STORE@"
log_level = "warning"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = @PORT@
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
[apps.shop]
app_key = "shopkey"
master_secret = "shop-master-secret"
signature = "商城"
[templates.1]
type = "notification"
content = "您的订单{{order}}已发货"
[console]
listen = "127.0.0.1:18999"
@CONSOLE@
"""


@dataclass
class Stack:
    gateway: Gateway
    sim: Simulator
    http: aiohttp.ClientSession
    console: str                    # the console's base URL
    api: str                        # the API's base URL
    config: str                     # the configuration file

    def browser(self) -> "Browser":
        return Browser(self.http.connector, self.console)


async def add_user(gateway: Gateway, name: str, password: str, role: str) -> None:
    await gateway.store.put_console_user(ConsoleUser(name, role, hash_password(password)),
                                         AuditNote("test", "console user added", name), 0.0)


@contextlib.asynccontextmanager
async def stack(tmp_path, console: str = "", clock=None, config: str = CONFIG,
                report_delay: float = 0.01, store: str | None = None):
    """``console`` goes into [console]; ``clock`` replaces time.time in the gateway; ``store``
    is the store setting (else STORE, else a file in ``tmp_path``)."""
    sim = Simulator(SimulatorConfig(accounts=[Account("900001", "secret")],
                                    report_delay=report_delay))
    await sim.start()
    path = tmp_path / "gateway.toml"
    path.write_text(config.replace("@STORE@", store or STORE or str(tmp_path / "gw.sqlite"))
                    .replace("@PORT@", str(sim.address[1])).replace("@CONSOLE@", console),
                    encoding="utf-8")
    options = GatewayOptions(registry=CollectorRegistry(), tuning=FAST, serve_ops=False,
                             api_address=("127.0.0.1", 0), console_address=("127.0.0.1", 0))
    if clock is not None:
        options.clock = clock
    gateway = Gateway(load_config(path), options)
    await gateway.start()
    try:
        await gateway.pools["cmcc"].wait_ready()
        await add_user(gateway, *ADMIN, "admin")
        await add_user(gateway, *VIEWER, "viewer")
        async with aiohttp.ClientSession() as http:
            yield Stack(gateway, sim, http, f"http://127.0.0.1:{gateway.console.address[1]}",
                        f"http://127.0.0.1:{gateway.api_server.address[1]}", str(path))
    finally:
        await gateway.stop()
        await sim.stop()


CSRF = re.compile(r'name="(csrf_token|login_token)" value="([^"]*)"')


class Browser:
    """One operator's browser: its own cookies; ``post`` sends the CSRF token of the last
    page it read (as a form on that page would)."""

    def __init__(self, connector, base: str) -> None:
        """``connector``: a session's to share, or None for one of its own."""
        self.http = aiohttp.ClientSession(connector=connector,
                                          connector_owner=connector is None,
                                          cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.base = base
        self.tokens: dict[str, str] = {}

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kwargs) -> tuple[int, str, dict]:
        async with self.http.get(self.base + path, allow_redirects=False, **kwargs) as response:
            text = (await response.read()).decode("utf-8", "replace")
        self.tokens.update(CSRF.findall(text))
        return response.status, text, response.headers

    async def post(self, path: str, data: dict | list, *, token: bool = True,
                   headers: dict | None = None) -> tuple[int, str, dict]:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if token and "csrf_token" in self.tokens:
            fields.append(("csrf_token", self.tokens["csrf_token"]))
        async with self.http.post(self.base + path, data=fields, allow_redirects=False,
                                  headers=headers or {}) as response:
            text = await response.text()
        self.tokens.update(CSRF.findall(text))
        return response.status, text, response.headers

    async def login(self, name: str, password: str) -> tuple[int, str, dict]:
        await self.get("/login")
        return await self.post("/login", {"name": name, "password": password,
                                          "login_token": self.tokens["login_token"],
                                          "next": "/"}, token=False)


@contextlib.asynccontextmanager
async def signed_in(s: Stack, who: tuple[str, str] = ADMIN):
    browser = s.browser()
    try:
        status, _, headers = await browser.login(*who)
        assert status == 303 and headers["Location"] == "/", status
        await browser.get("/")
        yield browser
    finally:
        await browser.close()


def between(text: str, start: str, end: str) -> str:
    """The part of ``text`` after ``start`` and before the next ``end``."""
    return text.split(start, 1)[1].split(end, 1)[0]
