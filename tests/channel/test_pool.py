"""The channel pool against the simulator over loopback."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging

import pytest

import cmpp
from gateway.channel import (
    Backoff,
    ChannelPool,
    ChannelPools,
    DeadlineExceeded,
    OutcomeUnknown,
    PoolClosed,
    PoolTuning,
    TpsLimiter,
)
from gateway.config import parse_config
from gateway.sim import Account, Faults, Simulator, SimulatorConfig
from tests.aio import eventually, run

ACCOUNT, SECRET = "900001", "secret"
FAST = PoolTuning(reconnect=Backoff(0.01, 0.05), refused_retry=60.0, drain_timeout=5.0)


def channel(port: int, name: str = "test", **settings):
    values = dict(provider="cmcc", host="127.0.0.1", port=port, account=ACCOUNT,
                  password=SECRET, access_number="10690001", connections=2)
    values.update(settings)
    body = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}"
                     for k, v in values.items()).replace("'", '"')
    return parse_config(f"[channels.{name}]\n{body}\n").channels[name]


def message(i: int, registered_delivery: int = 0) -> cmpp.Submit:
    return cmpp.Submit(dest_terminal_ids=("13800138000",), msg_content=f"m{i}".encode(),
                       src_id="10690001", registered_delivery=registered_delivery)


@contextlib.asynccontextmanager
async def running(max_connections=4, faults=None, tuning=FAST, **channel_settings):
    config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, max_connections)],
                             faults=faults or Faults())
    async with Simulator(config) as sim:
        pool = ChannelPool(channel(sim.address[1], **channel_settings), tuning=tuning)
        await pool.start()
        try:
            yield sim, pool
        finally:
            await pool.abort()


def contents(sim) -> collections.Counter:
    return collections.Counter(s.submit.msg_content for s in sim.submits)


# ----------------------------------------------------------------------------- connections

def test_all_connections_come_up_and_stay_up():
    async def scenario():
        async with running(connections=3) as (sim, pool):
            await pool.wait_ready()
            await asyncio.sleep(0.3)
            assert pool.open_connections == 3 and len(sim.connections(ACCOUNT)) == 3
            status = pool.status()
            assert status.healthy and status.open == status.wanted == 3
            assert [c.state for c in status.connections] == ["established"] * 3
            assert len(sim.logins) == 3
    run(scenario)


def test_a_killed_connection_is_healed():
    async def scenario():
        async with running(connections=3) as (sim, pool):
            await pool.wait_ready()
            sim.kill(sim.connections(ACCOUNT)[0])
            await eventually(lambda: len(sim.logins) == 4)
            await pool.wait_ready()
            assert len(sim.connections(ACCOUNT)) == 3
            assert any(c.last_error is None for c in pool.status().connections)
    run(scenario)


def test_an_account_limited_to_fewer_connections_ends_with_the_allowed_number(caplog):
    async def scenario():
        async with running(max_connections=2, connections=4) as (sim, pool):
            await pool.wait_ready(2)
            await asyncio.sleep(0.5)
            status = pool.status()
            assert status.open == 2 and status.healthy
            refused = [c for c in status.connections if c.state == "disconnected"]
            assert len(refused) == 2
            assert all("status 5" in c.last_error for c in refused)
    with caplog.at_level(logging.WARNING, logger="cmpp_gateway.pool"):
        run(scenario)
    assert "the account may allow fewer connections than configured" in caplog.text


def test_a_wrong_password_stops_the_hammering():
    async def scenario():
        async with running(connections=4, password="wrong") as (sim, pool):
            await asyncio.sleep(1.0)
            assert sim.logins == [(ACCOUNT, 3)]          # one attempt, then the slow cadence
            status = pool.status()
            assert not status.healthy and "authentication error" in status.reason
    run(scenario)


def test_a_refused_authenticator_names_the_cause_and_the_setting(caplog):
    async def scenario():
        async with running(faults=Faults(zero_authenticator=True), connections=3,
                           verify_authenticator="refuse") as (sim, pool):
            await eventually(lambda: "login refused" in pool.status().reason)
            await asyncio.sleep(0.3)
            status = pool.status()
            assert not status.healthy and status.open == 0
            assert sim.logins == [(ACCOUNT, 0)]    # the center took the password; once, then slow
            for text in (status.reason, status.connections[0].last_error):
                assert "the center's AuthenticatorISMG (all zero) does not match" in text
                assert 'verify_authenticator = "warn"' in text
                assert "check the account and password" not in text
    with caplog.at_level(logging.ERROR, logger="cmpp_gateway.pool"):
        run(scenario)
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith("test: login refused: the center's AuthenticatorISMG (all zero)")
    assert 'verify_authenticator = "warn" on this channel' in line
    assert "check the account and password" not in line


def test_a_wrong_password_is_still_named_as_such(caplog):
    async def scenario():
        async with running(password="wrong") as (sim, pool):
            await eventually(lambda: "login refused" in pool.status().reason)
    with caplog.at_level(logging.ERROR, logger="cmpp_gateway.pool"):
        run(scenario)
    assert "status 3 (authentication error); check the account and password" in caplog.text
    assert "verify_authenticator" not in caplog.text


def test_submits_spread_over_the_connections_with_free_window():
    async def scenario():
        async with running(connections=2, faults=Faults(submit_resp_delay=0.05)) as (sim, pool):
            await pool.wait_ready()
            await asyncio.gather(*(pool.submit(message(i)) for i in range(64)))
            per_connection = collections.Counter(s.connection for s in sim.submits)
            assert len(per_connection) == 2 and min(per_connection.values()) >= 24
    run(scenario)


def test_several_channels_run_side_by_side():
    async def scenario():
        sims = [Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)])) for _ in range(2)]
        for sim in sims:
            await sim.start()
        pools = ChannelPools({name: ChannelPool(channel(sim.address[1], name=name, provider=name),
                                                tuning=FAST)
                              for name, sim in zip(("cmcc", "unicom"), sims)})
        await pools.start()
        for pool in pools.pools.values():
            await pool.wait_ready()
        await pools["cmcc"].submit(message(1))
        await pools["unicom"].submit(message(2))
        await pools["unicom"].submit(message(3))
        assert [len(sim.submits) for sim in sims] == [1, 2]
        assert [s.channel for s in pools.status()] == ["cmcc", "unicom"]
        await pools.close()
        for sim in sims:
            await sim.stop()
    run(scenario)


# ----------------------------------------------------------------------------- rate and flow control

def test_the_tps_limit_holds_within_5_percent_over_5_seconds_at_the_simulator():
    tps = 200

    async def scenario():
        async with running(connections=2, tps=tps) as (sim, pool):
            await pool.wait_ready()

            async def sender(start: int):
                for i in range(start, start + 10_000, 4):
                    await pool.submit(message(i))
            senders = [asyncio.ensure_future(sender(k)) for k in range(4)]
            await asyncio.sleep(6.2)
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            times = [s.at for s in sim.submits]
            begin = times[0] + 0.5
            in_window = sum(1 for t in times if begin <= t < begin + 5.0)
            # The limit is the upper bound; the lower one only says the pacing does not stall
            # (a loaded machine may fall short of the rate without the limiter being wrong).
            assert 0.8 * 5 * tps <= in_window <= 1.05 * 5 * tps, in_window
            per_second = max(sum(1 for t in times if a <= t < a + 1.0) for a in times)
            assert per_second <= tps * 1.05, per_second      # arrival jitter, not bursts
    run(scenario, timeout=30)


def test_result_8_backs_off_and_every_message_still_goes_through():
    async def scenario():
        async with running(connections=2, faults=Faults(throttle_tps=100)) as (sim, pool):
            await pool.wait_ready()
            done = await asyncio.gather(*(pool.submit(message(i)) for i in range(300)))
            assert len({d.response.msg_id for d in done}) == 300
            assert sim.counters["throttled"] > 0
            accepted = collections.Counter(s.submit.msg_content for s in sim.submits if s.result == 0)
            assert len(accepted) == 300 and max(accepted.values()) == 1
            assert max(d.sends for d in done) > 1
    run(scenario, timeout=30)


def test_a_submit_waits_for_a_connection_until_its_deadline():
    async def scenario():
        async with running(connections=1, password="wrong") as (sim, pool):
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(DeadlineExceeded):
                await pool.submit(message(1), deadline=start + 0.3)
            assert 0.29 <= loop.time() - start < 1.0
    run(scenario)


def test_tps_limiter_never_lets_a_burst_through_even_after_idling():
    async def scenario():
        limiter, loop = TpsLimiter(100), asyncio.get_running_loop()
        await asyncio.sleep(0.3)                         # idle time earns no burst
        times = []

        async def caller():
            for _ in range(40):
                await limiter.acquire(None)
                times.append(loop.time())
        await asyncio.gather(*(caller() for _ in range(5)))
        times.sort()
        assert times[1] - times[0] >= 0.01 - 0.001   # idle time earned no burst
        for i in range(len(times) - 10):           # 10 intervals, less one caught up
            assert times[i + 10] - times[i] >= 0.09 - 0.001
    run(scenario)


def test_tps_limiter_reaches_rates_finer_than_the_loops_timers():
    """At 5,000/s an interval is 0.2 ms, finer than the loop's 1 ms timers: one wake-up lets a
    5 ms burst through, so the rate holds, and still no second has more than the rate (+1)."""
    async def scenario():
        rate, limiter, loop = 5000, TpsLimiter(5000), asyncio.get_running_loop()
        stop, times = loop.time() + 1.5, []

        async def caller():
            while loop.time() < stop:
                await limiter.acquire(None)
                times.append(loop.time())
        await asyncio.gather(*(caller() for _ in range(32)))
        begin = times[0] + 0.25
        in_window = sum(1 for t in times if begin <= t < begin + 1.0)
        # One pass per 1 ms timer would be 1,000/s: well over half the rate shows the bursts
        # work, with room for a loaded machine.
        assert in_window >= 0.6 * rate, in_window
        times.sort()
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        assert busiest <= rate + 1, busiest
    run(scenario)


def test_tps_limiter_refuses_a_slot_past_the_deadline_without_taking_it():
    async def scenario():
        limiter = TpsLimiter(10)
        now = asyncio.get_running_loop().time()
        await limiter.acquire(None)                     # passes at once
        with pytest.raises(DeadlineExceeded):
            await limiter.acquire(now + 0.05)           # the next turn is about now + 0.1
        await limiter.acquire(now + 0.2)                # the refused call took nothing
        assert 0.07 <= asyncio.get_running_loop().time() - now <= 0.3   # not before its turn
    run(scenario)


# ----------------------------------------------------------------------------- lost connections

async def _kill_with_full_window(sim, pool, count=40):
    """Submit ``count`` messages, kill every connection once both windows are full."""
    await pool.wait_ready()
    tasks = [asyncio.ensure_future(pool.submit(message(i))) for i in range(count)]
    await eventually(lambda: len(sim.submits) >= 32)
    in_flight = {s.submit.msg_content for s in sim.submits}
    sim.config.faults.submit_resp_delay = 0.01
    for conn in sim.connections(ACCOUNT):
        sim.kill(conn)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return in_flight, outcomes


def test_an_abrupt_disconnect_with_a_full_window_loses_no_submit_when_resending():
    async def scenario():
        faults = Faults(submit_resp_delay=30)
        async with running(connections=2, faults=faults) as (sim, pool):
            in_flight, outcomes = await _kill_with_full_window(sim, pool)
            assert all(not isinstance(o, Exception) for o in outcomes), outcomes
            seen = contents(sim)
            assert set(seen) == {f"m{i}".encode() for i in range(40)}
            twice = {c for c, n in seen.items() if n > 1}
            assert twice == in_flight and max(seen.values()) == 2
            assert sum(o.sends == 2 for o in outcomes) == len(in_flight)
    run(scenario)


def test_an_abrupt_disconnect_reports_outcome_unknown_when_told_to():
    async def scenario():
        faults = Faults(submit_resp_delay=30)
        async with running(connections=2, faults=faults, on_connection_lost="report") as (sim, pool):
            in_flight, outcomes = await _kill_with_full_window(sim, pool)
            unknown = {f"m{i}".encode() for i, o in enumerate(outcomes) if isinstance(o, OutcomeUnknown)}
            assert unknown == in_flight
            seen = contents(sim)
            assert max(seen.values()) == 1 and len(seen) == 40
    run(scenario)


# ----------------------------------------------------------------------------- shutting down

def test_drain_under_load_finishes_every_answered_submit_and_terminates_cleanly():
    async def scenario():
        async with running(connections=2, faults=Faults(submit_resp_delay=0.05)) as (sim, pool):
            await pool.wait_ready()
            tasks = [asyncio.ensure_future(pool.submit(message(i))) for i in range(100)]
            await eventually(lambda: len(sim.submits) >= 10)
            await pool.close()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(not isinstance(o, Exception) for o in outcomes)
            assert len(sim.submits) == 100 and sim.connections(ACCOUNT) == []
            with pytest.raises(PoolClosed):
                await pool.submit(message(101))
    run(scenario)


def test_abort_is_immediate_and_reports_what_may_have_been_sent():
    async def scenario():
        async with running(connections=1, faults=Faults(no_submit_resp=True)) as (sim, pool):
            await pool.wait_ready()
            waiting = asyncio.ensure_future(pool.submit(message(1)))
            await eventually(lambda: sim.submits)
            await pool.abort()
            with pytest.raises(OutcomeUnknown):
                await waiting
    run(scenario)
