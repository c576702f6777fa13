"""The API's repeat rule on several gateways sharing one PostgreSQL store: a number and text
sent through one gateway is refused (50034) by another within the window, single or batch."""

from __future__ import annotations

import contextlib
import time

import aiohttp

from gateway.channel import Backoff, PoolTuning
from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.store import ApiRequest, NewMessage, create_store
from tests.aio import run

KEY, SECRET = "shared-key", "shared-secret"
AUTH = aiohttp.encode_basic_auth(KEY, SECRET)


def config(store: str, port: int):
    return parse_config(
        f'[gateway]\nstore = "{store}"\n'
        f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = {port}\n'
        f'account = "900001"\npassword = "secret"\naccess_number = "10690001"\n'
        f'connections = 2\n[apps.shop]\napp_key = "{KEY}"\nmaster_secret = "{SECRET}"\n'
        f'signature = "商城"\n[templates.1]\ntype = "notification"\ncontent = "订单{{{{n}}}}"\n')


@contextlib.asynccontextmanager
async def gateways(store: str, count: int, serving: bool = False):
    """``count`` gateways on ``store``; their API's base URLs, or with ``serving`` (gateway,
    URL) pairs."""
    async with Simulator(SimulatorConfig(accounts=[Account("900001", "secret")])) as sim:
        started = []
        try:
            for _ in range(count):
                gateway = Gateway(config(store, sim.address[1]), GatewayOptions(
                    tuning=PoolTuning(reconnect=Backoff(0.01, 0.05)), serve_ops=False,
                    api_address=("127.0.0.1", 0)))
                await gateway.start()
                started.append(gateway)
            urls = [f"http://127.0.0.1:{g.api_server.address[1]}" for g in started]
            yield list(zip(started, urls)) if serving else urls
        finally:
            for gateway in started:
                await gateway.stop()


async def post(http, base: str, path: str, body: dict) -> tuple[int, dict]:
    async with http.post(base + path, json=body, headers={"Authorization": AUTH}) as answer:
        return answer.status, await answer.json()


def test_a_send_through_one_gateway_is_a_repeat_on_another(store_settings, tmp_path):
    async def scenario():
        async with gateways(url, 2) as (a, b), aiohttp.ClientSession() as http:
            one = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"n": "1"}}
            assert (await post(http, a, "/v1/messages", one))[0] == 200
            assert (await post(http, b, "/v1/messages", one))[1]["error"]["code"] == 50034
            # A batch with a send b has not seen: the store finds it, b refuses it alone.
            two = {"mobile": "13700137000", "temp_id": 1, "temp_para": {"n": "1"}}
            assert (await post(http, a, "/v1/messages", two))[0] == 200
            batch = {"temp_id": 1, "recipients": [
                {"mobile": "13700137000", "temp_para": {"n": "1"}},
                {"mobile": "13900139000", "temp_para": {"n": "1"}}]}
            status, body = await post(http, b, "/v1/messages/batch", batch)
            assert status == 200 and (body["success_count"], body["failure_count"]) == (1, 1)
            assert str(body["recipients"][0]["error_code"]) == "50034"
            assert "error_code" not in body["recipients"][1]
            # And the other way round: the batch's new send is a repeat on the first gateway.
            again = {"mobile": "13900139000", "temp_id": 1, "temp_para": {"n": "1"}}
            assert (await post(http, a, "/v1/messages", again))[1]["error"]["code"] == 50034
    with store_settings("postgresql", tmp_path) as url:
        run(scenario, timeout=30)


def test_the_store_holds_a_repeat_key_once_until_it_expires(store_settings, tmp_path):
    async def scenario():
        stores, sessions = [create_store(url), create_store(url)], []
        for store in stores:
            await store.open()
            sessions.append(store.cluster_session())
            await store.join_cluster(sessions[-1], ["cmcc"])
        try:
            now = time.time()
            message = NewMessage("shop", "cmcc", "13800138000", "x")
            first = await stores[0].accept_request(ApiRequest(
                "shop", (message,), repeats=("k1", "k2"), repeat_until=now + 30), now)
            second = await stores[1].accept_request(ApiRequest(
                "shop", (message,), repeats=("k2", "k3"), repeat_until=now + 30), now)
            assert first.ids and second.refusal == "repeated" and second.repeated == ("k2",)
            later = await stores[1].accept_request(ApiRequest(
                "shop", (message,), repeats=("k2", "k3"), repeat_until=now + 61), now + 31)
            assert later.ids                   # k2 expired; k3 was not kept by the refusal
        finally:
            for store, session in zip(stores, sessions):
                session.drop()
                await store.close()
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)
