"""Callbacks in the jsms format, received over real HTTP by a receiver written from JSMS's
callback document (jsms_receiver.py): URLs verified with echostr before use, a failing URL's
events held until it passes, every status mapped through the provider tables, retries on the
configured schedule, a request's own callback URL, MO replies, and a restart in between; each
on both store backends (tests.conftest's store_setting)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest

from gateway.config import ApiSettings, AppConfig
from gateway.ops import Metrics
from gateway.pipeline.callbacks import CallbackSender
from gateway.status import DeliveryStatus, load_tables
from gateway.store import MoMessage, MoPart, NewMessage, Receipt, SegmentResult, create_store
from tests.aio import eventually, run, with_store
from tests.pipeline.jsms_receiver import JsmsReceiver
from tests.pipeline.test_callbacks import RecordingStore, outbox, recorded

PROVIDERS = Path(__file__).resolve().parents[2] / "fixtures" / "providers"
KEY, SECRET = "7d431e42dfa6a6d693ac2d04", "5e987ac6d2e04d95a9d8f0d1"
SETTINGS = ApiSettings(callback_timeout=2, callback_retry_for=3600,
                       callback_verify_interval=0.3)
FAST = dict(poll=0.01)


def jsms_app(status: str = "", mo: str = "", **settings) -> AppConfig:
    return AppConfig(name="app1", app_key=KEY, master_secret=SECRET, master_secret_env=None,
                     whitelist=(), status_callback=status, mo_callback=mo, channels=("cmcc",),
                     signature="", enabled=True, **settings)


@contextlib.asynccontextmanager
async def sending(store, apps, metrics=None, settings=SETTINGS, **options):
    sender = CallbackSender(store, apps, settings, metrics or Metrics(),
                            providers={"cmcc": "default"}, **{**FAST, **options})
    sender.start()
    try:
        yield sender
    finally:
        await recorded(sender)
        await sender.close()


async def settled(store, rows, timeout: float = 10.0, sort: bool = False) -> None:
    """Wait until the outbox holds ``rows`` (one row: a tuple; in any order with ``sort``):
    the sender records an attempt's outcome after the receiver has answered it, so the
    receiver's view comes first."""
    wanted = [rows] if isinstance(rows, tuple) else sorted(rows) if sort else rows
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (sorted(await outbox(store)) if sort else await outbox(store)) != wanted:
        assert loop.time() < end, await outbox(store)
        await asyncio.sleep(0.01)


async def ended(store, stat: str, at: float, codes=None, msg_id: int = 500,
                mobile: str = "13800138000", callback: str | None = None) -> int:
    """A message taken through accept -> SUBMIT_RESP -> a report with ``stat`` (classified
    by ``codes``, the default table unless given); its status callback is queued."""
    codes = codes or load_tables(PROVIDERS).for_provider("default")
    [accepted] = await store.accept([NewMessage("app1", "cmcc", mobile, "您好",
                                                callback=callback)], now=at - 2)
    await store.record_submits([SegmentResult(accepted.id, "cmcc", 1, 1, 0, msg_id,
                                              connection="cmcc#0", at=at - 1)], codes.provider)
    await store.record_receipts([Receipt("cmcc", "cmcc#0", msg_id + 1, msg_id,
                                         codes.classify(stat), received_at=at)])
    return accepted.id


async def replied(store, at: float, text: str | None, payload: bytes, msg_fmt: int = 8) -> int:
    [part] = await store.record_mo_parts([MoPart("cmcc", "cmcc#0", 77, "8613800138000",
                                                 "10690001", "", msg_fmt, 0, payload, at)])
    return await store.record_mo_message(
        MoMessage("cmcc", "8613800138000", "10690001", text, payload, msg_fmt, (part.id,), True,
                  at), apps=("app1",))


def gauge(metrics: Metrics, kind: str) -> float | None:
    child = metrics.callback_url_verified.children.get(("app1", kind))
    return None if child is None else child.value


# ----------------------------------------------------------------------------- the format

def test_urls_are_verified_first_then_reports_and_replies_arrive_as_jsms_sends_them(store_setting):
    async def scenario(store):
        now = time.time()
        message_id = await ended(store, "MK:0012", now, mobile="+8613800138000")
        await replied(store, now + 1, "退订，谢谢 & ok=1", "退订，谢谢 & ok=1".encode("utf-16-be"))
        metrics = Metrics()
        async with JsmsReceiver(KEY, SECRET) as receiver:
            apps = {"app1": jsms_app(receiver.url("status"), receiver.url("mo"))}
            async with sending(store, apps, metrics):
                await eventually(lambda: len(receiver.acknowledged) == 2)
        assert sorted(receiver.order[:2]) == ["GET /mo", "GET /status"]      # checks first
        assert sorted(receiver.order[2:]) == ["POST /mo", "POST /status"]
        assert all(check.answered == check.echostr for check in receiver.checks)
        [report], [reply] = receiver.of_type("SMS_REPORT"), receiver.of_type("SMS_REPLY")
        assert report.path == "/status" and reply.path == "/mo"
        assert report.data == {"msgId": str(message_id), "status": 4004,
                               "receiveTime": round(now * 1000), "phone": "13800138000"}
        assert reply.data == {"phone": "13800138000", "replyTime": round((now + 1) * 1000),
                              "content": "退订，谢谢 & ok=1"}
        assert report.signature_ok and reply.signature_ok and report.nonce != reply.nonce
        assert report.content_type == "application/x-www-form-urlencoded; charset=UTF-8"
        assert receiver.problems == []
        assert (gauge(metrics, "status"), gauge(metrics, "mo")) == (1, 1)
        assert metrics.callback_verifications.children[("passed",)].value == 2
        assert await outbox(store) == [("app1", "status", 1, "done", None),
                                       ("app1", "mo", 1, "done", None)]
    with_store(scenario, store_setting)


def test_a_binary_reply_cannot_be_an_sms_reply_and_is_dropped(store_setting):
    async def scenario(store):
        await replied(store, time.time(), None, b"\x00\xff", msg_fmt=4)
        metrics = Metrics()
        async with JsmsReceiver(KEY, SECRET) as receiver:
            async with sending(store, {"app1": jsms_app(mo=receiver.url("mo"))}, metrics):
                await eventually(lambda: metrics.callbacks.children)
        assert receiver.callbacks == []
        assert await outbox(store) == [("app1", "mo", 1, "failed",
                                        "binary MO: SMS_REPLY carries text only")]
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- verification

def test_a_url_that_fails_verification_holds_its_events_until_it_passes(store_setting, caplog):
    caplog.set_level(logging.INFO, logger="cmpp_gateway.callbacks")

    async def scenario(store):
        message_id = await ended(store, "DELIVRD", time.time())
        metrics = Metrics()
        async with JsmsReceiver(KEY, SECRET, fail_checks=2) as receiver:
            status_url = receiver.url("sms/status?token=s3cr3t")
            async with sending(store, {"app1": jsms_app(status_url)}, metrics) as sender:
                await eventually(lambda: len(receiver.checks) == 1)
                await eventually(lambda: metrics.callbacks_held.children)
                assert receiver.callbacks == [] and gauge(metrics, "status") == 0
                assert await outbox(store) == [("app1", "status", 0, "pending",
                                                "URL not verified: HTTP 404")]
                [unverified] = sender.report()["unverified_urls"]
                assert (unverified["app"], unverified["kind"], unverified["url"],
                        unverified["error"]) == ("app1", "status", status_url, "HTTP 404")
                await eventually(lambda: len(receiver.checks) == 2)      # checked again
                await eventually(lambda: len(receiver.acknowledged) == 1)  # third time: passed
                assert sender.report() == {"unverified_urls": []}
        assert [c.answered == c.echostr for c in receiver.checks] == [False, False, True]
        assert receiver.order == ["GET /sms/status"] * 3 + ["POST /sms/status"]
        assert receiver.acknowledged[0].data["msgId"] == str(message_id)
        assert await outbox(store) == [("app1", "status", 1, "done", None)]   # one attempt
        assert gauge(metrics, "status") == 1
        assert metrics.callback_verifications.children[("failed",)].value == 2
        lines = [r.getMessage() for r in caplog.records]
        failed = [line for line in lines if "failed its echostr check" in line]
        assert len(failed) == 1 and "HTTP 404" in failed[0]                    # not repeated
        assert "/sms/status (app app1 status_callback)" in failed[0]
        assert any("passed its echostr check" in line for line in lines)
        assert not any("s3cr3t" in line for line in lines)                  # no query logged
    with_store(scenario, store_setting)


def test_an_event_whose_url_never_passes_is_given_up_after_callback_retry_for(store_setting):
    clock = [1000.0]

    async def scenario(plain):
        store = RecordingStore(plain)
        await ended(plain, "DELIVRD", 1000.0)
        metrics = Metrics()
        async with JsmsReceiver(KEY, SECRET, fail_checks=99) as receiver:
            settings = ApiSettings(callback_retry_for=600, callback_verify_interval=60)
            async with sending(store, {"app1": jsms_app(receiver.url("status"))}, metrics,
                               settings, clock=lambda: clock[0]):
                await eventually(lambda: metrics.callbacks_held.children)
                [entry] = await plain.due_callbacks(1060.0, 10)
                assert await plain.due_callbacks(1059.9, 10) == []   # held to the next check
                clock[0] = 1000.0 + 600                               # callback_retry_for
                await eventually(lambda: store.done)
        assert receiver.callbacks == []
        assert await outbox(plain) == [("app1", "status", 1, "failed",
                                        "URL not verified: wrong echostr")]
        assert metrics.callbacks.children[("app1", "status", "failed")].value == 1
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- statuses

def test_each_status_reaches_the_receiver_as_the_provider_tables_code(tmp_path, store_setting):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "mine.toml").write_text(
        'extends = "default"\n[jsms]\nexpired = 4100\n[codes]\n'
        '"MK:0099" = { status = "rejected", meaning = "center blacklist", jsms = 4002 }\n')
    tables = load_tables(PROVIDERS, tmp_path / "tables")
    cases = [("default", "DELIVRD", 4001), ("default", "DB:0141", 4002),
             ("default", "MK:0024", 4003), ("default", "MK:0012", 4004),
             ("default", "MK:0112", 4005), ("default", "HD:29", 4006),
             ("default", "MN:0000", 4010), ("default", "UNDELIV", 4100),
             ("default", "EXPIRED", 4003), ("default", "CJ:0042", 4010),
             ("mine", "MK:0099", 4002), ("mine", "EXPIRED", 4100), ("mine", "MK:0012", 4004),
             ("example-aggregator", "SGIP:25", 4003), ("example-aggregator", "HD:29", 4006)]

    async def scenario(store):
        now = time.time()
        expected = {}
        for n, (provider, stat, code) in enumerate(cases):
            message_id = await ended(store, stat, now, tables.for_provider(provider),
                                     msg_id=1000 + 2 * n)
            expected[str(message_id)] = code
        # No report decides these: a SUBMIT refused (Result 9) and a report timeout.
        refused, silent = (a.id for a in await store.accept(
            [NewMessage("app1", "cmcc", "13800138000", "您好")] * 2, now=now))
        await store.record_submits([SegmentResult(refused, "cmcc", 1, 1, 9, at=now,
                                                  status=DeliveryStatus.REJECTED,
                                                  stat="Result 9")], "default")
        await store.record_submits([SegmentResult(silent, "cmcc", 1, 1, 0, 4242, at=now - 10)],
                                   "default")
        assert await store.expire_reports(now, timeout=5) == [silent]
        expected.update({str(refused): 4100, str(silent): 4100})
        async with JsmsReceiver(KEY, SECRET) as receiver:
            async with sending(store, {"app1": jsms_app(receiver.url("status"))},
                               tables=tables):
                await eventually(lambda: len(receiver.acknowledged) == len(expected))
        got = {c.data["msgId"]: c.data["status"] for c in receiver.of_type("SMS_REPORT")}
        assert got == expected
        assert receiver.problems == [] and all(c.signature_ok for c in receiver.callbacks)
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- retries

def test_a_failing_receiver_is_retried_on_the_apps_schedule_and_gets_the_event_once(store_setting):
    async def scenario(plain):
        store = RecordingStore(plain)
        message_id = await ended(plain, "DELIVRD", time.time())
        async with JsmsReceiver(KEY, SECRET, fail_posts=2) as receiver:
            apps = {"app1": jsms_app(receiver.url("status"), callback_retries=(0.3, 0.6))}
            async with sending(store, apps):
                await eventually(lambda: len(receiver.acknowledged) == 1)
                await eventually(lambda: len(store.done) == 3)
        posts = receiver.callbacks
        assert [c.answered for c in posts] == [500, 500, 200]
        assert posts[1].received_at - posts[0].received_at >= 0.3
        assert posts[2].received_at - posts[1].received_at >= 0.6
        waits = [next_at - now for _, _, now, next_at, _ in store.done[:2]]
        assert waits == [pytest.approx(0.3), pytest.approx(0.6)]
        assert store.done[2][1:4:2] == (True, None)
        assert len({c.nonce for c in posts}) == 3 and all(c.signature_ok for c in posts)
        assert all(c.data == posts[0].data for c in posts)
        assert posts[0].data["msgId"] == str(message_id)
        assert len({c.headers["X-CMPP-Event-Id"] for c in posts}) == 1
        assert await outbox(plain) == [("app1", "status", 3, "done", None)]
    with_store(scenario, store_setting)


def test_the_default_jsms_schedule_is_3_minutes_1_hour_12_hours_then_given_up(store_setting):
    clock = [1000.0]

    async def scenario(plain):
        store = RecordingStore(plain)
        await ended(plain, "DELIVRD", 1000.0)
        async with JsmsReceiver(KEY, SECRET, fail_posts=99) as receiver:
            async with sending(store, {"app1": jsms_app(receiver.url("status"))},
                               clock=lambda: clock[0]):
                for attempt in range(1, 5):
                    await eventually(lambda attempt=attempt: len(store.done) == attempt)
                    if store.done[-1][3] is not None:
                        clock[0] = store.done[-1][3]              # when the next one is due
        waits = [None if next_at is None else next_at - now
                 for _, _, now, next_at, _ in store.done]
        assert waits == [180, 3600, 43200, None]
        assert len(receiver.callbacks) == 4
        assert await outbox(plain) == [("app1", "status", 4, "failed", "HTTP 500")]
    with_store(scenario, store_setting)


def test_events_survive_a_restart_are_verified_again_and_acknowledged_ones_stay_sent(
        store_setting):

    async def scenario():
        async with JsmsReceiver(KEY, SECRET, fail_posts=1) as receiver:
            apps = {"app1": jsms_app(receiver.url("status"), callback_retries=(0.5,))}
            store = create_store(store_setting)
            await store.open()
            first = await ended(store, "DELIVRD", time.time(), msg_id=500)
            done = await ended(store, "MK:0012", time.time(), msg_id=600)
            async with sending(store, apps):
                await eventually(lambda: len(receiver.callbacks) == 2)
                await settled(store, [("app1", "status", 1, "done", None),
                                      ("app1", "status", 1, "pending", "HTTP 500")], sort=True)
            await store.close()                              # the retry was not due yet
            assert sorted(c.answered for c in receiver.callbacks) == [200, 500]
            failed = next(c.data["msgId"] for c in receiver.callbacks if c.answered == 500)

            store = create_store(store_setting)                # the gateway starts again
            await store.open()
            async with sending(store, apps):
                await eventually(lambda: len(receiver.acknowledged) == 2)
            rows = await outbox(store)
            await store.close()
        assert len(receiver.checks) == 2                       # verified at each start
        assert [c.data["msgId"] for c in receiver.callbacks[2:]] == [failed]
        assert sorted(c.data["msgId"] for c in receiver.acknowledged) == \
            sorted([str(first), str(done)])                     # each event acknowledged once
        assert sorted(rows) == [("app1", "status", 1, "done", None),
                                ("app1", "status", 2, "done", None)]
    run(scenario)


# ----------------------------------------------------------------------------- a request's URL

def test_a_messages_own_callback_url_replaces_the_apps_and_is_verified_first(store_setting):
    async def scenario(store):
        async with JsmsReceiver(KEY, SECRET) as app_receiver, \
                JsmsReceiver(KEY, SECRET, fail_checks=1) as own:
            own_url = own.url("orders/7/status")
            mine = await ended(store, "MK:0024", time.time(), msg_id=500, callback=own_url)
            usual = await ended(store, "DELIVRD", time.time(), msg_id=600)
            async with sending(store, {"app1": jsms_app(app_receiver.url("status"))}):
                await eventually(lambda: len(own.acknowledged) == 1)
                await eventually(lambda: len(app_receiver.acknowledged) == 1)
        assert [c.data["msgId"] for c in own.acknowledged] == [str(mine)]
        assert own.acknowledged[0].data["status"] == 4003
        assert [c.data["msgId"] for c in app_receiver.acknowledged] == [str(usual)]
        assert own.order == ["GET /orders/7/status", "GET /orders/7/status",
                             "POST /orders/7/status"]               # failed once, then passed
    with_store(scenario, store_setting)


def test_many_events_for_one_new_url_share_one_check(store_setting):
    async def scenario(store):
        async with JsmsReceiver(KEY, SECRET) as own:
            url = own.url("batch")
            for n in range(20):
                await ended(store, "DELIVRD", time.time(), msg_id=1000 + 2 * n, callback=url)
            async with sending(store, {"app1": jsms_app()}):
                await eventually(lambda: len(own.acknowledged) == 20)
        assert len(own.checks) == 1
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- the daemon

DAEMON = """
[gateway]
store = "{store}"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = {port}
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
[api]
callback_verify_interval = 0.3
[apps.shop]
app_key = "{key}"
master_secret = "{secret}"
status_callback = "{status}"
mo_callback = "{mo}"
[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货"
[templates.2]
type = "code"
content = "验证码{{{{code}}}}"
"""


def test_the_gateway_reports_a_failing_url_and_sends_to_a_requests_own_url(store_setting):
    import aiohttp

    from gateway.config import parse_config
    from gateway.daemon import Gateway, GatewayOptions
    from gateway.sim import Account, Simulator, SimulatorConfig
    from tests.api_stack import FAST as TUNING
    from tests.api_stack import Client

    async def scenario():
        async with JsmsReceiver(KEY, SECRET) as app_receiver, \
                JsmsReceiver(KEY, SECRET, fail_checks=10_000) as broken, \
                JsmsReceiver(KEY, SECRET) as own, \
                Simulator(SimulatorConfig(accounts=[Account("900001", "secret")],
                                          report_delay=0.01)) as sim:
            config = parse_config(DAEMON.format(
                store=store_setting, port=sim.address[1], key=KEY, secret=SECRET,
                status=app_receiver.url("status"), mo=broken.url("mo")))
            gateway = Gateway(config, GatewayOptions(
                tuning=TUNING, api_address=("127.0.0.1", 0), ops_address=("127.0.0.1", 0)))
            await gateway.start()
            try:
                await gateway.pools["cmcc"].wait_ready()
                async with aiohttp.ClientSession() as http:
                    await exercise(gateway, Client(http, "http://127.0.0.1:"
                                                   f"{gateway.api_server.address[1]}"),
                                   http, sim, app_receiver, broken, own)
            finally:
                await gateway.stop()

    async def exercise(gateway, api, http, sim, app_receiver, broken, own):
        ops = f"http://127.0.0.1:{gateway.ops.address[1]}"
        await eventually(lambda: app_receiver.checks and broken.checks)
        async with http.get(f"{ops}/readyz") as response:
            assert response.status == 200                      # the API still serves
            [unverified] = (await response.json())["callbacks"]["unverified_urls"]
        assert (unverified["app"], unverified["kind"], unverified["error"]) == \
            ("shop", "mo", "HTTP 404")
        async with http.get(f"{ops}/metrics") as response:
            metrics = await response.text()
        assert 'cmpp_callback_url_verified{app="shop",kind="status"} 1.0' in metrics
        assert 'cmpp_callback_url_verified{app="shop",kind="mo"} 0.0' in metrics

        auth = (KEY, SECRET)
        params = {"order": "A1"}
        answers = [
            await api.call("POST", "/v1/messages", {"mobile": "13800138000", "temp_id": 1,
                                                    "temp_para": params}, auth=auth),
            await api.call("POST", "/v1/messages", {"mobile": "13800138001", "temp_id": 1,
                                                    "temp_para": params,
                                                    "callback": own.url("one")}, auth=auth),
            await api.call("POST", "/v1/messages/batch", {
                "temp_id": 1, "callback": own.url("batch"),
                "recipients": [{"mobile": "13800138002", "temp_para": params},
                               {"mobile": "13800138003", "temp_para": params}]}, auth=auth),
            await api.call("POST", "/v1/codes", {"mobile": "13800138004", "temp_id": 2,
                                                 "callback": own.url("code")}, auth=auth)]
        assert [status for status, _, _ in answers] == [200] * 4
        for bad in ("ftp://example.com/x", "http://", 5, "http://a.example/" + "x" * 1024):
            status, body, _ = await api.call("POST", "/v1/messages", {
                "mobile": "13800138005", "temp_id": 1, "temp_para": params, "callback": bad},
                auth=auth)
            assert (status, body["error"]["code"]) == (403, 50007), bad
        usual = str(answers[0][1]["msg_id"])
        mine = [str(answers[1][1]["msg_id"]), *(r["msg_id"] for r in answers[2][1]["recipients"]),
                answers[3][1]["msg_id"]]
        await eventually(lambda: len(own.acknowledged) == 4, timeout=10)
        await eventually(lambda: len(app_receiver.acknowledged) == 1, timeout=10)
        assert sorted(c.data["msgId"] for c in own.acknowledged) == sorted(mine)
        assert {c.path for c in own.acknowledged} == {"/one", "/batch", "/code"}
        assert sorted(c.path for c in own.checks) == ["/batch", "/code", "/one"]
        assert [c.data["msgId"] for c in app_receiver.acknowledged] == [usual]
        assert all(c.data["status"] == 4001 and c.signature_ok
                   for c in own.acknowledged + app_receiver.acknowledged)

        sim.send_mo("900001", "8613800138000", "10690001", "TD")   # to the broken URL: held
        await eventually(lambda: gateway.metrics.callbacks_held.children.get(("shop", "mo")))
        assert broken.callbacks == [] and own.problems == app_receiver.problems == []

    run(scenario, timeout=60)


def test_the_verifier_keeps_the_apps_urls_and_forgets_the_least_used_others():
    from gateway.pipeline.jsms import UrlVerifier

    async def scenario():
        import aiohttp
        async with JsmsReceiver(KEY, SECRET) as receiver, aiohttp.ClientSession() as http:
            verifier = UrlVerifier(lambda: http, 2, 60, Metrics())
            verifier.LIMIT = 4                                    # the app's URL and 3 others
            verifier.watch({"app1": jsms_app(receiver.url("app"))})
            urls = [receiver.url(f"own/{n}") for n in range(4)]
            assert await verifier.check(receiver.url("app"))
            for url in urls[:3]:
                assert await verifier.check(url)
            assert await verifier.check(urls[0])                   # used again: kept
            assert await verifier.check(urls[3])                   # urls[1] is forgotten
            assert [verifier.state(u) is not None for u in urls] == [True, False, True, True]
            assert verifier.state(receiver.url("app")).verified
            assert len(receiver.checks) == 5                       # urls[0] was not re-checked
            await verifier.close()
    run(scenario)


def test_a_url_changed_by_a_reload_is_verified_before_the_waiting_events_go_to_it(store_setting):
    async def scenario(store):
        message_id = await ended(store, "DELIVRD", time.time())
        async with JsmsReceiver(KEY, SECRET, fail_posts=1) as old, \
                JsmsReceiver(KEY, SECRET) as new:
            async with sending(store, {"app1": jsms_app(old.url("v1"),
                                                        callback_retries=(0.3,))}):
                await eventually(lambda: old.callbacks)               # answered 500
                await settled(store, ("app1", "status", 1, "pending", "HTTP 500"))
            # The reloaded configuration names another URL: a new sender, as after SIGHUP.
            async with sending(store, {"app1": jsms_app(new.url("v2"),
                                                        callback_retries=(0.3,))}):
                await eventually(lambda: new.acknowledged)
                await settled(store, ("app1", "status", 2, "done", None))
        assert old.order == ["GET /v1", "POST /v1"]
        assert new.order == ["GET /v2", "POST /v2"]
        assert new.acknowledged[0].data["msgId"] == str(message_id)
        assert await outbox(store) == [("app1", "status", 2, "done", None)]
    with_store(scenario, store_setting)
