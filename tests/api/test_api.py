"""The HTTP API over real HTTP, against a running gateway and the simulator."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest

from gateway.api.registry import Template
from gateway.store import PENDING, REFUSED
from tests import api_stack
from tests.aio import eventually, run
from tests.api_stack import KEY, SECRET, error

pytestmark = pytest.mark.usefixtures("api_store")

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
connections = 2
[api]
sensitive_words = ["赌博"]
repeat_window = 30
codes_per_number_per_minute = 1
@API@
[apps.shop]
app_key = "@KEY@"
master_secret = "@SECRET@"
whitelist = ["127.0.0.1", "::1"]
signature = "商城"
[apps.walled]
app_key = "walledkey"
master_secret = "walled-secret"
whitelist = ["10.0.0.0/8"]
[apps.off]
app_key = "offkey"
master_secret = "off-secret"
enabled = false
[templates.1]
type = "notification"
content = "您的订单{{order}}已发货"
[templates.2]
type = "code"
content = "验证码{{code}}，{{ttl}}分钟内有效"
ttl = @CODE_TTL@
[templates.3]
type = "marketing"
content = "限时优惠，回TD退订"
[templates.4]
app = "walled"
type = "notification"
content = "仅供walled"
[templates.5]
type = "notification"
content = "静态通知"
"""


@contextlib.asynccontextmanager
async def stack(tmp_path, api: str = "", code_ttl: float = 300):
    """The shared API stack (tests.api_stack) with this module's apps and templates; yields
    a client whose calls answer (status, body), the gateway and the simulator."""
    config = CONFIG.replace("@CODE_TTL@", repr(code_ttl))
    async with api_stack.stack(tmp_path, api, config=config) as s:
        yield Client(s.api.http, s.api.base), s.gateway, s.sim


class Client(api_stack.Client):
    async def call(self, method, path, body=None, *, raw=None, headers=None, auth=(KEY, SECRET)):
        status, answer, _ = await super().call(method, path, body, data=raw, headers=headers,
                                               auth=auth)
        return status, answer

    async def post(self, path, body=None, **kwargs):
        return await self.call("POST", path, body, **kwargs)


async def stored(gateway) -> int:
    return sum((await gateway.store.status_counts()).values())


# ----------------------------------------------------------------------------- sending

def test_a_template_sms_is_accepted_signed_sent_and_delivered(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await api.post("/v1/messages", {"mobile": "+8613800138000",
                                                           "temp_id": 1, "temp_para": {"order": "A123"}})
            assert status == 200 and isinstance(body["msg_id"], int)
            await eventually(lambda: sim.submits)
            submit = sim.submits[0].submit
            assert submit.dest_terminal_ids == ("13800138000",)
            assert submit.msg_content.decode("utf-16-be") == "【商城】您的订单A123已发货"
            async def delivered():
                return (await api.call("GET", f"/v1/messages/{body['msg_id']}"))[1]["status"]
            for _ in range(200):
                if await delivered() == "delivered":
                    break
                await asyncio.sleep(0.02)
            status, view = await api.call("GET", f"/v1/messages/{body['msg_id']}")
            assert status == 200 and view["status"] == "delivered" and view["final"]
            assert view["stat"] == "DELIVRD" and view["segments"][0]["status"] == "delivered"
    run(scenario)


def test_batch_sends_the_good_and_refuses_each_bad_recipient_alone(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await api.post("/v1/messages/batch", {"temp_id": 1, "recipients": [
                {"mobile": "13812345678", "temp_para": {"order": "1"}},
                {"mobile": "18603050709x", "temp_para": {"order": "2"}},
                {"mobile": "18603050709", "temp_para": {}},
                {"mobile": "13812345678", "temp_para": {"order": "1"}}]})
            assert status == 200 and (body["success_count"], body["failure_count"]) == (1, 3)
            good, bad_mobile, no_params, repeated = body["recipients"]
            assert set(good) == {"msg_id", "mobile"} and good["mobile"] == "13812345678"
            assert (bad_mobile["error_code"], bad_mobile["error_message"]) == ("50006", "invalid mobile")
            assert bad_mobile["temp_para"] == {"order": "2"} and bad_mobile["msg_id"].isdigit()
            assert no_params["error_code"] == "50023" and repeated["error_code"] == "50034"
            await eventually(lambda: len(sim.submits) == 1)
            status, refused = await api.call("GET", f"/v1/messages/{bad_mobile['msg_id']}")
            assert refused["status"] == "rejected" and refused["stat"] == "50006"
    run(scenario)


@pytest.mark.parametrize("recipients,code", [([], 50030), (None, 50030)])
def test_a_batch_without_recipients_is_refused_whole(tmp_path, recipients, code):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            body = {"temp_id": 1} if recipients is None else {"temp_id": 1, "recipients": recipients}
            assert error(code, 403)(await api.post("/v1/messages/batch", body))
            assert await stored(gateway) == 0
    run(scenario)


def test_a_batch_over_1000_recipients_is_refused_whole(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            recipients = [{"mobile": "13800138000", "temp_para": {"order": str(i)}} for i in range(1001)]
            assert error(50031, 403)(await api.post("/v1/messages/batch",
                                                    {"temp_id": 1, "recipients": recipients}))
            assert await stored(gateway) == 0
    run(scenario)


def test_an_idempotency_key_returns_the_first_answer_and_sends_once(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            headers = {"Idempotency-Key": "order-A123"}
            body = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "A123"}}
            first = await api.post("/v1/messages", body, headers=headers)
            again = await api.post("/v1/messages", body, headers=headers)
            assert first == again and first[0] == 200
            batch = {"temp_id": 5, "recipients": [{"mobile": "13900139000"}]}
            assert await api.post("/v1/messages/batch", batch, headers={"Idempotency-Key": "b1"}) == \
                await api.post("/v1/messages/batch", batch, headers={"Idempotency-Key": "b1"})
            assert await stored(gateway) == 2
    run(scenario)


@pytest.mark.parametrize("key", ["\x80", "clé", "k" * 256])
def test_an_idempotency_key_not_1_to_255_printable_ascii_characters_is_50007(tmp_path, key):
    """A key's bytes beyond ASCII come to the server undecodable: refused, never a 500."""
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            body = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "A1"}}
            assert error(50007, 403)(await api.post("/v1/messages", body,
                                                    headers={"Idempotency-Key": key}))
            assert await stored(gateway) == 0
    run(scenario)


# ----------------------------------------------------------------------------- codes

def test_a_code_is_sent_and_checked_once(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2})
            assert status == 200 and isinstance(body["msg_id"], str)
            await eventually(lambda: sim.submits)
            text = sim.submits[0].submit.msg_content.decode("utf-16-be")
            code = text.removeprefix("【商城】验证码")[:6]
            assert text == f"【商城】验证码{code}，5分钟内有效" and code.isdigit()
            path = f"/v1/codes/{body['msg_id']}/valid"
            wrong = str((int(code) + 1) % 1_000_000).zfill(6)
            assert await api.post(path, {"code": wrong}) == \
                (403, {"is_valid": False, "error": {"code": 50010, "message": "invalid code"}})
            assert await api.post(path, {"code": code}) == (200, {"is_valid": True})
            status, again = await api.post(path, {"code": code})
            assert (status, again["is_valid"], again["error"]["code"]) == (403, False, 50012)
            assert error(50015, 400)(await api.post(path, {}))
            assert error(50026, 403)(await api.post("/v1/codes/999999/valid", {"code": "123456"}))
            assert error(50026, 403)(await api.post("/v1/codes/abc/valid", {"code": "123456"}))
    run(scenario)


def test_a_code_is_spent_after_code_attempts_wrong_tries_and_the_tries_are_counted(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="code_attempts = 3") as (api, gateway, sim):
            status, body = await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2})
            await eventually(lambda: sim.submits)
            text = sim.submits[0].submit.msg_content.decode("utf-16-be")
            code = text.removeprefix("【商城】验证码")[:6]
            path = f"/v1/codes/{body['msg_id']}/valid"
            wrong = str((int(code) + 1) % 1_000_000).zfill(6)
            for _ in range(3):
                assert error(50010, 403)(await api.post(path, {"code": wrong}))
            for guess in (code, wrong):                 # spent: the right code too
                status, answer = await api.post(path, {"code": guess})
                assert error(50011, 403)((status, answer)) and answer["is_valid"] is False
                assert "spent" in answer["error"]["detail"]
            assert error(50026, 403)(await api.post("/v1/codes/7/valid", {"code": code}))
            assert gateway.metrics.totals()["code_checks"] == {
                ("invalid",): 3, ("spent",): 2, ("unknown",): 1}
    run(scenario)


def test_an_expired_code_is_refused(tmp_path):
    async def scenario():
        async with stack(tmp_path, code_ttl=0.2) as (api, gateway, sim):
            status, body = await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2})
            await asyncio.sleep(0.3)
            result = await api.post(f"/v1/codes/{body['msg_id']}/valid", {"code": "000000"})
            assert result[1]["error"]["code"] == 50011 and result[1]["is_valid"] is False
    run(scenario)


def test_codes_to_one_number_are_limited(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert (await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2}))[0] == 200
            assert error(50009, 403)(await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2}))
            assert (await api.post("/v1/codes", {"mobile": "13900139000", "temp_id": 2}))[0] == 200
    run(scenario)


def test_voice_codes_are_refused_saying_why(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await api.post("/v1/voice_codes", {"mobile": "13800138000", "ttl": 60})
            assert status == 403 and body["error"]["code"] == 50008
            assert "voice" in body["error"]["detail"]
    run(scenario)


# ----------------------------------------------------------------------------- refusals

REFUSALS = [
    ("no auth", dict(headers={"Authorization": ""}), 50001, 400),
    ("wrong secret", dict(auth=(KEY, "wrong")), 50002, 401),
    ("unknown key", dict(auth=("nobody", SECRET)), 50002, 401),
    ("not basic", dict(headers={"Authorization": "Bearer abc"}), 50002, 401),
    ("not base64", dict(headers={"Authorization": "Basic !!!"}), 50002, 401),
    ("whitelist", dict(auth=("walledkey", "walled-secret")), 50035, 403),
    ("app off", dict(auth=("offkey", "off-secret")), 50036, 403),
    ("empty body", dict(raw=b"", headers={"Content-Type": "application/json"}), 50003, 400),
    ("not json", dict(raw=b"{mobile", headers={"Content-Type": "application/json"}), 50007, 403),
    ("a list", dict(raw=b"[1]", headers={"Content-Type": "application/json"}), 50007, 403),
    ("text body", dict(raw=b"mobile=1", headers={"Content-Type": "text/plain"}), 50017, 415),
]


@pytest.mark.parametrize("name,kwargs,code,status", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_requests_store_nothing(tmp_path, name, kwargs, code, status):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            body = None if "raw" in kwargs else {"mobile": "13800138000", "temp_id": 5}
            assert error(code, status)(await api.post("/v1/messages", body, **kwargs))
            assert await stored(gateway) == 0
    run(scenario)


BAD_SENDS = [
    ({"temp_id": 1, "temp_para": {"order": "1"}}, 50004, 400),
    ({"mobile": "12345", "temp_id": 1}, 50006, 403),
    ({"mobile": "138001380001", "temp_id": 1}, 50006, 403),
    ({"mobile": "13800138000"}, 50005, 400),
    ({"mobile": "13800138000", "temp_id": "x"}, 50013, 403),
    ({"mobile": "13800138000", "temp_id": 99}, 50013, 403),
    ({"mobile": "13800138000", "temp_id": 4}, 50013, 403),              # another app's
    ({"mobile": "13800138000", "temp_id": 2}, 50025, 403),              # a code template
    ({"mobile": "13800138000", "temp_id": 1}, 50023, 403),
    ({"mobile": "13800138000", "temp_id": 1, "temp_para": {"other": "x"}}, 50022, 403),
    ({"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "赌博网站"}}, 50037, 403),
    ({"mobile": "13800138000", "temp_id": 1, "temp_para": ["x"]}, 50007, 403),
]


@pytest.mark.parametrize("body,code,status", BAD_SENDS, ids=[str(b[1]) for b in BAD_SENDS])
def test_bad_sends_get_their_jsms_code_and_store_nothing(tmp_path, body, code, status):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert error(code, status)(await api.post("/v1/messages", body))
            assert await stored(gateway) == 0
    run(scenario)


def test_the_same_content_to_the_same_number_is_a_repeat(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            body = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "1"}}
            assert (await api.post("/v1/messages", body))[0] == 200
            assert error(50034, 403)(await api.post("/v1/messages", body))
            assert (await api.post("/v1/messages", {**body, "temp_para": {"order": "2"}}))[0] == 200
    run(scenario)


def test_templates_waiting_or_refused_cannot_be_used(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            gateway.api.registry.set_template(Template(90, "", "notification", "x", "", PENDING))
            gateway.api.registry.set_template(Template(91, "", "notification", "y", "", REFUSED))
            assert error(50020, 403)(await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 90}))
            assert error(50021, 403)(await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 91}))
    run(scenario)


@pytest.mark.parametrize("sender", ["8613800138000", "+8613800138000", "008613800138000",
                                    "13800138000"])
def test_an_mo_td_unsubscribes_the_number_from_marketing(tmp_path, sender):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            sim.send_mo("900001", sender, "10690001", "TD")
            await eventually(lambda: "13800138000" in gateway.api.rules.unsubscribed)
            assert error(50024, 403)(await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 3}))
            assert (await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 5}))[0] == 200
    run(scenario)


def test_unknown_paths_and_wrong_methods(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert error(50016, 404)(await api.call("GET", "/v1/nothing"))
            assert error(50018, 405)(await api.call("GET", "/v1/messages"))
            assert error(50018, 405)(await api.call("DELETE", "/v1/codes"))
    run(scenario)


def test_a_body_over_the_limit_is_refused(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="max_body = 1024") as (api, gateway, sim):
            body = {"mobile": "13800138000", "temp_id": 5, "pad": "x" * 2000}
            assert error(50007, 403)(await api.post("/v1/messages", body))
    run(scenario)


def test_connections_over_the_limit_are_closed_and_the_rest_still_served(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="max_connections = 2") as (api, gateway, sim):
            host, port = gateway.api_server.address
            held = [await asyncio.open_connection(host, port) for _ in range(2)]
            await eventually(lambda: gateway.api_server.open_connections == 2)
            reader, writer = await asyncio.open_connection(host, port)
            assert await asyncio.wait_for(reader.read(), 5) == b""     # closed at once
            assert gateway.api_server.refused_connections == 1
            for _, held_writer in held:
                held_writer.close()
            await eventually(lambda: gateway.api_server.open_connections == 0)
            status, body = await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 5})
            assert status == 200 and body["msg_id"]
    run(scenario)


def test_a_message_of_another_app_is_not_found(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 5})
            other = ("walledkey", "walled-secret")
            gateway.apps._networks["walled"] = []             # let the other app in
            assert error(50026, 403)(await api.call("GET", f"/v1/messages/{body['msg_id']}", auth=other))
            assert error(50026, 403)(await api.call("GET", "/v1/messages/abc"))
    run(scenario)


def test_basic_auth_is_base64_of_key_colon_secret(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            token = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
            result = await api.post("/v1/messages", {"mobile": "13800138000", "temp_id": 5},
                                    headers={"Authorization": f"Basic {token}"})
            assert result[0] == 200
    run(scenario)
