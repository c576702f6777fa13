"""The API's signatures and templates under test: a gateway with the API against the
simulator, an HTTP client, tiny real images, and the operator's review command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import zlib
from dataclasses import dataclass

import aiohttp

from gateway.api.errors import CODES
from gateway.api.registry import Signature, Template
from gateway.channel import Backoff, PoolTuning
from gateway.cli.review import add_review_commands
from gateway.config import load_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig

KEY, SECRET = "7d431e42dfa6a6d693ac2d04", "5e987ac6d2e04d95a9d8f0d1"
OTHER = ("otherkey", "other-secret")
FAST = PoolTuning(reconnect=Backoff(0.01, 0.05))
# The store of the stacks a test runs (tests/api/conftest.py's api_store sets one per backend);
# None: an SQLite file in the test's tmp_path.
STORE: str | None = None

CONFIG = """
[gateway]
store = "@STORE@"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = @PORT@
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
[api]
sensitive_words = ["赌博"]
@API@
[apps.shop]
app_key = "@KEY@"
master_secret = "@SECRET@"
whitelist = ["127.0.0.1", "::1"]
signature = "商城"
[apps.other]
app_key = "otherkey"
master_secret = "other-secret"
[templates.1]
type = "notification"
content = "您的订单{{order}}已发货"
[templates.2]
type = "code"
content = "验证码{{code}}"
[templates.3]
app = "other"
type = "notification"
content = "仅供other"
[templates.4]
type = "notification"
content = "活动通知"
signature = "官方"
"""


# ----------------------------------------------------------------------------- images

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png() -> bytes:
    """A 1x1 green RGB PNG."""
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00\xff\x00")) + _png_chunk(b"IEND", b""))


def _jpeg_segment(marker: int, data: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


def tiny_jpeg() -> bytes:
    """A 1x1 grey baseline JPEG: one block whose DC difference and AC are all zero, each
    Huffman table holding the single one-bit code "0" (djpeg decodes it to the value 128)."""
    one_code = bytes([1] + [0] * 15) + b"\x00"
    return (b"\xff\xd8" + _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
            + _jpeg_segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")
            + _jpeg_segment(0xC4, b"\x00" + one_code) + _jpeg_segment(0xC4, b"\x10" + one_code)
            + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f" + b"\xff\xd9")


TINY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
            b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
PNG, JPEG = tiny_png(), tiny_jpeg()


def form(*fields: tuple[str, str | bytes]) -> aiohttp.FormData:
    """A multipart/form-data body: text fields, and files for bytes values."""
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields:
        if isinstance(value, bytes):
            data.add_field(name, value, filename=f"{name}.bin",
                           content_type="application/octet-stream")
        else:
            data.add_field(name, value)
    return data


# ----------------------------------------------------------------------------- the stack

@dataclass
class Stack:
    api: "Client"
    gateway: Gateway
    sim: Simulator
    config: str                       # the configuration file, for the review commands


def write_config(path, store, port: int, api: str = "", config: str = CONFIG):
    """Fill in ``config``'s @PLACEHOLDERS@ and write it to ``path``."""
    path.write_text(config.replace("@STORE@", str(store)).replace("@PORT@", str(port))
                    .replace("@API@", api).replace("@KEY@", KEY).replace("@SECRET@", SECRET),
                    encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def stack(tmp_path, api: str = "", config: str = CONFIG):
    """The simulator and a gateway serving the API on 127.0.0.1 port 0, its configuration
    (``api`` goes into [api]) written to a file that the review commands read."""
    sim = Simulator(SimulatorConfig(accounts=[Account("900001", "secret")], report_delay=0.01))
    await sim.start()
    path = write_config(tmp_path / "gateway.toml", STORE or tmp_path / "gw.sqlite",
                        sim.address[1], api, config)
    gateway = Gateway(load_config(path), GatewayOptions(tuning=FAST, serve_ops=False,
                                                        api_address=("127.0.0.1", 0)))
    await gateway.start()
    await gateway.pools["cmcc"].wait_ready()
    base = f"http://127.0.0.1:{gateway.api_server.address[1]}"
    try:
        async with aiohttp.ClientSession() as http:
            yield Stack(Client(http, base), gateway, sim, str(path))
    finally:
        await gateway.stop()
        await sim.stop()


class Client:
    def __init__(self, http, base):
        self.http, self.base = http, base

    async def call(self, method, path, body=None, *, data=None, headers=None,
                   auth=(KEY, SECRET)):
        """(HTTP status, the JSON body or None when empty, the response headers)."""
        kwargs = {"headers": {"Authorization": aiohttp.encode_basic_auth(*auth),
                              **(headers or {})}}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as response:
            raw = await response.read()
            return response.status, (await response.json() if raw else None), response.headers


def error(code, status):
    """A check that an answer is the JSMS error ``code`` with HTTP ``status`` and, exactly,
    the message the JSMS table gives it (clients match on it; any detail is beside it)."""
    return lambda answer: (answer[0] == status and answer[1]["error"]["code"] == code
                           and answer[1]["error"]["message"] == CODES[code][1])


async def new_sign(api: Client, sign: str, *images, auth=(KEY, SECRET)) -> int:
    status, body, _ = await api.call("POST", "/v1/sign", data=form(("sign", sign), *images),
                                     auth=auth)
    assert status == 200 and set(body) == {"sign_id"}, body
    return body["sign_id"]


async def new_template(api: Client, body: dict, auth=(KEY, SECRET)) -> int:
    status, answer, _ = await api.call("POST", "/v1/templates", body, auth=auth)
    assert status == 200 and set(answer) == {"temp_id"}, answer
    return answer["temp_id"]


async def operator(s: Stack, kind: str, item_id: int, decision: str) -> int:
    """``cmpp-gateway KIND DECISION ID --config FILE``, in another thread as in another process."""
    parser = argparse.ArgumentParser()
    add_review_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([kind, decision, str(item_id), "--config", s.config])
    return await asyncio.to_thread(args.func, args)


async def status_becomes(api: Client, path: str, status: int) -> dict:
    """The GET answer of ``path`` once its status is ``status`` (the daemon has re-read)."""
    for _ in range(200):
        answer = await api.call("GET", path)
        if answer[0] == 200 and answer[1]["status"] == status:
            return answer[1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never reached status {status}: {answer}")


async def assert_in_step(gateway: Gateway) -> None:
    """The registry holds exactly what the store holds."""
    registry = gateway.api.registry
    made = {i: t for i, t in registry.templates.items() if not t.from_config}
    assert made == {row["id"]: Template(from_config=False, **row)
                    for row in await gateway.store.templates()}
    assert registry.signatures == {row["id"]: Signature(**row)
                                   for row in await gateway.store.signatures()}


async def stored_images(s: Stack) -> list[tuple]:
    return await s.gateway.store.query("SELECT sign_id, slot, content_type, content "
                                       "FROM signature_images ORDER BY sign_id, slot")


async def nothing_stored(s: Stack) -> bool:
    """No signature, image, API template or message in the store or in the registry."""
    return (await s.gateway.store.signatures() == [] and await s.gateway.store.templates() == []
            and await stored_images(s) == [] and s.gateway.api.registry.signatures == {}
            and all(t.from_config for t in s.gateway.api.registry.templates.values())
            and sum((await s.gateway.store.status_counts()).values()) == 0)
