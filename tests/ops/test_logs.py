"""Log lines: every written form of a phone number masked, clients' bytes unable to forge a
line, and what a client can repeat at will logged once per address per interval, without the
bytes it sent."""

from __future__ import annotations

import io
import logging

import pytest
from aiohttp.http_exceptions import LineTooLong

from gateway.ops.logs import LogfmtFormatter, RequestErrorLog, SourceThrottle, \
    mask_phone_numbers, setup_logging

SECRET = "N2Q0MzFlNDJkZmE2YTZkNjkzYWMyZDA0OjVlOTg3YWM2ZDJlMDRkOTVhOWQ4ZjBkMQ=="


@pytest.mark.parametrize("written,masked", [
    ("13800138000", "138****8000"),
    ("8613800138000", "86138****8000"),
    ("+8613800138000", "+86138****8000"),
    ("008613800138000", "0086138****8000"),
    ("+86 138 0013 8000", "+86 138****8000"),
    ("86-138-0013-8000", "86-138****8000"),
    ("0086 13800138000", "0086 138****8000"),
    ("138-0013-8000", "138****8000"),
    ("1 3 8 0 0 1 3 8 0 0 0", "138****8000"),
])
def test_every_written_form_of_a_number_is_masked(written, masked):
    assert mask_phone_numbers(f"MO from {written}, 1 part") == f"MO from {masked}, 1 part"


@pytest.mark.parametrize("text", [
    "msg_id 12878564852733378560 seq 1234567",        # a Msg_Id holds 11 digits that look..
    "msg_id 13878564852733378560",                   # ..like a number; it is not one
    "at 2026-12-01 13:55:12 from 10690001 to 1069000112",
    "sequence 4294967295, 1380013800 and 138001380001",
])
def test_what_is_not_a_number_is_left_alone(text):
    assert mask_phone_numbers(text) == text


def line_of(message: str, *args) -> str:
    record = logging.LogRecord("cmpp_gateway.api", logging.DEBUG, "", 0, message, args, None)
    return LogfmtFormatter().format(record)


def test_control_characters_a_client_chose_cannot_forge_a_line():
    path = "/v1/\r\nts=2026-12-01T00:00:00.000Z level=error msg=forged\x1b[31m\x00\x7f\x85" \
           "\u2028\u202e\t"
    line = line_of("GET %s: 404", path)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith(r'msg="GET /v1/\r\nts=2026-12-01T00:00:00.000Z level=error msg=forged'
                         r'\x1b[31m\x00\x7f\x85\u2028\u202e\t: 404"')
    assert line_of("plain").endswith(" msg=plain")
    assert line_of('a "b" c\\d').endswith(r'msg="a \"b\" c\\d"')


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_text():
    stream = io.StringIO()
    setup_logging("debug", stream=stream)
    yield lambda: stream.getvalue()
    logging.getLogger().handlers.clear()


def test_a_source_is_logged_once_per_interval_with_a_count_of_the_rest(log_text):
    clock = FakeClock()
    throttle = SourceThrottle(logging.getLogger("cmpp_gateway.api"), "API client",
                              interval=60, clock=clock)
    for _ in range(5):
        throttle.note("192.0.2.7", "bad HTTP request (LineTooLong 400)")
    throttle.note("192.0.2.8", "bad HTTP request (BadHttpMessage 400)")
    clock.now += 59
    throttle.note("192.0.2.7", "bad HTTP request (BadHttpMethod 400)")
    clock.now += 1
    throttle.note("192.0.2.7", "connection refused, 100 open from this address")
    throttle.note("192.0.2.7", "bad HTTP request (LineTooLong 400)")
    throttle.flush()
    lines = log_text().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == [
        'msg="API client 192.0.2.7: bad HTTP request (LineTooLong 400)"',
        'msg="API client 192.0.2.8: bad HTTP request (BadHttpMessage 400)"',
        'msg="API client 192.0.2.7: connection refused, 100 open from this address" '
        'suppressed=5',
        'msg="API client 192.0.2.7: more of the same, not logged one by one" suppressed=1']
    assert all(" level=info " in line for line in lines)


def test_the_sources_remembered_are_bounded(log_text):
    throttle = SourceThrottle(logging.getLogger("cmpp_gateway.api"), "API client",
                              max_sources=3, clock=FakeClock())
    for source in ("a", "a", "b", "c", "d", "e"):
        throttle.note(source, "x")
    assert len(throttle._sources) == 3
    assert 'msg="API client a: more of the same, not logged one by one" suppressed=1' \
        in log_text()


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_aiohttp_never_logs_the_bytes_of_a_bad_request(log_text):
    throttle = SourceThrottle(logging.getLogger("cmpp_gateway.api"), "API client")
    server_log = RequestErrorLog(logging.getLogger("aiohttp.server"), throttle, "192.0.2.7")
    too_long = raised(LineTooLong(f"Basic {SECRET}"[:100], 8190))
    for _ in range(3):                  # as aiohttp 3.9 to 3.14 call it
        server_log.exception("Error handling request from %s", "192.0.2.7", exc_info=too_long)
        server_log.debug("Error handling request", exc_info=too_long)
    server_log.exception("Unhandled exception", exc_info=raised(ValueError(SECRET)))
    server_log.exception("Error handling request", exc_info=raised(ConnectionResetError(SECRET)))
    server_log.warning("plain %s", "words")
    text = log_text()
    assert SECRET[:16] not in text and "level=error" in text
    assert text.count("bad HTTP request") == 1 and "API client 192.0.2.7: bad HTTP request " \
        "(LineTooLong 400)" in text
    error_line = next(line for line in text.splitlines() if "level=error" in line)
    assert 'msg="Unhandled exception"' in error_line and r"\nValueError" in error_line
    assert "client 192.0.2.7 went away: ConnectionResetError" in text
    assert 'level=warning logger=aiohttp.server msg="plain words"' in text
