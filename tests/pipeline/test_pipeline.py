"""The daemon's pipeline over loopback against the simulator: store -> SMS center -> receipts."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import cmpp
from gateway.channel import Backoff, PoolTuning
from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.sim import Account, Faults, Simulator, SimulatorConfig
from gateway.status import DeliveryStatus, load_tables
from gateway.store import NewMessage
from tests.aio import eventually, run

ACCOUNT, SECRET = "900001", "secret"
TABLES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers")
FAST = PoolTuning(reconnect=Backoff(0.01, 0.05))


def gateway_config(store: str, port: int, connections: int = 2, **channel):
    """A gateway on ``store`` (tests.conftest's store_setting: each backend in turn)."""
    settings = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in channel.items())
    return parse_config(
        f'[gateway]\nstore = "{store}"\nreport_timeout = 3600\ndrain_timeout = 5\n'
        f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = {port}\n'
        f'account = "{ACCOUNT}"\npassword = "{SECRET}"\naccess_number = "10690001"\n'
        f"connections = {connections}\n{settings}")


@contextlib.asynccontextmanager
async def pipeline(store, sim_settings=None, connections=2, options=None, **channel):
    sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, access_number="10690001")],
                                    **(sim_settings or {})))
    await sim.start()
    gateway = Gateway(gateway_config(store, sim.address[1], connections, **channel),
                      options or GatewayOptions(tuning=FAST, serve_ops=False))
    await gateway.start()
    try:
        await gateway.pools["cmcc"].wait_ready()
        yield sim, gateway
    finally:
        await gateway.stop()
        await sim.stop()


def message(text: str, recipient: str = "13800138000", reference: int = 0) -> NewMessage:
    return NewMessage("app1", "cmcc", recipient, text, reference=reference)


async def all_final(gateway, ids, timeout=10.0):
    async def statuses():
        return [(await gateway.store.message(i)).status for i in ids]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        found = await statuses()
        if all(DeliveryStatus(s).final for s in found) or loop.time() > end:
            return found
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------- receipts

def test_a_long_chinese_message_arrives_in_parts_whose_reports_all_match(store_setting):
    async def scenario():
        async with pipeline(store_setting, {"report_delay": 0.05}) as (sim, gateway):
            text = "这是一条很长的中文短信，用来检验分段发送与状态报告的匹配。" * 6
            [accepted] = await gateway.accept([message(text, reference=77)])
            assert await all_final(gateway, [accepted.id]) == ["delivered"]
            view = await gateway.store.message(accepted.id)
            assert view.parts == len(sim.submits) == 3
            assert [s.status for s in view.segments] == ["delivered"] * 3
            assert {s.msg_id for s in view.segments} == {s.msg_id for s in sim.submits}
            parts = [cmpp.Deliver(tp_udhi=s.submit.tp_udhi, msg_fmt=s.submit.msg_fmt,
                                  msg_content=s.submit.msg_content) for s in sim.submits]
            reassembler = cmpp.Reassembler()
            assert [m.text for p in parts for m in reassembler.feed(p, 0)] == [text]
            assert all(s.submit.registered_delivery == 1 for s in sim.submits)
            assert {s.submit.msg_content[3] for s in sim.submits} == {77}   # UDH reference
    run(scenario, timeout=30)


def test_a_strict_center_takes_every_submit_of_the_gateway(tmp_path):
    texts = ["Your code is 123456.", "A long ASCII message, " * 12, "您的订单已发货。",
             "这是一条很长的中文短信，用来检验严格模式下的分段发送。" * 5,
             "Emoji 😀 outside the BMP in a long one, " + "很长的内容😀" * 30]
    async def scenario():
        async with pipeline(str(tmp_path / "gw.sqlite"),
                            {"strict": True, "report_delay": 0.02}) as (sim, gw):
            ids = [a.id for a in await gw.accept([message(t, reference=i)
                                                  for i, t in enumerate(texts)])]
            assert await all_final(gw, ids) == ["delivered"] * len(texts)
            refused = [(s.result, s.refusal) for s in sim.submits if s.result != 0]
            assert refused == []
            assert len(sim.submits) > len(texts) and len(sim.logins) == 2
            assert {s.submit.msg_fmt for s in sim.submits} == {0, 8}
    run(scenario, timeout=30)


def test_a_refused_authenticator_shows_its_cause_and_the_setting_in_readyz(tmp_path):
    async def scenario():
        sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                                        faults=Faults(zero_authenticator=True)))
        await sim.start()
        config = gateway_config(str(tmp_path / "gw.sqlite"), sim.address[1],
                                verify_authenticator="refuse")
        gateway = Gateway(config, GatewayOptions(tuning=FAST, ops_address=("127.0.0.1", 0),
                                                 serve_api=False))
        await gateway.start()
        try:
            await eventually(lambda: "login refused" in gateway.pools["cmcc"].status().reason)
            host, port = gateway.ops.address
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{host}:{port}/readyz") as response:
                    status, ready = response.status, await response.json()
        finally:
            await gateway.stop()
            await sim.stop()
        channel = ready["channels"]["cmcc"]
        assert status == 503 and not ready["ready"] and not channel["healthy"]
        for text in (channel["reason"], channel["connections"][0]["last_error"]):
            assert "AuthenticatorISMG (all zero) does not match the standard computation" in text
            assert 'verify_authenticator = "warn" on this channel' in text
            assert "check the account and password" not in text
    run(scenario, timeout=30)


def test_reports_before_submit_resp_and_on_other_connections_all_match(store_setting):
    async def scenario():
        async with pipeline(store_setting,
                            {"faults": Faults(report_before_resp=True)}) as (sim, gw):
            ids = [a.id for a in await gw.accept([message(f"m{i}") for i in range(40)])]
            assert await all_final(gw, ids) == ["delivered"] * 40
            assert await gw.store.unmatched_receipts() == 0
    run(scenario, timeout=30)


def test_reports_arriving_on_another_connection_match(store_setting):
    async def scenario():
        async with pipeline(store_setting, {"report_delay": 0.02}, connections=3) as (sim, gw):
            ids = [a.id for a in await gw.accept([message(f"m{i}") for i in range(60)])]
            assert await all_final(gw, ids) == ["delivered"] * 60
            # A part's SUBMIT connection: its segments row's, or its message's row's when it is
            # the single part kept there.
            [(crossed, matched)] = await gw.store.query(
                "SELECT SUM(CASE WHEN r.connection <> COALESCE(s.connection, m.connection) "
                "THEN 1 ELSE 0 END), COUNT(DISTINCT m.id) FROM receipts r "
                "JOIN messages m ON m.id = r.message_id "
                "LEFT JOIN segments s ON s.message_id = r.message_id AND s.part = r.part")
            assert crossed > 0 and matched == 60
    run(scenario, timeout=30)


def test_duplicate_delivers_change_nothing(store_setting):
    async def scenario():
        async with pipeline(store_setting, {"faults": Faults(duplicate_delivers=True),
                                       "stats": {"UNDELIV": 1}}) as (sim, gw):
            gw.store.queue_status_callbacks_for(None)       # as if every app had a URL
            ids = [a.id for a in await gw.accept([message(f"m{i}") for i in range(10)])]
            assert await all_final(gw, ids) == ["undeliverable"] * 10
            await eventually(lambda: _sample(gw, "cmpp_duplicate_receipts_total") == 10)
            assert _sample(gw, "cmpp_receipts_total", status="undeliverable") == 10
            callbacks = await gw.store.due_callbacks(now=1e12, limit=100)
            assert collections.Counter(c.ref for c in callbacks) == {i: 1 for i in ids}
    run(scenario, timeout=30)


def test_a_report_with_an_unknown_msg_id_is_kept_and_counted(store_setting):
    async def scenario():
        async with pipeline(store_setting) as (sim, gw):
            sim.send_report(ACCOUNT, msg_id=0x0123456789ABCDEF, stat="DELIVRD")
            await eventually(lambda: gw.store.unmatched_snapshot() == 1)
            await eventually(lambda: sim.counters["delivers_acknowledged"] == 1)
            assert _sample(gw, "cmpp_receipts_total", status="delivered") == 1
    run(scenario)


def test_every_stat_in_the_default_table_lands_in_its_status(store_setting):
    codes = TABLES.for_provider("default")
    stats = sorted(codes.codes)

    def stat_for(submit):
        return submit.msg_content.decode("ascii")

    async def scenario():
        async with pipeline(store_setting, {"stat_for": stat_for}) as (sim, gw):
            accepted = await gw.accept([message(stat) for stat in stats])
            ids = [a.id for a in accepted]
            expected = {}
            for stat, message_id in zip(stats, ids):
                c = codes.classify(stat)
                expected[message_id] = c.status.value if c.status else "submitted"
            await asyncio.sleep(0.2)
            finals = [i for i, s in expected.items() if s != "submitted"]
            await all_final(gw, finals, timeout=20)
            for message_id, status in expected.items():
                view = await gw.store.message(message_id)
                assert view.status == status, (view.text, view.status, status)
                if status != "submitted":
                    assert view.status_stat == view.text and view.status_provider == "default"
    run(scenario, timeout=60)


# ----------------------------------------------------------------------------- metrics

def _sample(gw, name: str, **labels) -> float:
    total = 0.0
    for metric in gw.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_read_back_from_the_endpoint_show_what_happened(store_setting):
    async def scenario():
        options = GatewayOptions(tuning=FAST, ops_address=("127.0.0.1", 0))
        sim_settings = {"stats": {"DELIVRD": 1}, "faults": Faults(throttle_tps=1000)}
        async with pipeline(store_setting, sim_settings, options=options) as (sim, gw):
            ids = [a.id for a in await gw.accept([message(f"m{i}") for i in range(30)])]
            await all_final(gw, ids)
            sim.send_report(ACCOUNT, msg_id=42, stat="MK:9999")
            await eventually(lambda: gw.store.unmatched_snapshot() == 1)
            host, port = gw.ops.address
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{host}:{port}/metrics") as response:
                    text = await response.text()
                async with http.get(f"http://{host}:{port}/readyz") as response:
                    ready = (response.status, await response.json())
                async with http.get(f"http://{host}:{port}/healthz") as response:
                    assert response.status == 200
            values = _parse(text)
            assert values['cmpp_submits_total{channel="cmcc",result="0"}'] == 30
            assert values['cmpp_receipts_total{channel="cmcc",provider="default",status="delivered"}'] == 30
            assert values['cmpp_receipt_stats_total{provider="default",stat="DELIVRD"}'] == 30
            assert values['cmpp_receipt_stats_total{provider="default",stat="unmapped"}'] == 1
            assert values['cmpp_unmatched_receipts'] == 1
            assert values['cmpp_store_messages{status="delivered"}'] == 30
            assert values['cmpp_connections{channel="cmcc",state="established"}'] == 2
            assert values['cmpp_logins_total{channel="cmcc",status="0"}'] == 2
            assert values['cmpp_messages_final_total{channel="cmcc",status="delivered"}'] == 30
            assert values['cmpp_submit_latency_seconds_count{channel="cmcc"}'] == 30
            assert ready[0] == 200 and ready[1]["channels"]["cmcc"]["healthy"]
            connections = ready[1]["channels"]["cmcc"]["connections"]
            assert [(c["name"], c["state"], c["in_window"], c["window"], c["last_error"])
                    for c in connections] == [("cmcc#0", "established", 0, 16, None),
                                              ("cmcc#1", "established", 0, 16, None)]
            assert "13800138000" not in text
    run(scenario, timeout=30)


def test_latency_histograms_count_messages_by_channel_and_priority_alone(store_setting):
    async def scenario():
        options = GatewayOptions(tuning=FAST, ops_address=("127.0.0.1", 0), serve_api=False)
        async with pipeline(store_setting, {"report_delay": 0.01}, options=options) as (sim, gw):
            accepted = await gw.accept([
                NewMessage("app1", "cmcc", "13800138001", "验证码 123456", kind="code"),
                NewMessage("app1", "cmcc", "13800138002", "警报", urgent=True),
                NewMessage("app1", "cmcc", "13800138003", "很长的通知" * 30),     # 3 parts
                NewMessage("app1", "cmcc", "13800138004", "优惠", kind="marketing"),
                NewMessage("app1", "cmcc", "1" * 30, "优惠", kind="marketing")])  # fails
            assert await all_final(gw, [a.id for a in accepted]) == \
                ["delivered"] * 4 + ["failed"]
            host, port = gw.ops.address
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{host}:{port}/metrics") as response:
                    text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        expected = {"cmpp_accept_to_submit_seconds": {"urgent": 2, "notification": 1,
                                                      "marketing": 1},
                    "cmpp_accept_to_final_seconds": {"urgent": 2, "notification": 1,
                                                     "marketing": 2}}
        for name, counts in expected.items():
            samples = families[name].samples
            assert {s.labels["priority"]: s.value for s in samples
                    if s.name == name + "_count"} == counts
            assert {frozenset(s.labels) - {"le"} for s in samples} == \
                {frozenset({"channel", "priority"})}
            assert {s.labels["channel"] for s in samples} == {"cmcc"}
            assert all(0 <= s.value < 30 for s in samples if s.name == name + "_sum")
        assert "138001380" not in text and "验证码" not in text
    run(scenario, timeout=30)


def _parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


# ----------------------------------------------------------------------------- restarts and MO

def test_a_restart_picks_up_the_store_as_it_was(store_setting):
    async def scenario():
        sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                                        faults=Faults(no_submit_resp=True)))
        await sim.start()
        config = gateway_config(store_setting, sim.address[1])
        first = Gateway(config, GatewayOptions(tuning=FAST, serve_ops=False))
        await first.start()
        ids = [a.id for a in await first.accept([message(f"m{i}") for i in range(20)])]
        await eventually(lambda: len(sim.submits) >= 10)
        await first.stop()                      # nothing was answered: all still accepted
        sim.config.faults.no_submit_resp = False
        second = Gateway(config, GatewayOptions(tuning=FAST, serve_ops=False))
        await second.start()
        assert await all_final(second, ids) == ["delivered"] * 20
        await second.stop()
        await sim.stop()
    run(scenario, timeout=30)


def test_long_mo_is_reassembled_across_connections_and_queued_for_callbacks(store_setting):
    async def scenario():
        options = GatewayOptions(tuning=FAST, serve_ops=False, mo_apps=lambda channel: ("app1",))
        async with pipeline(store_setting, connections=3, options=options) as (sim, gw):
            text = "回复内容很长的上行短信" * 20
            sim.send_mo(ACCOUNT, "13800138000", "10690001", text)
            await eventually(lambda: _sample(gw, "cmpp_mo_messages_total") == 1)
            [callback] = await gw.store.due_callbacks(now=1e12, limit=10)
            assert (callback.app, callback.kind) == ("app1", "mo")
            row = await gw.store.query("SELECT text, parts, complete FROM mo WHERE id = ?",
                                       (callback.ref,))
            assert row == [(text, 4, 1)]
    run(scenario, timeout=30)
