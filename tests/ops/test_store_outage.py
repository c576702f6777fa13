"""A gateway on PostgreSQL through a database restart, and through a database that cannot be
reached for 20 s (issue 14), and one started while its database is down: the API answers 500/50019 instead of acknowledging what it cannot
store, /readyz says why, the gateway takes up its work by itself once the database is back,
and every message acknowledged before, during and after reaches a final status.

The database is a server of the test's own (tests.postgres_faults freezes it: every process
stopped, as a host that hangs or a network that drops packets looks to its clients). The
simulator sends a status report again every 4 s until it is acknowledged (up to 10 times), as
a center does, so that the reports that came while the store could not keep them arrive
again. Every wait is for a condition, with room for a loaded machine; only the outage itself
is a length of time.
"""

from __future__ import annotations

import asyncio

import aiohttp

from cmpp.session import SessionConfig
from gateway.bench.postgres import LocalPostgres
from gateway.config import load_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import DeliveryStatus
from tests.aio import eventually, run
from tests.api_stack import FAST, write_config
from tests.ops.test_readiness import gateway_on as readiness_gateway
from tests.ops.test_readiness import get
from tests.postgres_faults import frozen

OUTAGE = 20.0                         # seconds the database answers nothing
FINAL = [s.value for s in DeliveryStatus if s.final]


class Traffic:
    """Sends from a few clients, one request after another each, until stopped; keeps every
    answer as (status, JSMS code or msg_id)."""

    def __init__(self, http: aiohttp.ClientSession, api: str, clients: int = 3) -> None:
        self.http, self.api = http, api
        self.answers: list[tuple[int, int]] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.get_running_loop().create_task(self._send(c))
                       for c in range(clients)]

    async def _send(self, client: int) -> None:
        order = 0
        while not self._stop.is_set():
            order += 1
            body = {"mobile": "13800138000", "temp_id": 1,
                    "temp_para": {"order": f"{client}-{order}"}}
            async with self.http.post(f"{self.api}/v1/messages", json=body) as response:
                answer = await response.json()
            self.answers.append((response.status, answer["msg_id"] if response.status == 200
                                 else answer["error"]["code"]))
            await asyncio.sleep(0.01)

    def acknowledged(self) -> list[int]:
        return [int(value) for status, value in self.answers if status == 200]

    def refused(self) -> int:
        return sum(1 for status, value in self.answers if (status, value) == (500, 50019))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def gateway_on(server: LocalPostgres, tmp_path):
    """tests.ops.test_readiness's gateway, on ``server``'s database, against a simulator that
    sends a report again every 4 s until it is acknowledged (10 times at most)."""
    return readiness_gateway(tmp_path, store=server.url(), report_delay=0.01,
                             session=SessionConfig(response_timeout=4.0, max_sends=10))


async def ready_status(http, ops: str) -> int:
    return (await get(http, f"{ops}/readyz"))[0]


async def finals(gateway: Gateway, ids: list[int]) -> int:
    """How many of the messages ``ids`` have a final status."""
    [(count,)] = await gateway.store.query(
        "SELECT COUNT(*) FROM messages WHERE id = ANY(?::bigint[]) AND status = ANY(?::text[])",
        (ids, FINAL))
    return count


def test_a_restart_and_20_s_without_the_database_lose_nothing_acknowledged(
        require_postgres, tmp_path):
    server = LocalPostgres().start()

    async def scenario():
        async with gateway_on(server, tmp_path) as (gateway, http, api, ops):
            traffic = Traffic(http, api)
            seen = [0]

            async def more_acknowledged(timeout: float) -> None:
                """Wait for 100 messages acknowledged after those seen so far."""
                await eventually(lambda: len(traffic.acknowledged()) > seen[0] + 100, timeout)
                seen[0] = len(traffic.acknowledged())

            async def ready(timeout: float) -> None:
                await eventually_async(lambda: ready_status(http, ops), 200, timeout)

            try:
                await more_acknowledged(30)
                # A restart: the sessions end, the store says so and reconnects by itself.
                await asyncio.to_thread(server.stop)
                await eventually(lambda: not gateway.store.writable_snapshot()[0], timeout=10)
                status, detail = await get(http, f"{ops}/readyz")
                assert status == 503 and "cannot be reached" in detail["store"]["reason"], detail
                await asyncio.to_thread(server.start)
                await ready(60)
                await more_acknowledged(60)
                # 20 s in which the database answers nothing.
                refused_before = traffic.refused()
                with frozen(server):
                    loop = asyncio.get_running_loop()
                    back_at = loop.time() + OUTAGE
                    await eventually(lambda: traffic.refused() > refused_before + 10, timeout=30)
                    status, detail = await get(http, f"{ops}/readyz")
                    assert status == 503 and not detail["store"]["writable"], detail
                    assert "cannot be reached" in detail["store"]["reason"], detail
                    # Its slots cannot be renewed: it drops its CMPP connections rather than
                    # risk more logins than the account allows (gateway.pipeline.slots).
                    await eventually(lambda: gateway.pools["cmcc"].open_connections == 0,
                                     timeout=15)
                    async with http.get(f"{ops}/healthz") as response:
                        assert response.status == 200                # alive: not restarted
                    await asyncio.sleep(max(0.0, back_at - loop.time()))
                await ready(60)
                await more_acknowledged(60)
            finally:
                await traffic.stop()
            assert {answer for answer in traffic.answers if answer[0] != 200} == {(500, 50019)}
            acknowledged = traffic.acknowledged()
            assert len(set(acknowledged)) == len(acknowledged)
            try:
                await eventually_async(lambda: finals(gateway, acknowledged), len(acknowledged),
                                       timeout=120)
            except AssertionError as error:
                left = await unfinished(gateway, acknowledged)
                raise AssertionError(f"{error}; not final: {left}") from None
    try:
        run(scenario, timeout=400)
    finally:
        server.remove()


async def unfinished(gateway: Gateway, ids: list[int]) -> list[tuple]:
    """The acknowledged messages not final yet, with what the store knows of them."""
    return await gateway.store.query(
        "SELECT id, status, claim, msg_id, attempts, sends, result, connection, submitted_at, "
        "next_attempt_at, created_at FROM messages WHERE id = ANY(?::bigint[]) "
        "AND NOT status = ANY(?::text[]) ORDER BY id", (ids, FINAL))


async def eventually_async(read, expected, timeout: float) -> None:
    """Wait until ``await read()`` is ``expected``; AssertionError with the last value."""
    loop = asyncio.get_running_loop()
    end, value = loop.time() + timeout, await read()
    while value != expected and loop.time() < end:
        await asyncio.sleep(0.2)
        value = await read()
    assert value == expected, f"{value} of {expected} after {timeout} s"


def test_a_gateway_started_while_its_database_is_down_waits_and_starts_when_it_comes(
        require_postgres, tmp_path):
    """The database is stopped when the gateway starts: it waits (/readyz 503 naming the
    store and why, /healthz 200), and becomes ready by itself once the database is up."""
    server = LocalPostgres().start()
    server.stop()

    async def scenario():
        sim = Simulator(SimulatorConfig(accounts=[Account("900001", "secret")]))
        await sim.start()
        path = write_config(tmp_path / "gateway.toml", server.url(), sim.address[1])
        gateway = Gateway(load_config(path), GatewayOptions(
            tuning=FAST, api_address=("127.0.0.1", 0), ops_address=("127.0.0.1", 0),
            wait_for_store=True))
        starting = asyncio.ensure_future(gateway.start())
        try:
            await eventually(lambda: gateway.ops is not None and gateway.ops.address, timeout=30)
            ops = f"http://127.0.0.1:{gateway.ops.address[1]}"
            async with aiohttp.ClientSession() as http:
                status, detail = await get(http, f"{ops}/readyz")
                assert status == 503 and detail["store"]["writable"] is False, detail
                assert "the database cannot be reached" in detail["store"]["reason"], detail
                assert (await get(http, f"{ops}/healthz"))[0] == 200
                assert not starting.done()
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(starting, 60)
                await eventually_async(lambda: ready_status(http, ops), 200, timeout=60)
                assert gateway.store_waiting is None
        finally:
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                await gateway.abandon()
            await gateway.stop()
            await sim.stop()
    try:
        run(scenario, timeout=180)
    finally:
        server.remove()
