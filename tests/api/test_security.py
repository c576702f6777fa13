"""A full run of the daemon at log level debug, through logins refused and accepted, sends,
batches, codes, failures, MO and callbacks that fail and then succeed: its whole output is
searched for the configured secrets, the phone numbers and the message content."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import sys
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway.sim import Account, Simulator, SimulatorConfig
from tests import api_stack
from tests.aio import eventually, free_ports, run

PASSWORD = "pw-Kx81-unmistakable"
MASTER_SECRET = "ms-Qv27-unmistakable"
APP_KEY = "securitykey01"
NUMBERS = ("13800138000", "13912345678", "15000000001", "18612345678")
CONTENT = ("Zorblax", "订单Zorblax已发货", "MO-Quixotic-Reply")


def config_text(store: str, sim_port: int, api_port: int, ops_port: int, callback: str) -> str:
    return f"""
[gateway]
store = "{store}"
api_listen = "127.0.0.1:{api_port}"
metrics_listen = "127.0.0.1:{ops_port}"
log_level = "debug"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = {sim_port}
account = "900001"
password = "{PASSWORD}"
access_number = "10690001"
connections = 2
[api]
callback_retry_for = 60
[apps.shop]
app_key = "{APP_KEY}"
master_secret = "{MASTER_SECRET}"
status_callback = "{callback}/status"
mo_callback = "{callback}/mo"
callback_retries = [0.2, 0.5, 1]
signature = "商城"
[templates.1]
type = "notification"
content = "订单{{{{order}}}}已发货"
[templates.2]
type = "code"
content = "验证码{{{{code}}}}"
"""


def test_no_secret_number_or_content_reaches_the_logs_of_a_full_run(tmp_path, store_setting):
    async def scenario():
        received = []

        async def receiver(request):
            received.append(await request.read())
            return web.Response(status=500 if len(received) <= 2 else 200)

        async def echo(request):                        # the URLs' JSMS verification
            return web.Response(text=request.query["echostr"])
        callback_app = web.Application()
        callback_app.router.add_post("/{kind}", receiver)
        callback_app.router.add_get("/{kind}", echo)
        runner = web.AppRunner(callback_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        callback = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

        stats = iter(["DELIVRD", "MK:0012", "DELIVRD", "EXPIRED"] * 10)
        sim = Simulator(SimulatorConfig(accounts=[Account("900001", PASSWORD)],
                                        report_delay=0.05, stat_for=lambda s: next(stats)))
        await sim.start()
        api_port, ops_port = free_ports(2)
        config = tmp_path / "gw.toml"
        config.write_text(config_text(store_setting, sim.address[1], api_port, ops_port,
                                      callback))
        # The first start logs in with a wrong password, as a mistyped secret would.
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(config.read_text().replace(PASSWORD, PASSWORD + "-wrong"))
        log = tmp_path / "daemon.log"
        try:
            with open(log, "wb") as out:
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                first = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "run", "--config", str(wrong),
                    stdout=out, stderr=out, env=env)
                await eventually(lambda: "login refused" in log.read_text(), timeout=15)
                first.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(first.wait(), 20) == 0
                daemon = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
                    stdout=out, stderr=out, env=env)
                await exercise(api_port, ops_port, sim, received)
                daemon.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(daemon.wait(), 20) == 0
        finally:
            await sim.stop()
            await runner.cleanup()

        text = log.read_text(encoding="utf-8")
        assert "login refused" in text and "logged in to" in text   # it logged, in detail:
        assert "level=debug" in text and "MO from 86186****5678" in text  # numbers masked
        assert "MO from 0086150****0001" in text
        for secret in (PASSWORD, MASTER_SECRET):
            assert secret not in text
        token = base64.b64encode(f"{APP_KEY}:{MASTER_SECRET}".encode()).decode()
        assert not [token[i:i + 12] for i in range(len(token) - 12) if token[i:i + 12] in text]
        for number in NUMBERS:                      # in any form: 138 0013 8000, 138-0013-8000
            for digits in (number, number[3:]):
                assert not re.search("[ -]?".join(digits), text), digits
        assert_clients_cannot_forge_or_flood(text)
        for content in CONTENT:
            assert content not in text
        codes = [re.search(rb"\d{6}", s.submit.msg_content.decode("utf-16-be").encode())
                 for s in sim.submits if "验证码".encode("utf-16-be") in s.submit.msg_content]
        assert codes and all(code.group().decode() not in text for code in codes)
    run(scenario, timeout=120)


def assert_clients_cannot_forge_or_flood(text: str) -> None:
    """What ``misbehave`` sent: one info line per source, no traceback, no raw control
    character, nothing at error from aiohttp."""
    assert all(line.startswith("ts=") for line in text.splitlines())
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)
    assert r"GET /v1/\r\nts=forged\x1b[31m: 404, JSMS 50016" in text
    assert "logger=aiohttp" not in text and "Traceback" not in text
    bad = [line for line in text.splitlines() if "API client 127.0.0.1: " in line]
    assert len(bad) == 2 and all(" level=info " in line for line in bad)
    assert 'msg="API client 127.0.0.1: bad HTTP request (' in bad[0]
    assert bad[1].endswith(f'more of the same, not logged one by one" '
                           f'suppressed={len(GARBAGE) - 1}')
    ops = [line for line in text.splitlines() if "metrics client " in line]
    assert len(ops) == 1 and "bad HTTP request (LineTooLong 400)" in ops[0]


def garbage() -> list[bytes]:
    """Requests that do not parse, each on a connection of its own: an Authorization header
    over the 8 KiB limit (which aiohttp quoted in the log), a header name with a control
    character, TLS on the HTTP port, a request line with NUL and ESC, and a user agent and an
    Idempotency-Key with ESC and NUL."""
    auth = "Basic " + base64.b64encode(f"{APP_KEY}:{MASTER_SECRET}".encode()).decode() * 400
    get = "GET /v1/messages/1 HTTP/1.1\r\nHost: x\r\n"
    return [f"{get}Authorization: {auth}\r\n\r\n".encode(),
            f"{get}Bad\x01Header: v\r\n\r\n".encode(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
            b"GET /\x00\x1b[31m HTTP/1.1\r\n\r\n",
            f"{get}User-Agent: \x1b[2J\x00\r\nIdempotency-Key: k\x1b\x00\r\n\r\n".encode()]


GARBAGE = garbage()


async def answer_to(port: int, data: bytes, *, close: bool = False) -> bytes:
    """What the server answers to ``data`` on a new connection (closing ours first when
    ``close``); b"" when it closes without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if close:
        writer.close()
        return b""
    try:
        return await asyncio.wait_for(reader.read(), 20)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def misbehave(api_port: int, ops_port: int, auth: str) -> None:
    """What a careless or hostile client sends: garbage, paths with CR and ESC, numbers in
    every written form, a body broken off, and a body announced far over the limit."""
    for data in GARBAGE:
        assert (await answer_to(api_port, data)).startswith(b"HTTP/1.") or data[:1] == b"\x16"
    assert (await answer_to(ops_port, GARBAGE[0])).startswith(b"HTTP/1.0 400")
    authorized = f"Host: x\r\nAuthorization: {auth}\r\n"
    paths = ["/v1/%0d%0ats=forged%1b[31m", "/v1/messages/+86%20139%201234%205678",
             "/v1/messages/86-150-0000-0001", "/v1/messages/0086%2018612345678",
             "/v1/messages/138-0013-8000"]
    for path in paths:
        answer = await answer_to(api_port, f"GET {path} HTTP/1.1\r\n{authorized}"
                                           "Connection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 40"), answer
    post = f"POST /v1/messages HTTP/1.1\r\n{authorized}Content-Type: application/json\r\n"
    await answer_to(api_port, f"{post}Content-Length: 100\r\n\r\n{{\"mobile\":".encode(),
                    close=True)
    answer = await answer_to(api_port, f"{post}Content-Length: {10**12}\r\n\r\n{{}}".encode())
    assert answer.startswith(b"HTTP/1.1 403") and b"50007" in answer


async def exercise(api_port: int, ops_port: int, sim: Simulator, received: list) -> None:
    auth = {"Authorization": aiohttp.encode_basic_auth(APP_KEY, MASTER_SECRET)}
    base = f"http://127.0.0.1:{api_port}"
    async with aiohttp.ClientSession(headers=auth) as http:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{ops_port}/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)

        async def post(path, body):
            async with http.post(base + path, json=body) as r:
                return r.status, await r.json()
        assert (await post("/v1/messages", {"mobile": NUMBERS[0], "temp_id": 1,
                                            "temp_para": {"order": CONTENT[0]}}))[0] == 200
        status, batch = await post("/v1/messages/batch", {"temp_id": 1, "recipients": [
            {"mobile": n, "temp_para": {"order": CONTENT[0]}} for n in NUMBERS[1:]] + [
            {"mobile": "12345", "temp_para": {"order": CONTENT[0]}}]})
        assert status == 200 and batch["success_count"] == 3
        status, sent = await post("/v1/codes", {"mobile": NUMBERS[0], "temp_id": 2})
        assert status == 200
        assert (await post(f"/v1/codes/{sent['msg_id']}/valid", {"code": "000000"}))[0] in \
            (200, 403)
        assert (await post("/v1/messages", {"mobile": NUMBERS[0], "temp_id": 99}))[0] == 403
        sim.send_mo("900001", "86" + NUMBERS[3], "10690001", CONTENT[2])
        sim.send_mo("900001", "0086" + NUMBERS[2], "10690001", CONTENT[2])
        await eventually(lambda: len(received) >= 7, timeout=30)   # retried after 500s
        await misbehave(api_port, ops_port, auth["Authorization"])


# ----------------------------------------------------------------------------- ids

def other_digits(number: int) -> list[str]:
    """``number`` written with the digits of other scripts, which int() and str.isdigit()
    take for ASCII ones (Arabic-Indic, full-width, Devanagari), percent-encoded for a path."""
    return [quote("".join(chr(zero + int(d)) for d in str(number)))
            for zero in (0x0660, 0xFF10, 0x0966)]


def not_ids(number: int) -> list[str]:
    """What int() would read as ``number`` (or some number) but is no id, and ids beyond the
    store's 64-bit integer."""
    return other_digits(number) + [f"{number}%20", f"%20{number}", f"+{number}", f"-{number}",
                                   f"{number}_0", "0x1", "1" * 23, str(2**63)]


def test_a_path_id_is_ascii_digits_on_every_route_and_anything_else_is_not_found(tmp_path,
                                                                                 api_store):
    async def scenario():
        async with api_stack.stack(tmp_path) as s:
            api = s.api
            status, sent, _ = await api.call("POST", "/v1/messages", {
                "mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "A1"}})
            assert status == 200
            status, code, _ = await api.call("POST", "/v1/codes",
                                             {"mobile": "13912345678", "temp_id": 2})
            assert status == 200
            sign = await api_stack.new_sign(api, "测试签名")
            template = await api_stack.new_template(api, {"type": 2, "template": "通知{{x}}"})
            ids = {"msg": int(sent["msg_id"]), "code": int(code["msg_id"]), "sign": sign,
                   "template": template}
            routes = [("GET", "/v1/messages/{}", "msg", {}, 50026),
                      ("POST", "/v1/codes/{}/valid", "code", {"body": {"code": "000000"}}, 50026),
                      ("GET", "/v1/sign/{}", "sign", {}, 50102),
                      ("PUT", "/v1/sign/{}", "sign", {"data": "sign"}, 50102),
                      ("POST", "/v1/sign/{}", "sign", {"data": "sign"}, 50102),
                      ("DELETE", "/v1/sign/{}", "sign", {}, 50102),
                      ("GET", "/v1/templates/{}", "template", {}, 50013),
                      ("PUT", "/v1/templates/{}", "template",
                       {"body": {"type": 2, "template": "改了{{x}}"}}, 50013),
                      ("DELETE", "/v1/templates/{}", "template", {}, 50013)]
            for method, path, kind, kwargs, code in routes:
                for raw in not_ids(ids[kind]):
                    if "data" in kwargs:
                        kwargs = {"data": api_stack.form(("sign", "改过签名"))}
                    answer = await api.call(method, path.format(raw), **kwargs)
                    assert api_stack.error(code, 403)(answer), (method, path, raw, answer)
            for method, path, kind, _, _ in routes:            # all still there, unchanged
                if method == "GET":
                    assert (await api.call(method, path.format(ids[kind])))[0] == 200
            assert (await api.call("GET", f"/v1/sign/{sign}"))[1]["sign"] == "测试签名"
            assert api_stack.error(50013, 403)(await api.call("POST", "/v1/messages", {
                "mobile": "13800138000", "temp_id": "١", "temp_para": {"order": "A1"}}))
    run(scenario)
