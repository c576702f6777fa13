"""Reviews, messages and the overview over HTTP: a decision reaches the running API at once,
a rejection needs its reason; a test message goes the API's way and its page shows its
segments, Msg_Ids, raw Stat, reports and callbacks; the overview shows the channels."""

from __future__ import annotations

import asyncio
import html

import aiohttp
import pytest

from gateway.api import templates_signs
from gateway.store import APPROVED, REFUSED
from gateway.store.sqlite import search as sqlite_search
from tests.aio import eventually, free_port, run
from tests.api_stack import PNG
from tests.console_stack import SHOP, between, signed_in, stack
from tests.store.test_console_store import search_of

pytestmark = pytest.mark.usefixtures("console_store")

LONG = "尊敬的客户，" + "您的订单已经发货，请注意查收。" * 6


async def api(s, method: str, path: str, **kwargs) -> tuple[int, dict]:
    headers = {"Authorization": aiohttp.encode_basic_auth(*SHOP)}
    async with s.http.request(method, s.api + path, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def make_template(s, content: str = LONG) -> int:
    status, body = await api(s, "POST", "/v1/templates",
                             json={"type": 2, "template": content})
    assert status == 200, body
    return body["temp_id"]


def test_an_approval_in_the_console_reaches_the_running_api_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(templates_signs, "REVIEW_POLL", 3600.0)   # only the console's wake-up
    async def scenario():
        async with stack(tmp_path) as s:
            temp_id = await make_template(s)
            send = {"mobile": "13800138000", "temp_id": temp_id}
            assert (await api(s, "POST", "/v1/messages", json=send))[1]["error"]["code"] == 50020
            async with signed_in(s) as browser:
                page = (await browser.get("/reviews"))[1]
                card = between(page, f'id="template-{temp_id}"', "</article>")
                assert "【商城】尊敬的客户" in card and "10690001" in card
                assert f"{len('【商城】' + LONG)} characters, 2 SMS" in card
                status, _, headers = await browser.post(f"/reviews/template/{temp_id}",
                                                        {"decision": "approve"})
                assert status == 303 and headers["Location"] == f"/reviews?done=template-{temp_id}"
                await eventually(lambda: s.gateway.api.registry.templates[temp_id].status
                                 == APPROVED, timeout=10)
                status, body = await api(s, "POST", "/v1/messages", json=send)
                assert status == 200, body
                page = (await browser.get("/reviews"))[1]
                assert f'id="template-{temp_id}"' not in page and "Nothing waits" in page
            [entry] = [e for e in await s.gateway.store.audit_page(None, 10)
                       if e.action == "template approved"]
            assert (entry.operator, entry.target) == ("alice", f"template {temp_id}")
    run(scenario, timeout=60)


def test_a_rejection_needs_a_reason_which_is_kept_and_shown(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            form = aiohttp.FormData()
            form.add_field("sign", "新签名")
            form.add_field("image0", PNG, filename="a.png", content_type="image/png")
            status, body = await api(s, "POST", "/v1/sign", data=form)
            sign_id = body["sign_id"]
            async with signed_in(s) as browser:
                page = (await browser.get("/reviews"))[1]
                card = between(page, f'id="sign-{sign_id}"', "</article>")
                assert "【新签名】" in card and f"/reviews/sign/{sign_id}/images/0" in card
                status, image, headers = await browser.get(f"/reviews/sign/{sign_id}/images/0")
                assert status == 200 and headers["Content-Type"] == "image/png"
                status, page, _ = await browser.post(f"/reviews/sign/{sign_id}",
                                                     {"decision": "reject", "reason": " "})
                assert status == 400
                assert 'aria-invalid="true"' in between(page, f'id="sign-{sign_id}"', "</form>")
                assert "Give a reason" in between(page, f'id="sign-{sign_id}-reason-error">',
                                                  "</p>")
                assert [r["status"] for r in await s.gateway.store.signatures()] == [0]
                await browser.post(f"/reviews/sign/{sign_id}",
                                   {"decision": "reject", "reason": "需要营业执照"})
                assert [r["status"] for r in await s.gateway.store.signatures()] == [REFUSED]
                decided = between((await browser.get("/reviews"))[1], "Decided lately", "</table>")
                assert "需要营业执照" in decided and "rejected" in decided
                assert (await browser.post("/reviews/sign/999", {"decision": "approve"}))[0] \
                    == 404
            [entry] = [e for e in await s.gateway.store.audit_page(None, 10)
                       if e.action == "signature rejected"]
            assert entry.detail == "需要营业执照"
    run(scenario, timeout=60)


def test_a_test_message_goes_the_apis_way_and_its_page_shows_every_step(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                dead = f"http://127.0.0.1:{free_port()}/status"
                await browser.post("/apps", [("name", "Tester"), ("channels", "cmcc"),
                                             ("enabled", "on"), ("status_callback", dead),
                                             ("callback_format", "signed-json")])
                page = (await browser.get("/messages/send?app=Tester&template=1"))[1]
                assert 'for="p-order"' in page
                assert between(page, 'class="bubble">', "</div>") == \
                    "您的订单<mark>{{order}}</mark>已发货"                # no signature: none
                assert "16 characters, 1 SMS" in page
                status, page, _ = await browser.post("/messages/send", {
                    "app": "Tester", "template": "1", "mobile": "1380013", "p.order": "X"})
                assert status == 400 and 'id="mobile-error"' in page
                assert "invalid mobile (50006)" in page
                assert sum((await s.gateway.store.status_counts()).values()) == 0
                status, _, headers = await browser.post("/messages/send", {
                    "app": "Tester", "template": "1", "mobile": "13800138000",
                    "p.order": "Z9"})
                assert status == 303
                message_id = int(headers["Location"].split("/")[2].split("?")[0])

                async def settled() -> bool:
                    view = await s.gateway.store.message(message_id)
                    callbacks = await s.gateway.store.message_callbacks(view)
                    return view.status == "delivered" and callbacks and callbacks[0].attempts
                for _ in range(400):
                    if await settled():
                        break
                    await asyncio.sleep(0.05)
                assert await settled()
                view = await s.gateway.store.message(message_id)
                assert view.text == "您的订单Z9已发货" and view.app == "Tester"
                page = (await browser.get(f"/messages/{message_id}"))[1]
                msg_id = str(view.segments[0].msg_id)
                segments = between(page, "<h2>Segments</h2>", "</table>")
                assert msg_id in segments and "DELIVRD" in segments and "cmcc#0" in segments
                reports = between(page, "<h2>Status reports</h2>", "</table>")
                assert msg_id in reports and "<code>DELIVRD</code>" in reports
                callbacks = between(page, "<h2>Callbacks</h2>", "</table>")
                assert "Tester" in callbacks and "ClientConnectorError" in callbacks
                where = page.find("您的订单Z9已发货")
                assert where < 0, page[where - 300:where + 50]
                assert "hidden, 9 characters" in page
    run(scenario, timeout=60)


def test_searches_find_messages_and_say_when_a_search_is_too_broad(tmp_path, monkeypatch):
    async def scenario():
        async with stack(tmp_path) as s:
            for i, mobile in enumerate(("13800138000", "13900139000", "13800138000")):
                status, _ = await api(s, "POST", "/v1/messages", json={
                    "mobile": mobile, "temp_id": 1, "temp_para": {"order": f"N{i}"}})
                assert status == 200
            async with signed_in(s) as browser:
                def ids(page: str) -> list[str]:
                    rows = between(page, "<tbody>", "</tbody>")
                    return [part.split('"')[0] for part in rows.split('href="/messages/')[1:]]
                assert ids((await browser.get("/messages"))[1]) == ["3", "2", "1"]
                assert ids((await browser.get("/messages?number=%2B8613800138000"))[1]) == \
                    ["3", "1"]
                assert ids((await browser.get("/messages?msg_id=2&app=shop"))[1]) == ["2"]
                assert ids((await browser.get("/messages?app=other"))[1]) == []
                assert ids((await browser.get("/messages?since=2000-01-01T00:00"))[1]) == \
                    ["3", "2", "1"]
                assert ids((await browser.get("/messages?until=2000-01-01T00:00"))[1]) == []
                status, page, _ = await browser.get("/messages?msg_id=x&since=yesterday")
                assert 'id="msg_id-error"' in page and 'id="since-error"' in page
                searches = search_of(s.gateway.store)          # no budget at all
                monkeypatch.setattr(searches, "BUDGET", 0)
                if searches is sqlite_search:
                    monkeypatch.setattr(searches, "STEP", 1)
                page = (await browser.get("/messages?number=13700137000"))[1]
                assert "reads too much of the store" in html.unescape(page)
    run(scenario, timeout=60)


def test_the_overview_shows_channels_traffic_backlog_and_callbacks(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            status, body = await api(s, "POST", "/v1/messages", json={
                "mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "O"}})
            await eventually(lambda: s.gateway.store.counts_snapshot().get("delivered"), 10)
            async with signed_in(s) as browser:
                status, page, _ = await browser.get("/")
                assert status == 200
                channels = between(page, 'id="channels-h"', "</section>")
                assert "cmcc" in channels and "up" in channels and "cmcc#0" in channels
                assert "established" in channels and "0 / 16" in channels
                traffic = between(page, 'id="traffic-h"', "</section>")
                assert traffic.count("<svg") == 2 and 'role="img"' in traffic
                mix = between(page, 'id="mix-h"', "</section>")
                assert "default: 1 delivered" in mix          # the chart's description
                backlog = between(page, 'id="backlog-h"', "</section>")
                assert "Waiting to be submitted</dt><dd>0" in backlog
    run(scenario, timeout=60)
