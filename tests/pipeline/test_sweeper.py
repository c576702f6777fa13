"""The sweeper: the report timeout, unmatched reports, retention and idempotency keys, in
small batches, counted in metrics, surviving store errors; on both backends (tests.conftest's
store_setting)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prometheus_client import generate_latest

from gateway.config import ApiSettings, parse_config
from gateway.ops import Metrics
from gateway.pipeline import Sweeper
from gateway.status import load_tables
from gateway.store import MoMessage, MoPart, NewMessage, Receipt, SegmentResult
from tests.aio import eventually, with_store

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")
SETTINGS = parse_config(
    "[gateway]\nreport_timeout = 100\nunmatched_report_timeout = 50\nretention = 1000\n"
    '[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = 7890\n'
    'account = "900001"\npassword = "secret"\naccess_number = "10690001"\nconnections = 1\n',
    env={}).gateway
API = ApiSettings(idempotency_window=500)


def metric(metrics: Metrics, line: str) -> bool:
    return line in generate_latest(metrics.registry).decode()


async def delivered(store, count: int, at: float) -> list[int]:
    ids = [a.id for a in await store.accept(
        [NewMessage("app1", "cmcc", "13800138000", f"m{i}") for i in range(count)], now=at)]
    await store.record_submits([SegmentResult(i, "cmcc", 1, 1, 0, 7000 + i, at=at) for i in ids],
                               "default")
    await store.record_receipts([Receipt("cmcc", "cmcc#0", 9000 + i, 7000 + i,
                                         CODES.classify("DELIVRD"), received_at=at) for i in ids])
    for entry in await store.due_callbacks(now=at, limit=1000):
        await store.callback_done(entry.id, True, at, None, None)
    return ids


def test_one_sweep_does_all_four_and_counts_them(store_setting):
    async def scenario(store):
        now = [0.0]
        metrics = Metrics()
        sweeper = Sweeper(store, SETTINGS, API, metrics, clock=lambda: now[0])
        await delivered(store, 3, at=10.0)
        [late] = await store.accept([NewMessage("app1", "cmcc", "13800138000", "late")], now=10.0)
        await store.record_submits([SegmentResult(late.id, "cmcc", 1, 1, 0, 1, at=10.0)], "default")
        await store.record_receipts([Receipt("cmcc", "cmcc#0", 1, 424242,
                                             CODES.classify("DELIVRD"), received_at=10.0)])
        await store.accept([NewMessage("app1", "cmcc", "1", "k", idempotency_key="k")], now=10.0)
        now[0] = 200.0
        done = await sweeper.sweep()
        assert (await store.message(late.id)).status == "unknown"        # report timeout
        assert done["unmatched"]["receipts"] == 1 and store.unmatched_snapshot() == 0
        assert done["messages"]["messages"] == 0                         # not old enough
        now[0] = 1500.0
        done = await sweeper.sweep()                     # late's status callback is pending
        assert done["messages"]["messages"] == 3 and done["messages"]["receipts"] == 3
        assert done["idempotency"]["messages.idempotency_key"] == 1      # accepted, kept
        [entry] = await store.due_callbacks(now=1500.0, limit=10)
        await store.callback_done(entry.id, True, 1500.0, None, None)
        done = await sweeper.sweep()
        assert done["messages"]["messages"] == 1
        assert await store.status_counts() == {"accepted": 1}
        assert metric(metrics, "cmpp_unmatched_receipts_expired_total 1.0")
        assert metric(metrics, 'cmpp_store_pruned_rows_total{table="messages"} 4.0')
        assert metric(metrics, 'cmpp_store_pruned_rows_total{table="outbox"} 4.0')
    with_store(scenario, store_setting)


def test_passes_take_turns_and_go_on_where_they_stopped_at_the_next_sweep(store_setting):
    async def scenario(store):
        now = [0.0]
        sweeper = Sweeper(store, SETTINGS, API, Metrics(), clock=lambda: now[0],
                          interval=0.0, batch=2)           # no time: one round a sweep
        await delivered(store, 5, at=10.0)
        for i in range(3):
            [part] = await store.record_mo_parts([MoPart("cmcc", "cmcc#0", 50 + i, "1", "2", "",
                                                         0, 0, b"x%d" % i, 10.0)])
            await store.record_mo_message(MoMessage("cmcc", "1", "2", "x", b"x", 0,
                                                    (part.id,), True, 10.0), ())
        now[0] = 5000.0
        sweeps = [await sweeper.sweep() for _ in range(4)]
        assert [s["messages"]["messages"] for s in sweeps] == [2, 2, 1, 0]
        assert [s["mo"]["mo"] for s in sweeps] == [2, 1, 0, 0]
    with_store(scenario, store_setting)


def test_a_store_error_is_logged_and_the_next_sweep_runs(store_setting, caplog):
    async def scenario(store):
        failures = []
        real = store.expire_reports

        def failing_once(now, timeout):
            if not failures:
                failures.append(now)
                raise RuntimeError("disk on fire")
            return real(now, timeout)
        store.expire_reports = failing_once
        sweeper = Sweeper(store, SETTINGS, API, Metrics(), interval=0.01)
        sweeper.start()
        try:
            await eventually(lambda: "disk on fire" in caplog.text)
            calls = len(failures)
            await asyncio.sleep(0.1)
            assert sweeper._task is not None and not sweeper._task.done() and calls == 1
        finally:
            await sweeper.close()
    with caplog.at_level(logging.ERROR, logger="cmpp_gateway.sweeper"):
        with_store(scenario, store_setting)


def test_the_gateway_sweeps_with_its_settings_and_counts_what_it_removed(store_setting):
    """Wired end to end: [gateway] retention and unmatched_report_timeout reach the sweeper,
    which removes delivered messages and stray reports and counts them on /metrics."""
    from gateway.channel import Backoff, PoolTuning
    from gateway.daemon import Gateway, GatewayOptions
    from gateway.sim import Account, Simulator, SimulatorConfig
    from tests.aio import run

    async def scenario():
        async with Simulator(SimulatorConfig(accounts=[Account("900001", "secret")])) as sim:
            config = parse_config(
                f'[gateway]\nstore = "{store_setting}"\nretention = 0.5\n'
                'unmatched_report_timeout = 0.5\n[channels.cmcc]\nprovider = "default"\n'
                f'host = "127.0.0.1"\nport = {sim.address[1]}\naccount = "900001"\n'
                'password = "secret"\naccess_number = "10690001"\nconnections = 1\n', env={})
            gateway = Gateway(config, GatewayOptions(
                tuning=PoolTuning(reconnect=Backoff(0.01, 0.05)), serve_ops=False,
                sweep_interval=0.2))
            await gateway.start()
            try:
                await gateway.pools["cmcc"].wait_ready()
                await gateway.accept([NewMessage("app1", "cmcc", "13800138000", f"m{i}")
                                      for i in range(3)])
                sim.send_report("900001", 1 << 62)
                await eventually(lambda: gateway.store.unmatched_snapshot() == 1, timeout=10)
                await eventually(lambda: not gateway.store.counts_snapshot()
                                 and gateway.store.unmatched_snapshot() == 0, timeout=10)
                await eventually(lambda: metric(gateway.metrics, 'cmpp_store_pruned_rows_total'
                                                '{table="messages"} 3.0'), timeout=10)
                assert metric(gateway.metrics, "cmpp_unmatched_receipts_expired_total 1.0")
            finally:
                await gateway.stop()
    run(scenario, timeout=60)
