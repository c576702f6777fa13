"""Bad input over real HTTP: whatever a client sends gets its documented JSMS error and no
traceback, and nothing is accepted that cannot be sent (a number of non-ASCII digits, a text
longer than its channel sends)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

import cmpp
from tests import api_stack
from tests.aio import eventually, run
from tests.api.test_api import stack, stored
from tests.api_stack import KEY, SECRET, error

JSON = {"Content-Type": "application/json"}


def raw_json(text: str) -> dict:
    return dict(raw=text.encode(), headers=JSON)


NO_500 = [
    ("lone surrogate in temp_para", "POST", "/v1/messages",
     raw_json('{"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "A\\ud800"}}'),
     50007),
    ("lone surrogate in a key", "POST", "/v1/messages",
     raw_json('{"mobile": "13800138000", "temp_id": 1, "temp_para": {"\\udc00": "x"}}'),
     50007),
    ("lone surrogate in a batch", "POST", "/v1/messages/batch",
     raw_json('{"temp_id": 1, "recipients": [{"mobile": "13800138000", '
              '"temp_para": {"order": "\\udfff"}}]}'), 50007),
    ("lone surrogate in template content", "POST", "/v1/templates",
     raw_json('{"type": 2, "template": "\\ud83d only half"}'), 50007),
    ("UTF-8-encoded surrogate", "POST", "/v1/messages",
     dict(raw=b'{"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "\xed\xa0\x80"}}',
          headers=JSON), 50007),
    ("23-digit msg_id", "GET", "/v1/messages/12345678901234567890123", {}, 50026),
    ("23-digit msg_id of a code", "POST", "/v1/codes/12345678901234567890123/valid",
     {"body": {"code": "123456"}}, 50026),
    ("temp_id 1e400", "POST", "/v1/messages",
     raw_json('{"mobile": "13800138000", "temp_id": 1e400}'), 50013),
    ("NaN", "POST", "/v1/messages",
     raw_json('{"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": NaN}}'), 50007),
    ("100,000 deep", "POST", "/v1/messages", raw_json("[" * 100_000 + "]" * 100_000), 50007),
    ("33 deep in temp_para", "POST", "/v1/messages",
     raw_json('{"mobile": "13800138000", "temp_id": 1, "temp_para": '
              + '{"a": ' * 32 + "1" + "}" * 32 + "}"), 50007),
]


@pytest.mark.parametrize("name,method,path,kwargs,code", NO_500, ids=[c[0] for c in NO_500])
def test_bad_input_gets_its_jsms_error_and_no_traceback(tmp_path, caplog, name, method, path,
                                                         kwargs, code):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            with caplog.at_level(logging.DEBUG):
                answer = await api.call(method, path, kwargs.get("body"),
                                        raw=kwargs.get("raw"), headers=kwargs.get("headers"))
            assert error(code, 403)(answer), answer
            assert await stored(gateway) == 0
    run(scenario)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_duplicate_content_type_gets_a_jsms_error_and_no_traceback(tmp_path, caplog):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            port = gateway.api_server.address[1]
            body = b'{"mobile": "13800138000", "temp_id": 5}'
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: "
                         + aiohttp.encode_basic_auth(KEY, SECRET).encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Type: text/plain"
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            with caplog.at_level(logging.DEBUG):
                answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 403 ") and b"application/json" in head
            assert body == b'{"error": {"code": 50007, "message": "invalid body", "detail": ' \
                           b'"the request is not well-formed HTTP"}}'
            assert await stored(gateway) == 0
    run(scenario)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert any("bad HTTP request (BadHttpMessage 400)" in r.getMessage()
               for r in caplog.records)


# ----------------------------------------------------------------------------- unsendable

@pytest.mark.parametrize("mobile", ["13８００１３８０００", "１３８００１３８０００",
                                    "+86１３８００１３８０００", "1380013800\u0660",
                                    "\u300013800138000"])
def test_a_mobile_with_non_ascii_digits_is_50006(tmp_path, mobile):
    async def scenario():
        async with stack(tmp_path, api=r'mobile_pattern = "(?:\\+?86)?\\d{11}"') as (api,
                                                                                 gateway, sim):
            body = {"mobile": mobile, "temp_id": 1, "temp_para": {"order": "A1"}}
            assert error(50006, 403)(await api.post("/v1/messages", body))
            batch = {"temp_id": 1, "recipients": [{"mobile": mobile,
                                                    "temp_para": {"order": "A1"}}]}
            status, answer = await api.post("/v1/messages/batch", batch)
            assert status == 200 and answer["recipients"][0]["error_code"] == "50006"
            assert error(50006, 403)(await api.post("/v1/codes", {"mobile": mobile,
                                                                  "temp_id": 2}))
            assert (await api.post("/v1/messages", {**body, "mobile": "13800138000"}))[0] == 200
    run(scenario)


# Channel cmcc sends at most two parts, and its center puts 【中国移动】 in front of each.
LONG = api_stack.CONFIG.replace("connections = 1\n", 'connections = 1\nmax_parts = 2\n'
                                'center_signature = "中国移动"\n')


def test_a_text_longer_than_its_channel_sends_is_refused_at_the_api(tmp_path):
    def signed(order: str) -> str:                      # template 1, as the app signs it
        return f"【商城】您的订单{order}已发货"
    # Two parts carry 2 x 67 UCS2 characters, less the first part's room for 中国移动.
    fits = 134 - len(signed("")) - len("中国移动")
    assert len(cmpp.split_text(signed("字" * fits), reserve_first=8)) == 2
    assert len(cmpp.split_text(signed("字" * (fits + 1)), reserve_first=8)) == 3

    async def scenario():
        async with api_stack.stack(tmp_path, "repeat_window = 0", config=LONG) as s:
            send = {"mobile": "13800138000", "temp_id": 1}
            for text in ("字" * (fits + 1), "字" * 60 + "😀" * 40, "字" * 5000):
                answer = await s.api.call("POST", "/v1/messages",
                                          {**send, "temp_para": {"order": text}})
                assert error(50007, 403)(answer[:2]), answer
                assert "max_parts" in answer[1]["error"]["detail"]
            status, body, _ = await s.api.call("POST", "/v1/messages/batch", {
                "temp_id": 1, "recipients": [{"mobile": "13800138000",
                                              "temp_para": {"order": "字" * (fits + 1)}},
                                             {"mobile": "13900139000",
                                              "temp_para": {"order": "字" * fits}}]})
            assert status == 200 and (body["success_count"], body["failure_count"]) == (1, 1)
            assert body["recipients"][0]["error_code"] == "50007"
            answer = await s.api.call("POST", "/v1/messages",
                                      {**send, "temp_para": {"order": "字" * fits}})
            assert answer[0] == 200
            await eventually(lambda: len(s.sim.submits) == 4)      # two messages, two parts
            for _ in range(500):
                counts = await s.gateway.store.status_counts()
                if counts.get("delivered") == 2:
                    break
                await asyncio.sleep(0.02)
            assert counts == {"delivered": 2, "rejected": 1}, counts  # none failed
    run(scenario)
