"""`cmpp-gateway demo`: the README's first command shows messages reaching their end."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

from gateway.cli.demo import run_demo
from tests.aio import eventually, run
from tests.console_stack import Browser


def test_the_demo_sends_through_the_api_and_sees_every_message_end():
    lines: list[str] = []

    async def scenario():
        assert await run_demo(out=lines.append, timeout=30) == 0
    run(scenario, timeout=60)
    text = "\n".join(lines)
    assert text.count("POST /v1/messages -> 200") == 3 and '"error_code": "50006"' in text
    assert 'POST /v1/users -> 200 {"success_count": 1, "failure_count": 0' in text
    assert "POST /v1/messages (userid zhangsan) -> 200" in text
    assert "message 7 to 13800138001: delivered" in text       # the number bound to the channel
    assert '{"is_valid": true}' in text
    assert "message 6 to 13900000000: undeliverable (MK:0012, permanent)" in text
    assert text.count("the receiver answers the echostr check of") == 2
    assert text.count("callback SMS_REPORT: message") == 6
    assert "callback SMS_REPORT: message 6 status 4004 (number does not exist)" in text
    assert "callback SMS_REPORT: message 1 status 4001 (delivered)" in text
    assert "callback SMS_REPLY: 'TD' from 13800138000" in text
    assert text.count("signature ok") == 7 and "BAD" not in text
    assert lines[-1] == "done: 6 messages (5 delivered, 1 undeliverable); 7 callbacks received"
    assert re.search(r"^console on http://127\.0\.0\.1:\d+: sign in as demo, password \S{12}$",
                     text, re.M)
    assert 'POST /v1/templates -> 200 {"temp_id": 1001} (waits for review in the console)' \
        in text


def test_the_demo_keeps_its_console_open_when_asked_and_its_login_works():
    lines: list[str] = []

    async def scenario():
        demo = asyncio.get_running_loop().create_task(run_demo(out=lines.append, timeout=30,
                                                               stay=True))
        await eventually(lambda: "Ctrl-C ends the demo" in (lines or [""])[-1], timeout=40)
        url, password = re.search(r"console on (\S+): sign in as demo, password (\S+)",
                                  "\n".join(lines)).groups()
        browser = Browser(None, url)
        try:
            assert (await browser.login("demo", password))[0] == 303
            status, page, _ = await browser.get("/reviews")
            assert status == 200 and 'id="template-1001"' in page and "【演示】您的积分" in page
        finally:
            await browser.close()
            demo.cancel()
            await asyncio.gather(demo, return_exceptions=True)
    run(scenario, timeout=60)


def test_the_demo_command_ends_by_itself_with_status_0():
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--timeout", "30"],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("done: 6 messages")
