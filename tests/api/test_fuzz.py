"""No input gets a 500 or an undocumented answer: hypothesis throws arbitrary JSON, bytes and
headers at every endpoint of a running gateway over real HTTP, and every answer must be a
success or one of the (HTTP status, JSMS code, message) rows of docs/api.md's table, with no
traceback or error in the log.

The gateway runs in a thread of its own (its event loop, the simulator beside it); the
examples call it with http.client, which sends what it is given: repeated headers, any
Content-Type, bytes that are not JSON. The run is derandomized, so it is the same run every
time.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import api_stack
from tests.api.test_api import CONFIG

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
AUTH = http.client.HTTPConnection  # (for the type only)
BASIC = "Basic " + __import__("base64").b64encode(
    f"{api_stack.KEY}:{api_stack.SECRET}".encode()).decode()

ENDPOINTS = [
    ("POST", "/v1/messages"), ("POST", "/v1/messages/batch"), ("GET", "/v1/messages/{id}"),
    ("POST", "/v1/codes"), ("POST", "/v1/codes/{id}/valid"), ("POST", "/v1/voice_codes"),
    ("POST", "/v1/sign"), ("PUT", "/v1/sign/{id}"), ("POST", "/v1/sign/{id}"),
    ("GET", "/v1/sign/{id}"), ("DELETE", "/v1/sign/{id}"),
    ("POST", "/v1/templates"), ("PUT", "/v1/templates/{id}"), ("GET", "/v1/templates/{id}"),
    ("DELETE", "/v1/templates/{id}"),
    ("POST", "/v1/users"), ("GET", "/v1/users/{id}"), ("PUT", "/v1/users/{id}"),
    ("DELETE", "/v1/users/{id}"),
    ("PATCH", "/v1/messages"), ("GET", "/v1/nowhere"),
]
KEYS = ["mobile", "temp_id", "temp_para", "recipients", "code", "userid", "callback", "type",
        "template", "sign_id", "code_length", "ttl", "phone", "order", "tag"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/csv",
                 "text/plain", "multipart/form-data; boundary=xyz", "multipart/form-data",
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ""]
HEADER_NAMES = ["Content-Type", "Idempotency-Key", "X-Forwarded-For", "Authorization",
                "Content-Encoding", "Accept", "Connection", "X-Anything"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=20) | st.sampled_from(["13800138000", "1", "2", "1e400",
                                                     "１３８００１３８０００", "\ud800"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                             max_size=5), max_leaves=20)
shaped = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
headers = st.lists(st.tuples(st.sampled_from(HEADER_NAMES),
                             st.sampled_from(CONTENT_TYPES) | header_text), max_size=4)
ids = st.integers(0, 10**25).map(str) | st.text(max_size=12) | st.sampled_from(["1", "2"])


def _json_bytes(value) -> bytes:
    # ensure_ascii: a lone surrogate goes as its \\u escape, as a client would send it
    return json.dumps(value, allow_nan=True).encode()


bodies = (shaped.map(_json_bytes) | json_values.map(_json_bytes) | st.binary(max_size=64)
          | st.sampled_from([b"", b"[" * 1500 + b"]" * 1500, b'{"a": NaN}',
                             b"userid,phone\nu1,13800138000\n"]))


def documented() -> set[tuple[int, int, str]]:
    """(HTTP status, code, message) of each row of docs/api.md's error table."""
    rows = re.findall(r"^\| (5\d{4}) \| (\d{3}) \| ([^|]+?) \|", DOCS.read_text("utf-8"), re.M)
    return {(int(status), int(code), message) for code, status, message in rows}


DOCUMENTED = documented()


class Served:
    """The stack of tests.api_stack in a thread of its own, until ``stop``."""

    def __init__(self, tmp_path) -> None:
        self.ready, self.port, self.error = threading.Event(), None, None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(tmp_path),))
        self._thread.start()
        assert self.ready.wait(60) and self.error is None, self.error

    async def _serve(self, tmp_path) -> None:
        try:
            config = CONFIG.replace("@CODE_TTL@", "300")
            async with api_stack.stack(tmp_path, config=config) as s:
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                self.port = s.gateway.api_server.address[1]
                self.ready.set()
                await self._stop.wait()
        except BaseException as error:  # noqa: BLE001 - reported to the test's thread
            self.error = error
            self.ready.set()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("fuzz"))
    yield served
    served.stop()


class Failures(logging.Handler):
    """Records at ERROR and above, and any record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in \
                str(getattr(record, "error", "")):
            self.records.append(record)


def call(port: int, method: str, path: str, header_list, body: bytes, auth: bool):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        if auth:
            connection.putheader("Authorization", BASIC)
        for name, value in header_list:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_documented(status: int, raw: bytes, what) -> None:
    assert status != 500, what
    if status == 200:
        assert raw == b"" or isinstance(json.loads(raw), dict), what
        return
    answer = json.loads(raw)
    error = answer["error"]
    assert (status, error["code"], error["message"]) in DOCUMENTED, (what, status, answer)
    assert set(error) <= {"code", "message", "detail"}, answer
    assert set(answer) <= {"error", "is_valid"}, answer


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), path_id=ids, header_list=headers, body=bodies,
       json_type=st.booleans(), auth=st.integers(0, 9))
def test_no_input_gets_a_500_or_an_undocumented_answer(served, endpoint, path_id, header_list,
                                                       body, json_type, auth):
    method, template = endpoint
    path = template.replace("{id}", quote(path_id, safe=""))
    if json_type:
        header_list = [("Content-Type", "application/json"), *header_list]
    failures = Failures()
    watched = [logging.getLogger(name) for name in ("cmpp_gateway", "aiohttp")]
    for logger in watched:
        logger.addHandler(failures)
    try:
        try:
            status, raw = call(served.port, method, path, header_list, body, auth > 0)
        except ValueError:                           # a header http.client will not send
            return
        assert_documented(status, raw, (method, path, header_list, body[:200]))
    finally:
        for logger in watched:
            logger.removeHandler(failures)
    assert failures.records == [], [r.getMessage() for r in failures.records]


def test_the_docs_table_is_read():
    assert (403, 50006, "invalid mobile") in DOCUMENTED and len(DOCUMENTED) >= 40
