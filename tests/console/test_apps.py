"""Applications made in the console: the API serves them at once, here and on another
instance sharing the store; their settings are checked like the TOML's with each problem
under its field; the secret rotates with a grace period; the configuration's apps stay
read-only."""

from __future__ import annotations

import asyncio
import html

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.config import load_config
from gateway.daemon import Gateway, GatewayOptions
from tests.aio import eventually, free_port, run
from tests.console_stack import FAST, SHOP, between, signed_in, stack
from tests.pipeline.jsms_receiver import JsmsReceiver

pytestmark = pytest.mark.usefixtures("console_store")


async def api_send(s, auth, mobile="13800138000", **extra) -> tuple[int, dict]:
    async with s.http.post(f"{s.api}/v1/messages", json={"mobile": mobile, "temp_id": 1,
                                                         "temp_para": {"order": "A1"}},
                           headers=basic(*auth), **extra) as response:
        return response.status, await response.json()


def basic(key: str, secret: str) -> dict:
    return {"Authorization": aiohttp.encode_basic_auth(key, secret)}


async def make_app(browser, s, name="Made!", **fields) -> tuple[str, str]:
    form = [("name", name), ("channels", "cmcc"), ("enabled", "on")]
    form += [(k, v) for k, v in fields.items()]
    status, _, headers = await browser.post("/apps", form)
    assert status == 303, status
    page = (await browser.get(headers["Location"]))[1]
    key = between(page, "<dt>App key</dt><dd><code>", "<")
    secret = between(page, '<code id="secret">', "<")
    return key, secret


def test_an_app_made_in_the_console_sends_through_the_api_at_once(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                key, secret = await make_app(browser, s, whitelist="127.0.0.1, ::1")
            assert len(key) == 24 and len(secret) == 32
            status, body = await api_send(s, (key, secret))
            assert status == 200, body
            view = await s.gateway.store.message(int(body["msg_id"]))
            assert view.app == "Made!" and view.channel == "cmcc"
            assert (await api_send(s, (key, "wrong-secret")))[1]["error"]["code"] == 50002
            assert (await api_send(s, SHOP))[0] == 200                  # the TOML's still works
            [entry] = [e for e in await s.gateway.store.audit_page(None, 9)
                       if e.action == "app created"]
            assert (entry.operator, entry.target) == ("alice", "Made!")
            assert "whitelist=127.0.0.1,::1" in entry.detail and secret not in entry.detail
    run(scenario, timeout=60)


def test_each_problem_of_the_form_is_shown_under_its_field_and_nothing_is_made(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                status, page, _ = await browser.post("/apps", [
                    ("name", "has space"), ("whitelist", " ".join(["10.0.0.1"] * 11)),
                    ("status_callback", "ftp://example"), ("mo_callback", "http://ok.example/mo"),
                    ("channels", "nope"), ("signature", "【x】")])
                assert status == 400
                for field, words in (("name", "use 1 to 30 letters"),
                                     ("whitelist", "more than 10 entries"),
                                     ("status_callback", "use an http:// or https:// URL"),
                                     ("channels", "'nope' is not a channel"),
                                     ("signature", "up to 20 characters, no 【】")):
                    assert f'id="f-{field}-error"' in page, field
                    assert words in html.unescape(between(page, f'id="f-{field}-error">',
                                                          "</p>")), field
                    assert f'aria-describedby="f-{field}-help f-{field}-error"' in page or \
                        f'aria-describedby="f-{field}-error"' in page, field
                assert 'value="http://ok.example/mo"' in page              # what was typed stays
                status, page, _ = await browser.post("/apps", [("name", "shop"),
                                                               ("channels", "cmcc")])
                assert status == 400 and "an app of this name exists" in page
            assert list(s.gateway.apps) == ["shop"] and await s.gateway.store.apps() == []
    run(scenario, timeout=60)


def test_whitelist_disable_and_urls_take_effect_on_the_api_at_once(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                key, secret = await make_app(browser, s)
                status, _, headers = await browser.post(f"/apps/{key}", [
                    ("whitelist", "192.0.2.0/24"), ("channels", "cmcc"), ("enabled", "on"),
                    ("status_callback", "http://127.0.0.1:9/status")])
                assert status == 303 and headers["Location"] == f"/apps/{key}?saved=1"
                assert (await api_send(s, (key, secret)))[1]["error"]["code"] == 50035
                assert s.gateway.apps["Made!"].status_callback == "http://127.0.0.1:9/status"
                await browser.post(f"/apps/{key}", [("channels", "cmcc"), ("enabled", "on")])
                assert (await api_send(s, (key, secret)))[0] == 200
                await browser.get(f"/apps/{key}")
                await browser.post(f"/apps/{key}/enabled", {"enabled": "false"})
                assert (await api_send(s, (key, secret), "13800138001"))[1]["error"][
                    "code"] == 50036
                await browser.post(f"/apps/{key}/enabled", {"enabled": "true"})
                assert (await api_send(s, (key, secret), "13800138001"))[0] == 200
            actions = [e.action for e in await s.gateway.store.audit_page(None, 6)]
            assert actions[:4] == ["app enabled", "app disabled", "app changed", "app changed"]
    run(scenario, timeout=60)


def test_a_rotated_secret_works_at_once_and_the_old_one_for_the_grace_period(tmp_path):
    now = [1_000_000.0]

    async def scenario():
        async with stack(tmp_path, "secret_grace = 600\n", clock=lambda: now[0]) as s:
            async with signed_in(s) as browser:
                key, old = await make_app(browser, s)
                await browser.get(f"/apps/{key}")
                status, _, headers = await browser.post(f"/apps/{key}/rotate", {})
                assert status == 303 and headers["Location"] == f"/apps/{key}/secret"
                page = (await browser.get(headers["Location"]))[1]
                new = between(page, '<code id="secret">', "<")
                assert new != old and "keeps working for 10.0 minutes" in page
                assert (await api_send(s, (key, new)))[0] == 200
                assert (await api_send(s, (key, old), mobile="13800138001"))[0] == 200
                now[0] += 601
                assert (await api_send(s, (key, old), mobile="13800138002"))[1]["error"][
                    "code"] == 50002
                assert (await api_send(s, (key, new), mobile="13800138003"))[0] == 200
                detail = (await s.gateway.store.audit_page(None, 1))[0]
                assert (detail.action, detail.detail) == (
                    "secret rotated", "the previous secret works for 600 s more")
    run(scenario, timeout=60)


def test_apps_of_the_configuration_are_shown_read_only(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                status, page, _ = await browser.get("/apps/shopkey")
                assert status == 200 and "comes from the configuration file" in page
                assert "Rotate" not in page and 'action="/apps/shopkey"' not in page
                for path in ("/apps/shopkey", "/apps/shopkey/rotate", "/apps/shopkey/enabled"):
                    status, page, _ = await browser.post(path, {"channels": "cmcc"})
                    assert status == 403 and "comes from the configuration file" in page
                assert (await browser.get("/apps/nokey"))[0] == 404
            assert s.gateway.apps["shop"].master_secret == SHOP[1]
    run(scenario, timeout=60)


def test_another_instance_sharing_the_store_serves_the_app_within_its_poll(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            config = load_config(s.config)
            other = Gateway(config, GatewayOptions(
                registry=CollectorRegistry(), tuning=FAST, serve_ops=False,
                serve_console=False, api_address=("127.0.0.1", 0)))
            await other.start()
            try:
                async with signed_in(s) as browser:
                    key, secret = await make_app(browser, s)
                await eventually(lambda: other.apps.by_key(key) is not None, timeout=10)
                url = f"http://127.0.0.1:{other.api_server.address[1]}/v1/messages"
                async with s.http.post(url, json={"mobile": "13800138000", "temp_id": 1,
                                                  "temp_para": {"order": "B"}},
                                       headers=basic(key, secret)) as response:
                    assert response.status == 200, await response.text()
            finally:
                await other.stop()
    run(scenario, timeout=60)


def test_callbacks_of_a_console_app_go_to_its_url_signed_with_its_secret(tmp_path):
    received = []

    async def receive(request):
        received.append((await request.read(), request.headers["X-CMPP-Signature"]))
        return aiohttp.web.Response(text="ok")

    async def scenario():
        receiver = aiohttp.web.Application()
        receiver.router.add_post("/status", receive)
        runner = aiohttp.web.AppRunner(receiver)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/status"
        try:
            async with stack(tmp_path) as s:
                async with signed_in(s) as browser:
                    key, secret = await make_app(browser, s, status_callback=url,
                                                callback_format="signed-json")
                status, body = await api_send(s, (key, secret))
                assert status == 200
                await eventually(lambda: received, timeout=20)
                from gateway.pipeline import verify
                payload, signature = received[0]
                assert verify(payload, secret, signature)
                assert f'"msg_id":"{body["msg_id"]}"' in payload.decode()
        finally:
            await runner.cleanup()
    run(scenario, timeout=60)


def test_a_gateway_with_no_app_starts_serving_the_first_one_made_elsewhere(tmp_path):
    """An instance without apps or console serves no API; once another instance's console
    makes an app in the shared store, it starts its API and callbacks."""
    async def scenario():
        async with stack(tmp_path) as s:
            text = open(s.config, encoding="utf-8").read()
            bare = tmp_path / "bare.toml"
            bare.write_text(text.split("[apps.shop]")[0], encoding="utf-8")
            other = Gateway(load_config(bare), GatewayOptions(
                registry=CollectorRegistry(), tuning=FAST, serve_ops=False,
                api_address=("127.0.0.1", 0)))
            await other.start()
            try:
                assert other.api_server is None and other.callbacks is None
                async with signed_in(s) as browser:
                    await make_app(browser, s)
                await eventually(lambda: other.api_server is not None, timeout=10)
                assert other.callbacks is not None and "Made!" in other.apps
            finally:
                await other.stop()
            await asyncio.sleep(0)
    run(scenario, timeout=60)


def test_an_apps_page_shows_each_jsms_callback_urls_echostr_check(tmp_path):
    """The status URL answers its echostr and shows passed; the MO URL refuses connections
    and shows failed with the reason; a signed-json app says its URLs are not checked."""
    async def scenario():
        async with JsmsReceiver("any", "any") as receiver, stack(tmp_path) as s:
            async with signed_in(s) as browser:
                key, _ = await make_app(browser, s, status_callback=receiver.url("status"),
                                        mo_callback=f"http://127.0.0.1:{free_port()}/mo")

                async def checks() -> str:
                    page = html.unescape((await browser.get(f"/apps/{key}"))[1])
                    return between(page, "Callback URL verification", "</table>")
                await eventually(lambda: receiver.checks, timeout=20)
                shown = await checks()
                for _ in range(100):
                    if "not checked yet" not in shown:
                        break
                    await asyncio.sleep(0.1)
                    shown = await checks()
                status_row, mo_row = shown.split("<tr class=")[1:]
                assert receiver.url("status") in status_row and "passed" in status_row
                assert "/mo" in mo_row and "failed: " in mo_row and "passed" not in mo_row
                other, _ = await make_app(browser, s, name="Signed",
                                          status_callback=receiver.url("s"),
                                          callback_format="signed-json")
                page = (await browser.get(f"/apps/{other}"))[1]
                assert "without a check of the URL" in page
    run(scenario, timeout=60)
