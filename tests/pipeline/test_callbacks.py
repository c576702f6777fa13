"""Status and MO callbacks in the signed-json format: sent signed to a real HTTP receiver,
retried until acknowledged, dropped or given up as documented, and picked up again after a
restart. (The jsms format is tested against a JSMS receiver in test_jsms_callbacks.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.channel import Backoff, PoolTuning
from gateway.config import ApiSettings, AppConfig, parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.ops import Metrics
from gateway.pipeline.callbacks import (
    CallbackSender,
    backoff,
    encode_body,
    mo_subscribers,
    sign,
    verify,
)
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import load_tables
from gateway.store import (
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    Store,
    create_store,
)
from tests.aio import eventually, run, with_store

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")
SECRET = "app1-master-secret"
MOBILE = "13800138000"
TEXT = "您的订单已发货"
SETTINGS = ApiSettings(callback_timeout=0.3, callback_retry_for=3600)
FAST = dict(poll=0.01, backoff_base=0.01)


def app(name: str = "app1", status: str = "", mo: str = "",
        channels: tuple[str, ...] = ("cmcc",), **settings) -> AppConfig:
    return AppConfig(name=name, app_key=f"key-{name}", master_secret=SECRET,
                     master_secret_env=None, whitelist=(), status_callback=status,
                     mo_callback=mo, channels=channels, signature="", enabled=True,
                     **{"callback_format": "signed-json", **settings})


# ----------------------------------------------------------------------------- the receiver

@dataclass
class Got:
    action: str
    path: str
    headers: dict
    body: bytes


class Receiver:
    """An app's callback endpoint on 127.0.0.1: answers each POST with the next scripted
    action ("500", "drop": close the connection, "hang": no answer), "ok" once the script
    is used up; keeps every request it got."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.got: list[Got] = []
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Receiver:
        application = web.Application()
        application.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(application, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}/{path}"

    @property
    def acknowledged(self) -> list[Got]:
        return [g for g in self.got if g.action == "ok"]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        action = self.script.pop(0) if self.script else "ok"
        self.got.append(Got(action, request.path, dict(request.headers), body))
        if action == "500":
            return web.Response(status=500, text="broken")
        if action == "drop":
            request.transport.close()
        elif action == "hang":
            await asyncio.sleep(30)
        return web.Response(text="ok")


class RecordingStore:
    """The store, with every ``callback_done`` call kept for the test to read."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.done: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def callback_done(self, entry_id, delivered, now, next_attempt_at, error):
        self.done.append((entry_id, delivered, now, next_attempt_at, error))
        await self.store.callback_done(entry_id, delivered, now, next_attempt_at, error)


# ----------------------------------------------------------------------------- store helpers

async def final_message(store, at: float, msg_id: int = 500, stat: str = "DELIVRD") -> int:
    """A message taken through accept -> SUBMIT_RESP -> report; its callback is queued."""
    [accepted] = await store.accept([NewMessage("app1", "cmcc", MOBILE, TEXT)], now=at - 2)
    await store.record_submits([SegmentResult(accepted.id, "cmcc", 1, 1, 0, msg_id,
                                              connection="cmcc#0", at=at - 1)], "default")
    await store.record_receipts([Receipt("cmcc", "cmcc#0", msg_id + 1, msg_id,
                                         CODES.classify(stat), received_at=at)])
    return accepted.id


async def stored_mo(store, at: float, text: str | None, payload: bytes, msg_fmt: int = 8,
                    apps: tuple[str, ...] = ("app1",)) -> int:
    [part] = await store.record_mo_parts([MoPart("cmcc", "cmcc#0", 77, MOBILE, "10690001", "",
                                                 msg_fmt, 0, payload, at)])
    return await store.record_mo_message(
        MoMessage("cmcc", MOBILE, "10690001", text, payload, msg_fmt, (part.id,), True, at),
        apps=apps)


async def outbox(store) -> list[tuple]:
    """(app, kind, attempts, state, last_error) of every outbox row, in id order."""
    return await store.query(
        "SELECT app, kind, attempts, state, last_error FROM outbox ORDER BY id")


@contextlib.asynccontextmanager
async def sending(store, apps, metrics=None, settings=SETTINGS, **options):
    sender = CallbackSender(store, apps, settings, metrics or Metrics(), **options)
    sender.start()
    try:
        yield sender
    finally:
        await recorded(sender)
        await sender.close()


async def recorded(sender, timeout: float = 5.0) -> None:
    """Let the attempts in flight record their outcomes before the sender closes (close
    cuts them short, leaving them pending): a test that waited for its receiver to see a
    POST is ahead of the store, which hears of the answer after the receiver gave it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while sender.in_flight and loop.time() < end:
        await asyncio.sleep(0.01)


def outcomes(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    return {labels: child.value for labels, child in metrics.callbacks.children.items()}


def signed_independently(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode("utf-8"), body, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- signatures

def test_verify_accepts_only_the_signature_of_the_exact_body_and_secret():
    body = encode_body({"text": TEXT})
    header = sign(body, SECRET)
    assert header == signed_independently(body)
    assert verify(body, SECRET, header)
    assert not verify(body + b" ", SECRET, header)
    assert not verify(body, SECRET + "x", header)
    assert not verify(body, SECRET, header.removeprefix("sha256="))
    assert not verify(body, SECRET, "sha256=订单")
    assert not verify(body, SECRET, None)


def test_backoff_doubles_up_to_the_cap_with_at_most_ten_percent_jitter():
    assert [backoff(n, 1.0, 600.0, rand=lambda: 0.0) for n in range(4)] == [1, 2, 4, 8]
    assert backoff(3, 1.0, 600.0, rand=lambda: 1.0) == 8.8
    assert backoff(20, 1.0, 600.0, rand=lambda: 0.0) == 600.0
    assert backoff(10_000, 1.0, 600.0, rand=lambda: 0.5) == 630.0


def test_mo_goes_to_the_apps_of_its_channel_that_have_an_mo_url():
    apps = {"a": app("a", mo="http://a/mo", channels=("cmcc", "ctcc")),
            "b": app("b", mo="", channels=("cmcc",)),
            "c": app("c", mo="http://c/mo", channels=("ctcc",))}
    assert mo_subscribers(apps, "cmcc") == ("a",)
    assert mo_subscribers(apps, "ctcc") == ("a", "c")
    assert mo_subscribers(apps, "cucc") == ()


# ----------------------------------------------------------------------------- what arrives

def test_a_status_callback_arrives_as_documented_json_with_a_valid_signature(store_setting):
    async def scenario(store):
        now = time.time()
        message_id = await final_message(store, at=now, stat="UNDELIV")
        metrics = Metrics()
        async with Receiver() as receiver:
            apps = {"app1": app(status=receiver.url("status"), mo=receiver.url("mo"))}
            async with sending(store, apps, metrics, **FAST):
                await eventually(lambda: len(receiver.got) == 1)
                await eventually(lambda: outcomes(metrics))
        [got] = receiver.got
        view = await store.message(message_id)
        assert got.path == "/status"
        assert json.loads(got.body) == {
            "event_id": f"status-{message_id}-app1", "type": "status",
            "msg_id": str(message_id), "mobile": MOBILE, "status": "undeliverable",
            "temporary": view.status_temporary, "stat": "UNDELIV", "provider": "default",
            "channel": "cmcc", "parts": 1,
            "segments": [{"part": 1, "status": "undeliverable", "stat": "UNDELIV"}],
            "status_at": now, "created_at": now - 2}
        assert got.body == json.dumps(json.loads(got.body), ensure_ascii=False,
                                      separators=(",", ":")).encode("utf-8")
        assert got.headers["Content-Type"] == "application/json; charset=utf-8"
        assert got.headers["X-CMPP-Event-Id"] == f"status-{message_id}-app1"
        assert abs(int(got.headers["X-CMPP-Timestamp"]) - now) < 5
        assert verify(got.body, SECRET, got.headers["X-CMPP-Signature"])
        assert got.headers["X-CMPP-Signature"] == signed_independently(got.body)
        assert outcomes(metrics) == {("app1", "status", "delivered"): 1}
        assert await outbox(store) == [("app1", "status", 1, "done", None)]
    with_store(scenario, store_setting)


def test_an_mo_callback_arrives_signed_with_its_chinese_text_intact(store_setting):
    async def scenario(store):
        now = time.time()
        text = "退订，谢谢！😀"
        mo_id = await stored_mo(store, now, text, text.encode("utf-16-be"))
        async with Receiver() as receiver:
            apps = {"app1": app(status=receiver.url("status"), mo=receiver.url("mo"),
                                mo_receive_time=True)}
            async with sending(store, apps, **FAST):
                await eventually(lambda: len(receiver.got) == 1)
        [got] = receiver.got
        assert got.path == "/mo"
        assert text.encode("utf-8") in got.body                  # raw UTF-8, not \u escapes
        assert json.loads(got.body.decode("utf-8")) == {
            "event_id": f"mo-{mo_id}-app1", "type": "mo", "mo_id": str(mo_id),
            "mobile": MOBILE, "dest_id": "10690001", "text": text, "content_hex": None,
            "msg_fmt": 8, "parts": 1, "complete": True, "received_at": now}
        assert got.headers["X-CMPP-Event-Id"] == f"mo-{mo_id}-app1"
        assert verify(got.body, SECRET, got.headers["X-CMPP-Signature"])
        assert got.headers["X-CMPP-Signature"] == signed_independently(got.body)
    with_store(scenario, store_setting)


def test_an_mo_callback_carries_its_receive_time_only_when_the_app_asks_for_it(store_setting):
    async def scenario(store):
        await stored_mo(store, 1000.0, "TD", b"TD", msg_fmt=0, apps=("plain", "timed"))
        async with Receiver() as receiver:
            apps = {"plain": app("plain", mo=receiver.url("plain")),
                    "timed": app("timed", mo=receiver.url("timed"), mo_receive_time=True)}
            async with sending(store, apps, **FAST):
                await eventually(lambda: len(receiver.got) == 2)
        bodies = {g.path: json.loads(g.body) for g in receiver.got}
        assert "received_at" not in bodies["/plain"] and bodies["/plain"]["text"] == "TD"
        assert bodies["/timed"]["received_at"] == 1000.0
    with_store(scenario, store_setting)


def test_a_binary_mo_carries_its_payload_as_hex(store_setting):
    async def scenario(store):
        mo_id = await stored_mo(store, time.time(), None, b"\x00\xffbin", msg_fmt=4)
        async with Receiver() as receiver:
            async with sending(store, {"app1": app(mo=receiver.url("mo"))}, **FAST):
                await eventually(lambda: len(receiver.got) == 1)
        body = json.loads(receiver.got[0].body)
        assert (body["mo_id"], body["text"], body["content_hex"], body["msg_fmt"]) == \
            (str(mo_id), None, "00ff62696e", 4)
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- failures

def test_a_failing_receiver_is_retried_with_backoff_until_it_acknowledges_once(store_setting):
    async def scenario(plain):
        store = RecordingStore(plain)
        await final_message(plain, at=time.time())
        metrics = Metrics()
        async with Receiver("500", "drop", "hang") as receiver:
            apps = {"app1": app(status=receiver.url("status"))}
            async with sending(store, apps, metrics, **FAST):
                await eventually(lambda: len(receiver.acknowledged) == 1)
                await eventually(lambda: len(store.done) == 4)
                await asyncio.sleep(0.2)                     # nothing more is sent
        assert [g.action for g in receiver.got] == ["500", "drop", "hang", "ok"]
        assert len({g.headers["X-CMPP-Event-Id"] for g in receiver.got}) == 1
        assert len({g.body for g in receiver.got}) == 1
        assert all(verify(g.body, SECRET, g.headers["X-CMPP-Signature"]) for g in receiver.got)
        errors = [error for _, _, _, _, error in store.done]
        assert errors == ["HTTP 500", "ServerDisconnectedError", "timeout", None]
        for attempts, (_, delivered, now, next_attempt_at, _) in enumerate(store.done[:3]):
            delay = 0.01 * 2 ** attempts
            assert not delivered and delay <= next_attempt_at - now <= delay * 1.1 + 1e-9
        assert store.done[3][1:4:2] == (True, None)
        assert await outbox(plain) == [("app1", "status", 4, "done", None)]
        assert outcomes(metrics) == {("app1", "status", "retry"): 3,
                                     ("app1", "status", "delivered"): 1}
    with_store(scenario, store_setting)


def test_a_callback_waits_for_its_backoff_and_is_given_up_after_callback_retry_for(
        store_setting, caplog):
    clock = [1000.0]

    async def scenario(plain):
        store = RecordingStore(plain)
        message_id = await final_message(plain, at=1000.0)
        metrics = Metrics()
        caplog.set_level(logging.WARNING, logger="cmpp_gateway.callbacks")
        async with Receiver("500", "500", "500") as receiver:
            apps = {"app1": app(status=receiver.url("status"))}
            async with sending(store, apps, metrics, clock=lambda: clock[0], poll=0.01,
                               backoff_base=10.0):
                await eventually(lambda: len(store.done) == 1)
                assert store.done[0][4] == "HTTP 500"
                assert 1010.0 <= store.done[0][3] <= 1011.0
                assert await plain.due_callbacks(1009.99, 10) == []
                [entry] = await plain.due_callbacks(1011.0, 10)
                assert entry.attempts == 1
                await asyncio.sleep(0.1)
                assert len(receiver.got) == 1                # not due on the fake clock
                clock[0] = 1000.0 + 3600.0                   # callback_retry_for has passed
                await eventually(lambda: len(store.done) == 2)
                await asyncio.sleep(0.1)
        assert len(receiver.got) == 2
        assert store.done[1][1:] == (False, 4600.0, None, "HTTP 500")
        assert await plain.due_callbacks(1e12, 10) == []
        assert await outbox(plain) == [("app1", "status", 2, "failed", "HTTP 500")]
        assert outcomes(metrics) == {("app1", "status", "retry"): 1,
                                     ("app1", "status", "failed"): 1}
        [warning] = [r for r in caplog.records if r.name == "cmpp_gateway.callbacks"]
        line = warning.getMessage()
        assert warning.levelno == logging.WARNING
        assert "app1" in line and f"status {message_id}" in line and "2 attempt" in line
        assert MOBILE not in line and TEXT not in line and SECRET not in line
    with_store(scenario, store_setting)


def test_an_invalid_url_and_a_refused_connection_are_failures_to_retry(store_setting):
    async def scenario(plain):
        store = RecordingStore(plain)
        with socket.socket() as closed:                      # a port nobody listens on
            closed.bind(("127.0.0.1", 0))
            refused = f"http://127.0.0.1:{closed.getsockname()[1]}/status"
        await final_message(plain, at=1000.0)
        await stored_mo(plain, 1000.0, "TD", b"TD", msg_fmt=0)
        metrics = Metrics()
        apps = {"app1": app(status="http://[bad/status", mo=refused)}
        async with sending(store, apps, metrics, clock=lambda: 1000.0, poll=0.01):
            # Each outcome is counted once the store has recorded it.
            await eventually(lambda: sum(outcomes(metrics).values()) == 2)
        errors = sorted(error for _, _, _, _, error in store.done)
        assert errors == ["ClientConnectorError", "InvalidUrlClientError"]
        assert all(next_attempt_at is not None for _, _, _, next_attempt_at, _ in store.done)
        assert outcomes(metrics) == {("app1", "status", "retry"): 1, ("app1", "mo", "retry"): 1}
    with_store(scenario, store_setting)


def test_an_app_without_a_url_for_the_kind_is_dropped_and_nothing_is_posted(store_setting):
    async def scenario(store):
        now = time.time()
        await final_message(store, at=now)                      # app1 has no status URL
        await stored_mo(store, now, "TD", b"TD", msg_fmt=0, apps=("ghost",))   # no such app
        metrics = Metrics()
        async with Receiver() as receiver:
            apps = {"app1": app(status="", mo=receiver.url("mo"))}
            async with sending(store, apps, metrics, **FAST):
                await eventually(lambda: len(outcomes(metrics)) == 2)
                await asyncio.sleep(0.05)
        assert receiver.got == []
        assert await outbox(store) == [("app1", "status", 1, "failed", "no callback URL"),
                                       ("ghost", "mo", 1, "failed", "no callback URL")]
        assert outcomes(metrics) == {("app1", "status", "dropped"): 1,
                                     ("ghost", "mo", "dropped"): 1}
    with_store(scenario, store_setting)


def test_a_callback_whose_mo_is_gone_is_dropped(store_setting):
    async def scenario(store):
        mo_id = await stored_mo(store, time.time(), "TD", b"TD", msg_fmt=0)
        await store.query("DELETE FROM mo WHERE id = ?", (mo_id,))
        metrics = Metrics()
        async with Receiver() as receiver:
            async with sending(store, {"app1": app(mo=receiver.url("mo"))}, metrics, **FAST):
                await eventually(lambda: outcomes(metrics))
        assert receiver.got == []
        assert await outbox(store) == [("app1", "mo", 1, "failed", "gone")]
        assert outcomes(metrics) == {("app1", "mo", "dropped"): 1}
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- lifecycle

def test_pending_callbacks_survive_a_restart(store_setting):

    async def scenario():
        async with Receiver("500") as receiver:
            apps = {"app1": app(status=receiver.url("status"))}
            store = create_store(store_setting)
            await store.open()
            await final_message(store, at=time.time())
            first = Metrics()
            async with sending(store, apps, first, poll=0.01, backoff_base=0.5):
                await eventually(lambda: outcomes(first))
            await store.close()
            assert len(receiver.got) == 1                  # the retry was not due yet

            store = create_store(store_setting)
            await store.open()
            second = Metrics()
            async with sending(store, apps, second, poll=0.01, backoff_base=0.5):
                await eventually(lambda: outcomes(second), timeout=5)
            rows = await outbox(store)
            await store.close()
        assert [g.action for g in receiver.got] == ["500", "ok"]
        assert receiver.got[0].headers["X-CMPP-Event-Id"] == \
            receiver.got[1].headers["X-CMPP-Event-Id"]
        assert outcomes(first) == {("app1", "status", "retry"): 1}
        assert outcomes(second) == {("app1", "status", "delivered"): 1}
        assert rows == [("app1", "status", 2, "done", None)]
    run(scenario)


def test_close_cuts_an_attempt_short_leaves_it_queued_and_nothing_running(store_setting):
    async def scenario(store):
        await final_message(store, at=time.time())
        metrics = Metrics()
        async with Receiver("hang") as receiver:
            settings = ApiSettings(callback_timeout=30)
            sender = CallbackSender(store, {"app1": app(status=receiver.url("status"))},
                                    settings, metrics, poll=0.01)
            sender.start()
            await eventually(lambda: len(receiver.got) == 1)
            started = asyncio.get_running_loop().time()
            await sender.close()
            assert asyncio.get_running_loop().time() - started < 1.0
            await sender.close()                                   # twice is harmless
        assert await outbox(store) == [("app1", "status", 0, "pending", None)]
        assert outcomes(metrics) == {}
        assert sender._session is None
    with_store(scenario, store_setting)      # run() fails on leftover tasks


def test_a_session_given_by_the_caller_is_used_and_left_open(store_setting):
    async def scenario(store):
        await final_message(store, at=time.time())
        async with Receiver() as receiver, aiohttp.ClientSession() as session:
            apps = {"app1": app(status=receiver.url("status"))}
            async with sending(store, apps, session=session, **FAST):
                await eventually(lambda: len(receiver.got) == 1)
            assert not session.closed
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- the daemon

ACCOUNT, PASSWORD = "900001", "secret"


def daemon_config(store: str, port: int, status_url: str, mo_url: str):
    return parse_config(
        f'[gateway]\nstore = "{store}"\nreport_timeout = 3600\n'
        f'drain_timeout = 5\n'
        f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = {port}\n'
        f'account = "{ACCOUNT}"\npassword = "{PASSWORD}"\naccess_number = "10690001"\n'
        f'connections = 1\n'
        f'[apps.app1]\napp_key = "key-app1"\nmaster_secret = "{SECRET}"\n'
        f'status_callback = "{status_url}"\nmo_callback = "{mo_url}"\nchannels = ["cmcc"]\n'
        f'callback_format = "signed-json"\n')


def test_the_gateway_sends_status_and_mo_callbacks_to_the_configured_app(store_setting):
    async def scenario():
        async with Receiver() as receiver, Simulator(SimulatorConfig(
                accounts=[Account(ACCOUNT, PASSWORD)])) as sim:
            config = daemon_config(store_setting, sim.address[1], receiver.url("status"),
                                   receiver.url("mo"))
            gateway = Gateway(config, GatewayOptions(
                tuning=PoolTuning(reconnect=Backoff(0.01, 0.05)), serve_ops=False))
            await gateway.start()
            try:
                await gateway.pools["cmcc"].wait_ready()
                [accepted] = await gateway.accept([NewMessage("app1", "cmcc", MOBILE, TEXT)])
                sim.send_mo(ACCOUNT, MOBILE, "10690001", "回复")
                await eventually(lambda: {g.path for g in receiver.got} == {"/status", "/mo"},
                                 timeout=10)
            finally:
                await gateway.stop()
        bodies = {g.path: json.loads(g.body) for g in receiver.got}
        assert (bodies["/status"]["msg_id"], bodies["/status"]["status"]) == \
            (str(accepted.id), "delivered")
        assert (bodies["/mo"]["text"], bodies["/mo"]["mobile"]) == ("回复", MOBILE)
        assert all(verify(g.body, SECRET, g.headers["X-CMPP-Signature"]) for g in receiver.got)
        assert len(receiver.got) == 2
    run(scenario, timeout=30)
