"""/readyz tells the truth about the store: a store that cannot write (here: full, by PRAGMA
max_page_count) makes it answer 503 with the reason, also when the gateway starts on a full
store; sends get the documented server error (50019); /healthz stays 200 (liveness); and all
is well again by itself once the store can write."""

from __future__ import annotations

import contextlib

import aiohttp

from gateway.config import load_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from tests.aio import eventually, run
from tests.api_stack import FAST, KEY, SECRET, write_config

SEND = {"mobile": "13800138000", "temp_id": 1}


@contextlib.asynccontextmanager
async def gateway_on(tmp_path, max_pages: int | None = None, store: str | None = None,
                     **simulator):
    """(gateway, HTTP session, API base URL, ops base URL) against the simulator (made with
    the SimulatorConfig fields ``simulator``); the store is ``store``, or an SQLite file."""
    sim = Simulator(SimulatorConfig(accounts=[Account("900001", "secret")], **simulator))
    await sim.start()
    path = write_config(tmp_path / "gateway.toml", store or tmp_path / "gw.sqlite",
                        sim.address[1])
    gateway = Gateway(load_config(path), GatewayOptions(
        tuning=FAST, api_address=("127.0.0.1", 0), ops_address=("127.0.0.1", 0),
        store_max_pages=max_pages))
    gateway.store.probe_interval = 0.05
    await gateway.start()
    await gateway.pools["cmcc"].wait_ready()
    api = f"http://127.0.0.1:{gateway.api_server.address[1]}"
    ops = f"http://127.0.0.1:{gateway.ops.address[1]}"
    try:
        async with aiohttp.ClientSession(
                headers={"Authorization": aiohttp.encode_basic_auth(KEY, SECRET)}) as http:
            yield gateway, http, api, ops
    finally:
        await gateway.stop()
        await sim.stop()


async def get(http, url: str) -> tuple[int, dict]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def send(http, api: str, order: int) -> tuple[int, dict]:
    async with http.post(f"{api}/v1/messages",
                         json={**SEND, "temp_para": {"order": f"{order} " + "x" * 300}}) as r:
        return r.status, await r.json()


def test_a_store_that_fills_up_makes_readyz_fail_with_the_reason_until_it_can_write(tmp_path):
    async def scenario():
        async with gateway_on(tmp_path) as (gateway, http, api, ops):
            assert (await get(http, f"{ops}/readyz"))[0] == 200
            await gateway.store.query("PRAGMA max_page_count = 60")
            for order in range(5000):
                status, body = await send(http, api, order)
                if status != 200:
                    break
            assert (status, body["error"]["code"]) == (500, 50019), body
            assert "store cannot write" in body["error"]["detail"]
            status, ready = await get(http, f"{ops}/readyz")
            assert status == 503 and not ready["ready"] and not ready["store"]["writable"]
            assert "SQLITE_FULL" in ready["store"]["reason"]
            assert ready["channels"]["cmcc"]["healthy"]          # the store is the reason
            assert (await get(http, f"{ops}/healthz"))[0] == 200
            metrics = await (await http.get(f"{ops}/metrics")).text()
            assert "cmpp_store_writable 0.0" in metrics
            await gateway.store.query("PRAGMA max_page_count = 1000000")
            await eventually(lambda: gateway.store.writable_snapshot()[0], timeout=10)
            assert (await get(http, f"{ops}/readyz"))[0] == 200
            assert (await send(http, api, -1))[0] == 200
    run(scenario, timeout=120)


def test_a_gateway_started_on_a_full_store_is_not_ready_from_the_start(tmp_path):
    async def scenario():
        async with gateway_on(tmp_path) as (gateway, http, api, ops):
            for order in range(20):
                assert (await send(http, api, order))[0] == 200
            size = (await gateway.store.query("PRAGMA page_count"))[0][0]
        async with gateway_on(tmp_path, max_pages=size) as (gateway, http, api, ops):
            status, ready = await get(http, f"{ops}/readyz")
            assert status == 503 and "SQLITE_FULL" in ready["store"]["reason"]
            for order in range(100, 200):           # what fits in the pages it has goes in
                status, body = await send(http, api, order)
                if status != 200:
                    break
            assert (status, body["error"]["code"]) == (500, 50019)
            assert (await get(http, f"{ops}/healthz"))[0] == 200
    run(scenario, timeout=120)
