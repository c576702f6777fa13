"""Behind a reverse proxy: X-Forwarded-For names the client only when a trusted proxy says
so, over real HTTP from several loopback addresses (127.0.0.2 plays the proxy; the app's
whitelist holds 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from gateway.api.forwarded import TrustedProxies
from tests.aio import eventually, run
from tests.api_stack import KEY, SECRET, stack

PROXY, OUTSIDER = "127.0.0.2", "127.0.0.3"


@pytest.mark.parametrize("peer,forwarded,client", [
    ("10.0.0.1", [], "10.0.0.1"),                                        # no header
    ("10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
    ("10.0.0.1", ["198.51.100.1, 203.0.113.9"], "203.0.113.9"),          # right-most
    ("10.0.0.1", ["203.0.113.9, 10.0.0.2"], "203.0.113.9"),              # proxies skipped
    ("10.0.0.1", ["203.0.113.9", "10.0.0.2"], "203.0.113.9"),            # headers join
    ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),                    # all proxies
    ("10.0.0.1", ["203.0.113.9, junk"], "10.0.0.1"),                     # unreadable hop
    ("10.0.0.1", ["::ffff:203.0.113.9"], "203.0.113.9"),
    ("192.0.2.1", ["203.0.113.9"], "192.0.2.1"),                         # not a proxy
    ("::ffff:10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
])
def test_the_client_is_the_right_most_address_a_trusted_proxy_did_not_write(peer, forwarded,
                                                                             client):
    assert TrustedProxies(["10.0.0.0/24"]).client(peer, forwarded) == client


def test_without_trusted_proxies_the_header_is_ignored():
    assert TrustedProxies([]).client("10.0.0.1", ["203.0.113.9"]) == "10.0.0.1"


async def call(port: int, source: str, forwarded: list[str] | None = None) -> int:
    """The JSMS code (or 200) of GET /v1/templates/1 from ``source`` with these headers."""
    headers = [("Authorization", aiohttp.encode_basic_auth(KEY, SECRET))]
    headers += [("X-Forwarded-For", value) for value in forwarded or []]
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://127.0.0.1:{port}/v1/templates/1",
                            headers=headers) as response:
            body = await response.json()
            return 200 if response.status == 200 else body["error"]["code"]


def test_a_forwarded_address_is_believed_from_a_trusted_proxy_only(tmp_path, caplog):
    async def scenario():
        async with stack(tmp_path, api=f'trusted_proxies = ["{PROXY}/32"]') as s:
            port = s.gateway.api_server.address[1]
            with caplog.at_level(logging.DEBUG, "cmpp_gateway.api"):
                assert await call(port, PROXY, ["127.0.0.1"]) == 200
                assert await call(port, PROXY, ["198.51.100.7"]) == 50035
                # The client wrote 127.0.0.1 itself; the proxy appended where it came from.
                assert await call(port, PROXY, ["127.0.0.1, 198.51.100.7"]) == 50035
                assert await call(port, PROXY, ["127.0.0.1", "not an address"]) == 50035
                assert await call(port, PROXY) == 50035                # the proxy itself
                assert await call(port, OUTSIDER, ["127.0.0.1"]) == 50035   # spoofed
                assert await call(port, "127.0.0.1", ["198.51.100.7"]) == 200  # ignored
            lines = [r.getMessage() for r in caplog.records]
            assert "GET /v1/templates/1: 403, JSMS 50035 (client 198.51.100.7)" in lines
            assert f"GET /v1/templates/1: 403, JSMS 50035 (client {OUTSIDER})" in lines
    run(scenario)


def test_without_trusted_proxies_no_header_gets_past_the_whitelist(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            port = s.gateway.api_server.address[1]
            assert await call(port, PROXY, ["127.0.0.1"]) == 50035
            assert await call(port, "127.0.0.1") == 200
    run(scenario)


def test_a_trusted_proxy_is_not_held_to_the_per_source_connection_limit(tmp_path):
    limits = 'trusted_proxies = ["127.0.0.2"]\nmax_connections_per_source = 2'

    async def scenario():
        async with stack(tmp_path, api=limits) as s:
            server = s.gateway.api_server
            host, port = server.address
            opened = []
            for source in (PROXY, OUTSIDER):
                for _ in range(4):
                    opened.append(await asyncio.open_connection(host, port,
                                                                local_addr=(source, 0)))
            book = server.connections
            await eventually(lambda: book.admitted + book.refused == 8)
            assert (book.admitted, book.refused) == (4 + 2, 2)
            for _, writer in opened:
                writer.close()
    run(scenario)
