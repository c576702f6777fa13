"""The dispatcher's retry policy, against the simulator: what each SUBMIT outcome does to the
message (Result 0, a definitive Result, Result 8 beyond the pool's cap, a connection lost with
the SUBMIT unanswered), long messages part by part, the TPS limit, and priorities: a code goes
ahead of a backlog, with its Msg_level, also when a shared pool's second's share is full."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

from gateway.channel import Backoff, ChannelPool, PoolTuning
from gateway.config import parse_config
from gateway.ops import Metrics
from gateway.pipeline import ChannelDispatcher
from gateway.sim import Account, Faults, Simulator, SimulatorConfig
from gateway.status import load_tables
from gateway.store import URGENT, NewMessage, StoreUnavailable, create_store, to_unsigned
from tests.aio import eventually, run

ACCOUNT, SECRET = "900001", "secret"
CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")
TUNING = PoolTuning(reconnect=Backoff(0.01, 0.05), throttle=Backoff(0.001, 0.002),
                    max_throttled_sends=2)


def channel_config(port: int, connections: int = 2, **settings):
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in settings.items())
    config = parse_config(
        f'[gateway]\nstore = ":memory:"\n[channels.cmcc]\nprovider = "default"\n'
        f'host = "127.0.0.1"\nport = {port}\naccount = "{ACCOUNT}"\npassword = "{SECRET}"\n'
        f'access_number = "10690001"\nconnections = {connections}\n{extra}')
    return config.channels["cmcc"]


@contextlib.asynccontextmanager
async def dispatching(store_setting: str, faults: Faults | None = None, connections: int = 2,
                      tuning=TUNING, simulator=Simulator, **settings):
    """A simulator, the store ``store_setting`` names (tests.conftest: each backend in turn),
    a pool and a dispatcher that retries after 50 ms; the channel's metrics are
    ``dispatcher.metrics``."""
    sim = simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                                    faults=faults or Faults()))
    await sim.start()
    channel = channel_config(sim.address[1], connections, **settings)
    store = create_store(store_setting)
    await store.open()
    metrics = Metrics().channel("cmcc", CODES)
    pool = ChannelPool(channel, tuning=tuning, on_event=metrics.on_event,
                       on_resend=metrics.resend)
    await pool.start()
    await pool.wait_ready()
    dispatcher = ChannelDispatcher(channel, pool, store, metrics, poll=0.02, retry_delay=0.05)
    dispatcher.start()
    try:
        yield sim, store, dispatcher
    finally:
        await dispatcher.close()
        await pool.abort()
        await store.close()
        await sim.stop()


async def accept(store, dispatcher, *texts: str) -> list[int]:
    accepted = await store.accept([NewMessage("app1", "cmcc", "13800138000", t) for t in texts],
                                  now=time.time())
    dispatcher.notify()
    return [a.id for a in accepted]


async def statuses(store, ids) -> list[str]:
    return [(await store.message(i)).status for i in ids]


def test_every_message_is_submitted_once_with_a_report_requested_and_its_msg_id_recorded(
        store_setting):
    async def scenario():
        async with dispatching(store_setting) as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, *(f"m{i}" for i in range(300)))
            await eventually(lambda: store.counts_snapshot()["submitted"] == 300)
            assert len(sim.submits) == 300
            assert all(s.submit.registered_delivery == 1 for s in sim.submits)
            # One part each: the Msg_Id is on the message's row, and no segments row is written.
            rows = await store.query("SELECT id, msg_id FROM messages ORDER BY id")
            assert [r[0] for r in rows] == ids
            assert sorted(to_unsigned(r[1]) for r in rows) == sorted(s.msg_id for s in sim.submits)
            assert await store.query("SELECT COUNT(*) FROM segments") == [(0,)]
            assert dispatcher.in_flight == 0
    run(scenario, timeout=30)


def test_a_long_message_goes_part_by_part_with_one_reference(store_setting):
    async def scenario():
        async with dispatching(store_setting) as (sim, store, dispatcher):
            [mid] = await accept(store, dispatcher, "长" * 150)            # 3 UCS2 parts
            await eventually(lambda: store.counts_snapshot()["submitted"] == 1)
            parts = [s.submit for s in sim.submits]
            assert [(p.pk_total, p.pk_number) for p in parts] == [(3, 1), (3, 2), (3, 3)]
            assert len({p.msg_content[3] for p in parts}) == 1            # the UDH reference
            assert await store.query("SELECT part FROM segments WHERE message_id = ? "
                                     "ORDER BY part", (mid,)) == [(1,), (2,), (3,)]
            assert await store.query("SELECT msg_id FROM messages WHERE id = ?", (mid,)) == \
                [(None,)]                           # a long message's Msg_Ids are its parts'
    run(scenario, timeout=30)


def test_a_definitive_result_makes_the_message_rejected_at_once(store_setting):
    async def scenario():
        async with dispatching(store_setting, Faults(submit_result=10)) as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, "a", "b")
            await eventually(lambda: store.counts_snapshot()["rejected"] == 2)
            message = await store.message(ids[0])
            assert message.status_stat == "Result 10"
            assert len(sim.submits) == 2                                   # not sent again
    run(scenario, timeout=30)


def test_result_8_beyond_the_pools_cap_waits_and_the_message_goes_later(store_setting):
    async def scenario():
        async with dispatching(store_setting, Faults(submit_result=8)) as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, "a")
            await eventually(lambda: len(sim.submits) >= 6)        # 3 sends a round, 2+ rounds
            assert await statuses(store, ids) == ["accepted"]
            sim.config.faults.submit_result = None
            await eventually(lambda: store.counts_snapshot()["submitted"] == 1)
            [(attempts,)] = await store.query("SELECT attempts FROM messages")
            assert attempts >= 1
    run(scenario, timeout=30)


def test_a_lost_connection_under_policy_report_ends_the_message_unknown(store_setting):
    async def scenario():
        faults = Faults(no_submit_resp=True, disconnect_after=2)      # CONNECT, SUBMIT: gone
        async with dispatching(store_setting, faults, connections=1, on_connection_lost="report") \
                as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, "a")
            await eventually(lambda: store.counts_snapshot()["unknown"] == 1)
            message = await store.message(ids[0])
            assert message.status_temporary
            assert len(sim.submits) == 1
    run(scenario, timeout=30)


def test_a_lost_connection_under_policy_resend_sends_again_and_the_message_goes(store_setting):
    async def scenario():
        faults = Faults(no_submit_resp=True, disconnect_after=2)      # CONNECT, SUBMIT: gone
        tuning = dataclasses.replace(TUNING, max_lost_resends=1000)
        async with dispatching(store_setting, faults, connections=1,
                               tuning=tuning) as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, "a")
            await eventually(lambda: len(sim.submits) >= 2)          # sent again after a loss
            faults.no_submit_resp, faults.disconnect_after = False, None
            await eventually(lambda: store.counts_snapshot()["submitted"] == 1)
            assert len(sim.submits) >= 2
            assert await statuses(store, ids) == ["submitted"]
    run(scenario, timeout=30)


def test_a_tps_limit_paces_the_dispatcher(store_setting):
    async def scenario():
        async with dispatching(store_setting, tps=200) as (sim, store, dispatcher):
            await accept(store, dispatcher, *(f"m{i}" for i in range(100)))
            await eventually(lambda: store.counts_snapshot()["submitted"] == 100)
            times = sorted(s.at for s in sim.submits)
            assert times[-1] - times[0] >= 99 / 200 * 0.9
    run(scenario, timeout=30)


def test_a_message_that_cannot_be_encoded_fails_alone_and_is_not_retried(store_setting):
    async def scenario():
        async with dispatching(store_setting) as (sim, store, dispatcher):
            accepted = await store.accept(
                [NewMessage("app1", "cmcc", "1" * 30, "too long a number"),
                 NewMessage("app1", "cmcc", "13800138000", "fine")], now=time.time())
            dispatcher.notify()
            await eventually(lambda: store.counts_snapshot()["submitted"] == 1)
            await eventually(lambda: store.counts_snapshot()["failed"] == 1)
            bad = await store.message(accepted[0].id)
            assert bad.status == "failed" and bad.status_stat
            assert [s.submit.dest_terminal_ids for s in sim.submits] == [("13800138000",)]
    run(scenario, timeout=30)


def test_while_commits_lag_no_more_than_twice_connections_x_window_segments_go_unsettled(
        store_setting):
    async def scenario():
        async with dispatching(store_setting, connections=2, window=4) as (sim, store,
                                                                          dispatcher):
            held = []                                 # outcomes whose commit is held back
            record_submits = store.record_submits

            def lagging(results, provider):
                future = asyncio.get_running_loop().create_future()
                held.append((results, provider, future))
                return future
            store.record_submits = lagging
            await accept(store, dispatcher, *(f"m{i}" for i in range(100)))
            # 2 x connections x window SUBMIT_RESPs read, the windows free again, and the
            # outcomes not committed: nothing more goes out.
            await eventually(lambda: sum(len(r) for r, _, _ in held) >= 16)
            await asyncio.sleep(0.2)
            assert (len(sim.submits), sum(len(r) for r, _, _ in held)) == (16, 16)
            assert dispatcher.unsettled == 16
            store.record_submits = record_submits
            for results, provider, future in held:
                record_submits(results, provider).add_done_callback(
                    lambda done, future=future: future.set_result(done.result()))
            await eventually(lambda: store.counts_snapshot()["submitted"] == 100)
            # the dispatcher settles each batch when its commit's answer comes back to it
            await eventually(lambda: dispatcher.unsettled == 0)
            assert len(sim.submits) == 100
    run(scenario, timeout=30)


def test_a_store_that_cannot_be_read_for_a_while_holds_the_dispatcher_up_but_never_stops_it(
        store_setting):
    async def scenario():
        async with dispatching(store_setting) as (sim, store, dispatcher):
            fetch_pending, refusals = store.fetch_pending, []

            def unavailable(*args):
                refusals.append(args)
                raise StoreUnavailable("the store cannot be reached: (a test)")
            store.fetch_pending = unavailable
            await accept(store, dispatcher, "a", "b")
            await eventually(lambda: len(refusals) >= 3)         # tried again, each poll
            assert sim.submits == []
            store.fetch_pending = fetch_pending
            await eventually(lambda: store.counts_snapshot()["submitted"] == 2)
    run(scenario, timeout=30)


# ----------------------------------------------------------------------------- priorities

CODE_NUMBER = "13900139000"


async def accept_code(store, dispatcher) -> int:
    [accepted] = await store.accept([NewMessage("app1", "cmcc", CODE_NUMBER, "验证码 123456",
                                                kind="code")], now=time.time())
    dispatcher.notify(URGENT)
    return accepted.id


def code_submits(sim) -> list[int]:
    """Where the code's SUBMITs are among all the simulator received."""
    return [i for i, s in enumerate(sim.submits) if s.submit.dest_terminal_ids == (CODE_NUMBER,)]


def test_a_code_accepted_while_a_backlog_drains_goes_next_with_msg_level_9(store_setting):
    async def scenario():
        async with dispatching(store_setting, tps=100) as (sim, store, dispatcher):  # 10 s of backlog
            await accept(store, dispatcher, *(f"m{i}" for i in range(1000)))
            await eventually(lambda: len(sim.submits) >= 20)
            before = len(sim.submits)
            await accept_code(store, dispatcher)
            await eventually(lambda: code_submits(sim), timeout=20)
            # Next but for the second it may take under load; not after the 500 notifications
            # held in memory (read by the next fetch when the queue has room), nor after the
            # whole backlog (the next fetch in id order).
            [position] = code_submits(sim)
            assert position - before < 100, (before, position)
            levels = {s.submit.dest_terminal_ids[0]: s.submit.msg_level for s in sim.submits}
            assert levels.pop(CODE_NUMBER) == 9
            assert set(levels.values()) == {1}
    run(scenario, timeout=60)


def test_each_priority_has_its_msg_level_on_the_wire(store_setting):
    async def scenario():
        async with dispatching(store_setting) as (sim, store, dispatcher):
            kinds = {"13800138001": ("code", False), "13800138002": ("notification", True),
                     "13800138003": ("notification", False), "13800138004": ("marketing", False)}
            await store.accept([NewMessage("app1", "cmcc", number, "text", kind=kind,
                                           urgent=urgent)
                                for number, (kind, urgent) in kinds.items()], now=time.time())
            dispatcher.notify(URGENT)
            await eventually(lambda: len(sim.submits) == 4)
            assert {s.submit.dest_terminal_ids[0]: s.submit.msg_level for s in sim.submits} == \
                {"13800138001": 9, "13800138002": 9, "13800138003": 1, "13800138004": 0}
    run(scenario, timeout=30)


class ThrottlingCodes(Simulator):
    """Answers the first three SUBMITs to CODE_NUMBER with Result 8 (flow control): the pool
    gives up on the third, and the dispatcher defers the code."""

    refusals = 3

    def on_submit(self, conn, event) -> None:
        faults = self.config.faults
        if event.submit.dest_terminal_ids == (CODE_NUMBER,) and self.refusals:
            self.refusals -= 1
            faults.submit_result = 8
        try:
            super().on_submit(conn, event)
        finally:
            faults.submit_result = None


def test_a_deferred_code_goes_again_when_due_not_after_the_backlog(store_setting):
    async def scenario():
        async with dispatching(store_setting, tps=100, simulator=ThrottlingCodes) \
                as (sim, store, dispatcher):
            await accept(store, dispatcher, *(f"m{i}" for i in range(1000)))
            await eventually(lambda: len(sim.submits) >= 20)
            before = len(sim.submits)
            code = await accept_code(store, dispatcher)
            await eventually(lambda: any(sim.submits[i].result == 0 for i in code_submits(sim)),
                             timeout=20)
            [(attempts,)] = await store.query("SELECT attempts FROM messages WHERE id = ?",
                                              (code,))
            assert attempts == 1                                    # it was deferred once
            # Sent again 50 ms later (retry_delay), not once the queue had room for a read
            # (500 notifications later) or the backlog's last page was read.
            assert code_submits(sim)[-1] - before < 100, (before, code_submits(sim))
    run(scenario, timeout=60)


class FullSharedPool:
    """A pool shared with other gateways that holds a slot, its share 3 SUBMITs a second, and
    whose windows stay full: what the dispatcher fetches waits in its queues."""

    shared, granted, rate, on_window_free, tuning = True, (0,), 3.0, None, TUNING

    def submit_now(self, pdu, on_outcome) -> bool:
        return False


def test_with_a_shared_pool_an_urgent_read_over_a_seconds_share_hands_back_the_least_urgent(
        store_setting):
    async def scenario():
        store = create_store(store_setting)
        await store.open()
        handed_back: list[int] = []

        async def release_claims(ids):
            handed_back.extend(ids)
        store.release_claims = release_claims
        dispatcher = ChannelDispatcher(channel_config(1, connections=1), FullSharedPool(), store,
                                       Metrics().channel("cmcc", CODES), poll=0.02)
        dispatcher.start()
        try:
            marketing = [a.id for a in await store.accept(
                [NewMessage("app1", "cmcc", "13800138000", f"sale {i}", kind="marketing")
                 for i in range(4)], now=time.time())]
            dispatcher.notify()
            await eventually(lambda: dispatcher.in_flight == 3)     # a second's share held
            assert dispatcher.backlog == 3 and handed_back == []
            await accept_code(store, dispatcher)
            await eventually(lambda: handed_back != [])
            assert handed_back == [marketing[2]] and dispatcher.in_flight == 3
        finally:
            await dispatcher.close()
            await store.close()
    run(scenario)


class WaitingSharedPool(FullSharedPool):
    """FullSharedPool with no TPS: it holds ``max_unsettled`` messages ready."""

    rate = None


def test_claims_made_by_a_fetch_whose_answer_was_lost_are_handed_back_and_read_again(
        store_settings, tmp_path):
    """A fetch can fail after its claims were committed: the database took the COMMIT and
    stopped answering before its answer came. The messages are then this gateway's, and no
    other gateway may take them, but it never saw them. It hands back every message it claims
    and does not hold, reads them again, and they are not taken over from anyone."""
    async def scenario():
        store = create_store(url)
        await store.open()
        session = store.cluster_session()
        await store.join_cluster(session, ["cmcc"])
        fetch, lost = store.fetch_pending, []

        async def answer_lost(*args):
            rows = await fetch(*args)
            if rows and not lost:
                lost.extend(row.id for row in rows)
                raise StoreUnavailable("the database stopped answering")
            return rows
        store.fetch_pending = answer_lost
        dispatcher = ChannelDispatcher(channel_config(1, connections=1), WaitingSharedPool(),
                                       store, Metrics().channel("cmcc", CODES), poll=0.02)
        try:
            ids = [a.id for a in await store.accept(
                [NewMessage("app1", "cmcc", "13800138000", f"m{i}") for i in range(5)],
                now=time.time())]
            dispatcher.start()
            await eventually(lambda: dispatcher.in_flight == 5)
            assert sorted(lost) == ids                   # the lost fetch had claimed them all
            held = [work.row for ready in dispatcher._ready for work in ready]
            assert sorted(row.id for row in held) == ids
            assert not any(row.taken_over for row in held)
        finally:
            await dispatcher.close()
            session.drop()
            await store.close()
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_a_read_that_fails_unexpectedly_is_logged_and_made_again(store_setting, caplog):
    """Not only StoreUnavailable: any error of a read leaves the fetcher running, says so,
    and the next read finds the messages."""
    async def scenario():
        store = create_store(store_setting)
        await store.open()
        fetch, failures = store.fetch_pending, []

        async def fails_once(*args):
            if not failures:
                failures.append(1)
                raise RuntimeError("a bug in the store")
            return await fetch(*args)
        store.fetch_pending = fails_once
        dispatcher = ChannelDispatcher(channel_config(1, connections=1), WaitingSharedPool(),
                                       store, Metrics().channel("cmcc", CODES), poll=0.02)
        try:
            await store.accept([NewMessage("app1", "cmcc", "13800138000", f"m{i}")
                                for i in range(3)], now=time.time())
            dispatcher.start()
            await eventually(lambda: dispatcher.in_flight == 3)
            assert failures == [1]
            assert "could not read the messages to send (RuntimeError: a bug in the store)" \
                in caplog.text
        finally:
            await dispatcher.close()
            await store.close()
    run(scenario)
