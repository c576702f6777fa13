"""A full run of the daemon at log level debug, through logins refused and accepted, sends,
batches, codes, failures, MO and callbacks that fail and then succeed: its whole output is
searched for the configured secrets, the phone numbers and the message content."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
from aiohttp import web

from gateway.sim import Account, Simulator, SimulatorConfig
from tests.aio import eventually, free_port, run

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
        callback_app = web.Application()
        callback_app.router.add_post("/{kind}", receiver)
        runner = web.AppRunner(callback_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        callback = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

        stats = iter(["DELIVRD", "MK:0012", "DELIVRD", "EXPIRED"] * 10)
        sim = Simulator(SimulatorConfig(accounts=[Account("900001", PASSWORD)],
                                        report_delay=0.05, stat_for=lambda s: next(stats)))
        await sim.start()
        api_port, ops_port = free_port(), free_port()
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
        for secret in (PASSWORD, MASTER_SECRET):
            assert secret not in text
        for number in NUMBERS:
            assert number not in text and number[3:] not in text
        for content in CONTENT:
            assert content not in text
        codes = [re.search(rb"\d{6}", s.submit.msg_content.decode("utf-16-be").encode())
                 for s in sim.submits if "验证码".encode("utf-16-be") in s.submit.msg_content]
        assert codes and all(code.group().decode() not in text for code in codes)
    run(scenario, timeout=120)


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
        await eventually(lambda: len(received) >= 6, timeout=30)   # retried after 500s
