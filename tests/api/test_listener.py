"""The API's listener protects itself, over real TCP: idle sockets from one address cannot shut
out another, every wait for a client has a deadline, and a body announced over the limit is
refused at once. The limits are small here; the waits for them are generous, so that a loaded
machine makes the tests slower, never wrong."""

from __future__ import annotations

import asyncio
import resource
import time
from types import SimpleNamespace

import aiohttp

from gateway.api.context import API_KEY, body_limit, max_body
from gateway.config import ApiSettings
from tests.aio import eventually, run
from tests.api_stack import KEY, OTHER, SECRET, error, stack

IDLE_SOCKETS = 1000
PER_SOURCE = 100
LIMITS = f"""max_connections = 300
max_connections_per_source = {PER_SOURCE}
header_timeout = 2
body_timeout = 3
idle_timeout = 4
"""


def enough_file_descriptors(needed: int) -> None:
    """Raise this process's soft limit on open files to ``needed`` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, \
            f"this test needs {needed} open files; the hard limit is {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 60) -> bytes:
    """All the server sent until it closed the connection (a reset counts as closed)."""
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass
    return received


async def open_idle(host: str, port: int, count: int) -> list:
    """``count`` connections from 127.0.0.1 that send nothing."""
    sockets = []
    for start in range(0, count, 100):
        sockets += await asyncio.gather(*(asyncio.open_connection(host, port)
                                          for _ in range(start, min(count, start + 100))))
    return sockets


def test_idle_sockets_from_one_address_cannot_shut_out_another(tmp_path):
    enough_file_descriptors(4 * IDLE_SOCKETS)
    # Long enough that none of them is closed before all were accepted, even on a busy machine.
    limits = LIMITS.replace("header_timeout = 2", "header_timeout = 6")

    async def scenario():
        async with stack(tmp_path, api=limits) as s:
            server = s.gateway.api_server
            host, port = server.address
            idle = await open_idle(host, port, IDLE_SOCKETS)
            book = server.connections
            await eventually(lambda: book.admitted + book.refused == IDLE_SOCKETS, timeout=30)
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
            headers = {"Authorization": aiohttp.encode_basic_auth(*OTHER)}
            async with aiohttp.ClientSession(connector=connector, headers=headers) as other:
                for _ in range(20):
                    async with other.get(f"http://{host}:{port}/v1/templates/1") as response:
                        assert response.status == 200, await response.text()
            assert server.refused_connections == IDLE_SOCKETS - PER_SOURCE
            assert server.open_connections == PER_SOURCE      # the idle ones are still held
            started = time.monotonic()
            await asyncio.gather(*(closed_by_server(reader) for reader, _ in idle))
            assert time.monotonic() - started < 60
            await eventually(lambda: server.open_connections == 0, timeout=30)
            for _, writer in idle:
                writer.close()
    run(scenario, timeout=180)


def test_each_wait_for_a_client_has_its_deadline(tmp_path):
    auth = aiohttp.encode_basic_auth(KEY, SECRET)
    request = f"GET /v1/templates/1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
    body_head = ("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Authorization: {auth}\r\nContent-Length: 100\r\n\r\n")

    async def held_for(host, port, sent: str) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(sent.encode())
        answer = await closed_by_server(reader)
        writer.close()
        return time.monotonic() - started, answer

    async def scenario():
        async with stack(tmp_path, api=LIMITS) as s:
            host, port = s.gateway.api_server.address
            (head, nothing), (partial, _), (body, no_answer), (idle, answer) = \
                await asyncio.gather(held_for(host, port, ""),
                                     held_for(host, port, "GET /v1/templates/1 HTTP/1.1\r\nHo"),
                                     held_for(host, port, body_head + '{"mobile": '),
                                     held_for(host, port, request))
            assert nothing == no_answer == b""
            assert head >= 1.9 and partial >= 1.9            # header_timeout
            assert body >= 2.9                               # body_timeout
            assert idle >= 3.9 and answer.startswith(b"HTTP/1.1 200 ")   # idle_timeout
            await eventually(lambda: s.gateway.api_server.open_connections == 0, timeout=30)
    run(scenario, timeout=120)


def test_a_body_announced_over_the_limit_is_refused_at_once_and_the_connection_closed(tmp_path):
    heads = [("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Authorization: {aiohttp.encode_basic_auth(KEY, SECRET)}\r\n"
              "Content-Length: 1000000000000\r\n\r\n"),
             "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
             ("POST /v1/sign HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
              f"boundary=b\r\nAuthorization: {aiohttp.encode_basic_auth(KEY, SECRET)}\r\n"
              "Content-Length: 9000000\r\n\r\n")]

    async def scenario():
        # The body deadline is far: an answer that comes is not the deadline's doing.
        async with stack(tmp_path, api=LIMITS.replace("body_timeout = 3", "body_timeout = 600")
                         ) as s:
            host, port = s.gateway.api_server.address

            async def refused(head: str) -> None:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(head.encode() + b'{"a": 1')
                answer = await asyncio.wait_for(reader.readuntil(b"}}"), 30)
                assert answer.startswith(b"HTTP/1.1 403 ") and b"Connection: close" in answer
                assert b'{"error": {"code": 50007, "message": "invalid body", "detail": "body ' \
                    b'larger than' in answer
                assert await closed_by_server(reader, 30) == b""
                writer.close()
            await asyncio.gather(*(refused(head) for head in heads))
            async with aiohttp.ClientSession() as http:         # a body that is too long
                async with http.post(f"http://{host}:{port}/v1/messages", data=bytes(2 << 20),
                                     headers={"Authorization": aiohttp.encode_basic_auth(
                                         KEY, SECRET), "Content-Type": "application/json"}
                                     ) as response:
                    assert error(50007, 403)((response.status, await response.json()))
    run(scenario, timeout=120)


def test_a_handler_may_bound_its_body_by_a_number_or_a_setting():
    settings = ApiSettings(max_body=1024, max_connections=7)

    def request_to(handler):
        return SimpleNamespace(app={API_KEY: SimpleNamespace(settings=settings)},
                               match_info=SimpleNamespace(handler=handler))

    async def plain(request):
        pass
    assert max_body(request_to(plain)) == 1024
    assert max_body(request_to(body_limit(5000)(plain))) == 5000

    async def by_setting(request):
        pass
    assert max_body(request_to(body_limit(lambda s: s.max_connections * 100)(by_setting))) == 700
