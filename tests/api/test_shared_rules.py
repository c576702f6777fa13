"""The API's rules on several gateways sharing one PostgreSQL store: a number and text sent
through one gateway is refused (50034) by another within the window, single or batch; an
app's messages_per_app_per_second is a total over the gateways (50009 past it); a number
unsubscribed by an MO to one gateway is refused marketing (50024) by the others too."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter

import aiohttp

from gateway.channel import Backoff, PoolTuning
from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.store import ApiRequest, NewMessage
from tests.aio import eventually, run
from tests.store.test_cluster import stores as joined

KEY, SECRET = "shared-key", "shared-secret"
AUTH = aiohttp.encode_basic_auth(KEY, SECRET)


def config(store: str, port: int, api: str = ""):
    return parse_config(
        f'[gateway]\nstore = "{store}"\n[api]\n{api}\n'
        f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = {port}\n'
        f'account = "900001"\npassword = "secret"\naccess_number = "10690001"\n'
        f'connections = 2\n[apps.shop]\napp_key = "{KEY}"\nmaster_secret = "{SECRET}"\n'
        f'signature = "商城"\n[templates.1]\ntype = "notification"\ncontent = "订单{{{{n}}}}"\n'
        f'[templates.2]\ntype = "marketing"\ncontent = "新品上市"\n')


@contextlib.asynccontextmanager
async def gateways(store: str, count: int, serving: bool = False, api: str = ""):
    """``count`` gateways on ``store``; their API's base URLs, or with ``serving`` (gateway,
    URL) pairs."""
    async with cluster(store, count, api) as (_, served):
        yield served if serving else [url for _, url in served]


@contextlib.asynccontextmanager
async def cluster(store: str, count: int, api: str = ""):
    """The simulator and ``count`` (gateway, API base URL) pairs on ``store``."""
    async with Simulator(SimulatorConfig(accounts=[Account("900001", "secret")])) as sim:
        started = []
        try:
            for _ in range(count):
                gateway = Gateway(config(store, sim.address[1], api), GatewayOptions(
                    tuning=PoolTuning(reconnect=Backoff(0.01, 0.05)), serve_ops=False,
                    api_address=("127.0.0.1", 0)))
                await gateway.start()
                started.append(gateway)
            yield sim, [(g, f"http://127.0.0.1:{g.api_server.address[1]}") for g in started]
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
        async with joined(url, 2) as (stores, _):
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
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_an_apps_messages_per_second_are_counted_over_every_gateway(store_settings, tmp_path):
    """Two gateways, an app limited to 10 messages a second, 16 sends at once (8 through
    each) in each of four rounds: in no second are more than 10 stored, the others are
    refused with 50009, and each refusal stores nothing."""
    limit, rounds, each = 10, 4, 8

    async def send(http, base: str, number: int) -> int:
        body = {"mobile": f"1380013{number:04d}", "temp_id": 1, "temp_para": {"n": "1"}}
        status, answer = await post(http, base, "/v1/messages", body)
        return 200 if status == 200 else answer["error"]["code"]

    async def scenario():
        settings = f"messages_per_app_per_second = {limit}\nrepeat_window = 0"
        async with gateways(url, 2, serving=True, api=settings) as served, \
                aiohttp.ClientSession() as http:
            answers = []
            for turn in range(rounds):
                answers += await asyncio.gather(*(
                    send(http, base, turn * 100 + n * 10 + i)
                    for n, (_, base) in enumerate(served) for i in range(each)))
                await asyncio.sleep(0.5)
            rows = await served[0][0].store.query(
                "SELECT created_at FROM messages WHERE app = 'shop' AND status <> 'rejected'")
        assert set(answers) <= {200, 50009} and answers.count(50009) > 0
        assert len(rows) == answers.count(200)
        per_second = Counter(math.floor(row[0]) for row in rows)
        assert max(per_second.values()) <= limit, per_second
    with store_settings("postgresql", tmp_path) as url:
        run(scenario, timeout=60)


def test_the_store_counts_an_apps_second_over_its_gateways(store_settings, tmp_path):
    async def scenario():
        async with joined(url, 2) as (stores, sessions):
            now = math.floor(time.time()) + 0.5
            two = tuple(NewMessage("shop", "cmcc", f"1380013800{i}", "x") for i in range(2))

            def request(messages, limit=3):
                return ApiRequest("shop", messages, app_second_limit=limit)
            assert (await stores[0].accept_request(request(two), now)).ids
            assert (await stores[1].accept_request(request(two), now + 0.4)).refusal == \
                "too fast"
            assert (await stores[1].accept_request(request(two[:1]), now)).ids
            assert (await stores[0].accept_request(request(two[:1]), now)).refusal == "too fast"
            assert (await stores[1].accept_request(request(two), now + 0.6)).ids  # next second
            assert (await stores[0].accept_request(request(two * 2), now + 0.6)).refusal == \
                "too fast"                                  # over the limit alone
            rows = await stores[0].query("SELECT second, sent FROM cluster_app_seconds "
                                         "WHERE app = 'shop' ORDER BY second")
            assert rows == [(now - 0.5, 3), (now + 0.5, 2)]
            await sessions[0].heartbeat([], sweep=True)     # a minute on: they are gone
            assert len(await stores[0].query("SELECT * FROM cluster_app_seconds")) == 2
            await stores[0].query("UPDATE cluster_app_seconds SET second = second - 61")
            await sessions[0].heartbeat([], sweep=True)
            assert await stores[0].query("SELECT * FROM cluster_app_seconds") == []
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_a_number_unsubscribed_through_one_gateway_is_learned_by_the_others(store_settings,
                                                                          tmp_path):
    """An MO "TD" reaches one of two gateways (one CMPP connection each); within seconds
    both refuse marketing to its number (50024), and notifications still go."""
    async def scenario():
        async with cluster(url, 2) as (sim, served), aiohttp.ClientSession() as http:
            await eventually(lambda: len(sim.connections("900001")) == 2, timeout=20)
            sim.send_mo("900001", "8613800138000", "10690001", "TD")
            await eventually(lambda: all("13800138000" in g.api.rules.unsubscribed
                                         for g, _ in served), timeout=20)
            for _, base in served:
                marketing = {"mobile": "13800138000", "temp_id": 2}
                assert (await post(http, base, "/v1/messages", marketing))[1] == \
                    {"error": {"code": 50024, "message": "unsubscribed mobile"}}
            notice = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"n": "1"}}
            assert (await post(http, served[1][1], "/v1/messages", notice))[0] == 200
    with store_settings("postgresql", tmp_path) as url:
        run(scenario, timeout=60)
