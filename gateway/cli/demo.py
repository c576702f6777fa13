"""``cmpp-gateway demo``: the whole gateway on its embedded defaults, in one process, for a
first look.

It starts the built-in ISMG simulator as the SMS center, a small receiver for callbacks, and
the gateway (SQLite store in a temporary directory, a demo app and templates, the operator's
console with a demo login), then sends a few messages through the HTTP API exactly as an
application would: a notification, a long Chinese message, a batch with one bad number, a
verification code (then checks it), one to a number the simulator reports as not existing,
and one to a user by userid (after uploading the user's numbers: the one bound to the demo
channel is used); and it makes a template that waits for review in the console. It prints
each message until it is final, and what the app's receiver sees in JSMS's callback format:
the echostr check of its URLs, then every SMS_REPORT (with its JSMS status code) and the
SMS_REPLY of an MO that unsubscribes the sender, each with its signature checked as a JSMS
receiver checks it. It ends by itself, or on Ctrl-C, and cleans up; run from a terminal, it
first keeps the console open until Ctrl-C (``--exit``: it does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.config import parse_config
from gateway.console import hash_password
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import JSMS_CODES
from gateway.store import AuditNote, ConsoleUser

KEY, SECRET = "demo-app-key", "demo-master-secret"
FAILING = "13900000000"            # the simulator reports MK:0012 (number does not exist)
USERS = [{"userid": "zhangsan", "phone": {"demo": "13800138001", "default": "13800138000"}}]

CONFIG = """
[gateway]
store = "{store}"
api_listen = "127.0.0.1:{api}"
metrics_listen = "127.0.0.1:{ops}"
log_level = "warning"
[channels.demo]
provider = "default"
host = "127.0.0.1"
port = {ismg}
account = "900001"
password = "demo-password"
access_number = "10690001"
connections = 2
[apps.demo]
app_key = "{key}"
master_secret = "{secret}"
whitelist = ["127.0.0.1"]
status_callback = "http://127.0.0.1:{receiver}/status"
mo_callback = "http://127.0.0.1:{receiver}/mo"
callback_format = "jsms"
signature = "演示"
[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货，预计{{{{day}}}}送达。"
[templates.2]
type = "code"
content = "您的验证码是{{{{code}}}}，{{{{ttl}}}}分钟内有效。"
[templates.3]
type = "notification"
content = "{{{{text}}}}"
[console]
listen = "127.0.0.1:{console}"
"""
OPERATOR = "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The application's callback endpoint, as an app written against JSMS has it: answers
    the echostr check of its URLs, checks each callback's signature and prints what it got."""

    def __init__(self, out) -> None:
        self.out = out
        self.events: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("/status", "/mo"):
            app.router.add_get(path, self.check)
            app.router.add_post(path, self.receive)
        return app

    async def check(self, request: web.Request) -> web.Response:
        self.out(f"  the receiver answers the echostr check of {request.path}")
        return web.Response(text=request.query.get("echostr", ""))

    async def receive(self, request: web.Request) -> web.Response:
        form = await request.post()
        text = f"appKey={KEY}&appMasterSecret={SECRET}&nonce={form['nonce']}" \
               f"&timestamp={form['timestamp']}"
        valid = hashlib.sha1(text.encode()).hexdigest() == form["signature"]
        kind, data = form["type"], json.loads(form["data"])
        self.events.append({"type": kind, **data})
        if kind == "SMS_REPORT":
            self.out(f"  callback SMS_REPORT: message {data['msgId']} status {data['status']} "
                     f"({JSMS_CODES.get(data['status'], '?')}), signature "
                     f"{'ok' if valid else 'BAD'}")
        else:
            self.out(f"  callback SMS_REPLY: {data['content']!r} from {data['phone']}, "
                     f"signature {'ok' if valid else 'BAD'}")
        return web.Response(text="ok")


async def run_demo(out=print, timeout: float = 60.0, stay: bool = False) -> int:
    """The demo; 0 when every message reached a final status. With ``stay``, the gateway
    and its console keep running after the messages, until the task is cancelled."""
    ports = {name: free_port() for name in ("api", "ops", "receiver", "console")}
    receiver = Receiver(out)
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", ports["receiver"]).start()
    sim = Simulator(SimulatorConfig(accounts=[Account("900001", "demo-password")],
                                    report_delay=0.5, stat_for=_stat_for))
    await sim.start()
    with tempfile.TemporaryDirectory(prefix="cmpp-gateway-demo-") as directory:
        config = parse_config(CONFIG.format(store=Path(directory) / "demo.sqlite",
                                            ismg=sim.address[1], key=KEY, secret=SECRET,
                                            **ports))
        gateway = Gateway(config, GatewayOptions())
        await gateway.start()
        password = await _console_login(gateway)
        console = f"http://127.0.0.1:{ports['console']}"
        out(f"simulator (the SMS center) on 127.0.0.1:{sim.address[1]}; API on "
            f"http://127.0.0.1:{ports['api']}; metrics on http://127.0.0.1:{ports['ops']}/metrics")
        out(f"console on {console}: sign in as {OPERATOR}, password {password}")
        try:
            await gateway.pools["demo"].wait_ready()
            status = await _scenario(f"http://127.0.0.1:{ports['api']}", sim, receiver, out, timeout)
            if stay:
                out(f"the console stays open on {console} (sign in as {OPERATOR}, password "
                    f"{password}); Ctrl-C ends the demo")
                await asyncio.Event().wait()
        finally:
            await gateway.stop()
            await sim.stop()
            await runner.cleanup()
    return status


async def _console_login(gateway: Gateway) -> str:
    """An admin account for the demo's console, with a password made for this run."""
    password = secrets.token_urlsafe(9)
    record = await asyncio.to_thread(hash_password, password)
    await gateway.store.put_console_user(ConsoleUser(OPERATOR, "admin", record),
                                         AuditNote("demo", "console user added", OPERATOR),
                                         time.time())
    return password


def _stat_for(submit) -> str:
    return "MK:0012" if submit.dest_terminal_ids[0] == FAILING else "DELIVRD"


async def _scenario(base: str, sim: Simulator, receiver: Receiver, out, timeout: float) -> int:
    headers = {"Authorization": aiohttp.encode_basic_auth(KEY, SECRET)}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as http:
        async with http.post("/v1/users", json=USERS) as response:
            out(f"POST /v1/users -> {response.status} {json.dumps(await response.json())}")
        sends = [
            ("/v1/messages", {"mobile": "13800138000", "temp_id": 1,
                              "temp_para": {"order": "A2026", "day": "明天"}}),
            ("/v1/messages", {"mobile": "+8613700137000", "temp_id": 3,
                              "temp_para": {"text": "这是一条长短信，" * 12 + "它会被分成几段发送。"}}),
            ("/v1/messages/batch", {"temp_id": 1, "recipients": [
                {"mobile": "13600136000", "temp_para": {"order": "B1", "day": "周五"}},
                {"mobile": "1360013600", "temp_para": {"order": "B2", "day": "周五"}}]}),
            ("/v1/codes", {"mobile": "13500135000", "temp_id": 2}),
            ("/v1/messages", {"mobile": FAILING, "temp_id": 1,
                              "temp_para": {"order": "C9", "day": "今天"}}),
            ("/v1/messages", {"userid": "zhangsan", "temp_id": 1,
                              "temp_para": {"order": "D7", "day": "后天"}}),
        ]
        ids, code_id = [], None
        for path, body in sends:
            async with http.post(path, json=body) as response:
                answer = await response.json()
            to = f" (userid {body['userid']})" if "userid" in body else ""
            out(f"POST {path}{to} -> {response.status} {json.dumps(answer, ensure_ascii=False)}")
            ids += _accepted_ids(answer)
            code_id = ids[-1] if path == "/v1/codes" else code_id
        await _check_code(http, sim, code_id, out)
        async with http.post("/v1/templates", json={"type": 2, "template":
                                                    "您的积分{{points}}将于月底到期"}) as response:
            out(f"POST /v1/templates -> {response.status} "
                f"{json.dumps(await response.json())} (waits for review in the console)")
        finals = await _follow(http, ids, out, timeout)
        sim.send_mo("900001", "8613800138000", "10690001", "TD")
        out("the handset 13800138000 replies \"TD\" (unsubscribe)")
        await _wait(lambda: sum(e["type"] == "SMS_REPLY" for e in receiver.events) >= 1, timeout)
        await _wait(lambda: sum(e["type"] == "SMS_REPORT" for e in receiver.events) >= len(ids),
                    5)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(_count(finals.values()).items()))
    out(f"done: {len(finals)} messages ({summary}); {len(receiver.events)} callbacks received")
    return 0 if len(finals) == len(ids) else 1


def _accepted_ids(answer: dict) -> list[str]:
    if "msg_id" in answer:
        return [str(answer["msg_id"])]
    return [r["msg_id"] for r in answer.get("recipients", []) if "error_code" not in r]


async def _check_code(http, sim: Simulator, msg_id: str, out) -> None:
    await _wait(lambda: any(s.submit.msg_content.decode("utf-16-be").startswith("【演示】您的验证码是")
                            for s in sim.submits), 10)
    text = next(s.submit.msg_content.decode("utf-16-be") for s in sim.submits
                if "验证码" in s.submit.msg_content.decode("utf-16-be"))
    code = text.split("验证码是", 1)[1][:6]
    async with http.post(f"/v1/codes/{msg_id}/valid", json={"code": code}) as response:
        out(f"POST /v1/codes/{msg_id}/valid {{\"code\": \"{code}\"}} -> {response.status} "
            f"{json.dumps(await response.json())}")


async def _follow(http, ids: list[str], out, timeout: float) -> dict[str, str]:
    """Print each message's status as it changes, until all are final."""
    seen: dict[str, str] = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for msg_id in ids:
            async with http.get(f"/v1/messages/{msg_id}") as response:
                view = await response.json()
            if seen.get(msg_id) != view["status"]:
                seen[msg_id] = view["status"]
                detail = f" ({view['stat']}, {'temporary' if view['temporary'] else 'permanent'})" \
                    if view["final"] and view["status"] != "delivered" else ""
                parts = f", {view['parts']} parts" if (view["parts"] or 1) > 1 else ""
                out(f"  message {msg_id} to {view['mobile']}: {view['status']}{detail}{parts}")
        if all(s not in ("accepted", "submitted") for s in seen.values()) and len(seen) == len(ids):
            return seen
        await asyncio.sleep(0.2)
    return {k: v for k, v in seen.items() if v not in ("accepted", "submitted")}


async def _wait(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        await asyncio.sleep(0.05)


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def demo_main(args) -> int:
    stay = not args.exit and sys.stdin.isatty() and sys.stdout.isatty()

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run_demo(timeout=args.timeout, stay=stay)
        except asyncio.CancelledError:
            print("stopped", file=sys.stderr)
            return 130
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 130


def add_demo_command(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the gateway with the built-in simulator and "
                                   "send a few messages through the HTTP API")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--exit", action="store_true", help="end after the messages, also "
                        "when run from a terminal (which otherwise keeps the console open)")
    parser.set_defaults(func=demo_main)
