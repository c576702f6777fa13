"""A pool shared with other gateways: it logs a slot in only while granted, gives a slot up
gracefully or at once, and paces to its share of the channel's TPS."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.channel import ChannelPool, ShareLimiter
from gateway.sim import Account, Simulator, SimulatorConfig
from tests.aio import eventually, run
from tests.channel.test_pool import ACCOUNT, FAST, SECRET, channel, message


@contextlib.asynccontextmanager
async def shared_pool(**channel_settings):
    config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, 8)], report_delay=0.05)
    async with Simulator(config) as sim:
        pool = ChannelPool(channel(sim.address[1], **channel_settings), tuning=FAST, shared=True)
        await pool.start()
        try:
            yield sim, pool
        finally:
            await pool.abort()


def test_a_shared_pool_logs_in_only_the_slots_it_is_granted():
    async def scenario():
        async with shared_pool(connections=3) as (sim, pool):
            await asyncio.sleep(0.2)
            assert sim.logins == [] and pool.status().healthy      # holding none is not down
            pool.grant(2)
            await eventually(lambda: len(sim.connections(ACCOUNT)) == 1)
            await asyncio.sleep(0.2)
            assert len(sim.logins) == 1 and pool.granted == (2,)
            assert pool.status().slots == (2,) and pool.status().wanted == 1
    run(scenario)


def test_revoking_a_slot_drops_its_connection_at_once_and_it_stays_out():
    async def scenario():
        async with shared_pool(connections=2) as (sim, pool):
            pool.grant(0)
            pool.grant(1)
            await pool.wait_ready()
            pool.revoke(1)
            await eventually(lambda: len(sim.connections(ACCOUNT)) == 1, timeout=1)
            await asyncio.sleep(0.3)                 # longer than the reconnect backoff
            assert len(sim.connections(ACCOUNT)) == 1 and pool.granted == (0,)
            pool.grant(1)
            await eventually(lambda: len(sim.connections(ACCOUNT)) == 2)
    run(scenario)


def test_releasing_a_slot_waits_for_its_window_then_terminates():
    async def scenario():
        async with shared_pool(connections=1) as (sim, pool):
            sim.config.faults.submit_resp_delay = 0.3
            pool.grant(0)
            await pool.wait_ready()
            answers = [asyncio.ensure_future(pool.submit(message(i))) for i in range(3)]
            await eventually(lambda: sim.counters["submits"] == 3)
            await pool.release(0)
            done = await asyncio.gather(*answers)     # answered, none lost with the connection
            assert all(d.response.result == 0 for d in done)
            assert sim.connections(ACCOUNT) == [] and pool.granted == ()
    run(scenario)


def test_a_shared_pool_paces_to_its_share_of_the_tps_counted_a_second_after_the_grant():
    async def scenario():
        async with shared_pool(connections=4, tps=40) as (sim, pool):
            pool.grant(0)
            await pool.wait_ready()
            sent = asyncio.ensure_future(asyncio.gather(*(pool.submit(message(i))
                                                          for i in range(40))))
            await asyncio.sleep(0.5)
            assert sim.counters["submits"] == 0          # its share counts from 1 s on
            await asyncio.sleep(1.5)
            # 10/s (40 x 1/4) from about 1 s: about 10 in the second after.
            assert 5 <= sim.counters["submits"] <= 11, sim.counters["submits"]
            sent.cancel()
            await asyncio.gather(sent, return_exceptions=True)
    run(scenario)


def test_the_share_limiter_never_passes_more_than_its_rate_in_any_second_as_the_rate_moves():
    limiter = ShareLimiter()
    passes, now = [], 0.0
    for rate, until in ((0, 1.0), (30, 3.0), (10, 5.0), (50, 8.0), (0.5, 12.0)):
        limiter.set_rate(rate)
        while now < until:
            if limiter.try_pass(now) is None:
                passes.append((now, rate))
            now = round(now + 0.001, 3)
    assert not [p for p in passes if p[1] == 0]
    for i, (at, rate) in enumerate(passes):          # the last second up to each pass
        within = [p for p in passes[:i + 1] if p[0] > at - 1.0]
        assert len(within) <= max(1, int(rate)), (at, rate, len(within))
    assert len(passes) > (2 * 30 + 2 * 10 + 3 * 50) / ShareLimiter.WINDOW - 10   # not stalled


def test_a_share_keeps_its_rate_when_the_loop_wakes_up_only_every_20_ms():
    """On a loaded machine the timers fire late. A share of 500/s (two gateways on tps =
    1000) woken every 20 ms still passes its rate, at most floor(rate) in a window: a
    TpsLimiter's 5 ms bursts passed about 3 a wake-up, 160/s."""
    limiter = ShareLimiter()
    limiter.set_rate(500)
    passes, now = 0, 0.0
    while now < 10.0:
        while limiter.try_pass(now) is None:
            passes += 1
        now = round(now + 0.02, 3)
    assert 0.95 * 500 / ShareLimiter.WINDOW * 10 <= passes <= 500 * 10, passes
