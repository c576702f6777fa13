"""Several gateways on one PostgreSQL store: claims on messages and callbacks, the slots'
locks, and the slot keeper sharing a channel's connections among gateways."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from gateway.channel import ChannelPool
from gateway.pipeline import SlotKeeper, slots
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.store import (
    MARKETING,
    NOTIFICATION,
    PRIORITIES,
    URGENT,
    NewMessage,
    StoreUnavailable,
    create_store,
)
from tests.aio import eventually, run
from tests.channel.test_pool import ACCOUNT, FAST, SECRET, channel

FROM_START = dict.fromkeys(PRIORITIES, 0)


@contextlib.asynccontextmanager
async def stores(url: str, count: int, join: bool = True):
    """``count`` stores on one database, each joined as a gateway of its own."""
    opened, sessions = [], []
    try:
        for _ in range(count):
            store = create_store(url)
            await store.open()
            opened.append(store)
            if join:
                session = store.cluster_session()
                await store.join_cluster(session, ["cmcc"])
                sessions.append(session)
        yield opened, sessions
    finally:
        for session in sessions:
            session.drop()
        for store in opened:
            await store.close()


async def accept(store, count: int, channel: str = "cmcc") -> list[int]:
    return [a.id for a in await store.accept(
        [NewMessage("app", channel, "13800138000", f"m{i}") for i in range(count)], time.time())]


def pending(store, limit: int):
    """Every priority's pending messages from the start, as a dispatcher's first read."""
    return store.fetch_pending("cmcc", FROM_START, limit, time.time())


def test_two_gateways_claim_disjoint_messages_and_never_fetch_their_own_again(store_settings,
                                                                                tmp_path):
    async def scenario():
        async with stores(url, 2) as ([a, b], _):
            ids = await accept(a, 30)
            got_a, got_b = await asyncio.gather(pending(a, 20), pending(b, 20))
            first = {m.id for m in got_a} | {m.id for m in got_b}
            assert len(got_a) + len(got_b) == 30 and first == set(ids)
            assert await pending(a, 20) == []
            await a.release_claims([got_a[0].id])
            again = await pending(b, 20)
            assert [m.id for m in again] == [got_a[0].id] and not again[0].taken_over
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_claims_are_read_the_most_urgent_first_from_each_prioritys_last_id(store_settings,
                                                                           tmp_path):
    async def scenario():
        async with stores(url, 2) as ([a, b], _):
            kinds = [("marketing", False), ("notification", False), ("code", False),
                     ("notification", True), ("marketing", False), ("notification", False)]
            ids = [m.id for m in await a.accept(
                [NewMessage("app", "cmcc", "13800138000", f"m{i}", kind=kind, urgent=urgent)
                 for i, (kind, urgent) in enumerate(kinds)], time.time())]
            got_a = await pending(a, 3)
            assert [(m.id, m.priority) for m in got_a] == [
                (ids[2], URGENT), (ids[3], URGENT), (ids[1], NOTIFICATION)]
            # b is read from the same ids on, and finds only what a has not claimed.
            got_b = await pending(b, 10)
            assert [(m.id, m.priority) for m in got_b] == [
                (ids[5], NOTIFICATION), (ids[0], MARKETING), (ids[4], MARKETING)]
            await a.release_claims([ids[3]])
            after = {URGENT: ids[2], NOTIFICATION: 0}
            assert [m.id for m in await b.fetch_pending("cmcc", after, 10, time.time())] == \
                [ids[3]]
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_a_forgotten_gateways_claims_are_taken_over_and_said_so(store_settings, tmp_path):
    async def scenario():
        async with stores(url, 2) as ([a, b], [sa, sb]):
            await accept(a, 5)
            taken = await pending(a, 10)
            assert len(taken) == 5 and await pending(b, 10) == []
            sa.drop()                                   # a's session ends: its lock goes
            await asyncio.sleep(0.1)
            view = await sb.heartbeat([sa.id])          # b forgets a (its lock is free)
            assert sa.id not in view.alive
            view = await sb.heartbeat([])
            assert sa.id not in view.instances
            again = await pending(b, 10)
            assert [m.id for m in again] == [m.id for m in taken]
            assert all(m.taken_over for m in again)
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_a_live_gateway_is_not_forgotten(store_settings, tmp_path):
    async def scenario():
        async with stores(url, 2) as (_, [sa, sb]):
            view = await sb.heartbeat([sa.id])
            assert {sa.id, sb.id} <= view.alive and sa.id in view.instances
            assert (await sa.heartbeat([])).registered
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_two_gateways_claim_disjoint_callbacks(store_settings, tmp_path):
    async def scenario():
        async with stores(url, 2) as ([a, b], _):
            await a.query("INSERT INTO outbox (app, kind, ref, created_at, next_attempt_at) "
                          "SELECT 'app', 'status', g, 0, 0 FROM generate_series(1, 10) g")
            got_a = await a.due_callbacks(time.time(), 6)
            got_b = await b.due_callbacks(time.time(), 6)
            assert len(got_a) == 6 and len(got_b) == 4
            assert not {e.id for e in got_a} & {e.id for e in got_b}
            await a.callback_done(got_a[0].id, False, time.time(), 0.0, "HTTP 500")
            assert got_a[0].id in {e.id for e in await b.due_callbacks(time.time(), 6)}
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


def test_a_slot_is_held_by_one_session_and_freed_with_it(store_settings, tmp_path):
    async def scenario():
        async with stores(url, 2, join=True) as (_, [sa, sb]):
            assert await sa.take("cmcc", 0, None)
            assert not await sb.take("cmcc", 0, None)
            view = await sb.heartbeat([])
            assert view.holders[("cmcc", 0)] == sa.id and sa.key("cmcc", 0) in view.held
            # Its holder's lock gone without giving it up: taken only by one who names it.
            db = await asyncpg.connect(url)
            await db.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE "
                             "locktype = 'advisory' AND objid = $1", sa.key("cmcc", 0))
            await db.close()
            await eventually(lambda: sa.lost.is_set())
            assert not await sb.take("cmcc", 0, None)
            assert await sb.take("cmcc", 0, sa.id)
            await sb.give_up("cmcc", 0)
            assert (await sb.heartbeat([])).holders[("cmcc", 0)] is None
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


# ----------------------------------------------------------------------------- the keeper

@contextlib.asynccontextmanager
async def keepers(url: str, sim, count: int, connections: int):
    """``count`` gateways' slot keepers on shared pools of one channel."""
    opened = []
    try:
        for _ in range(count):
            store = create_store(url)
            await store.open()
            pool = ChannelPool(channel(sim.address[1], name="cmcc", connections=connections),
                               tuning=FAST, shared=True)
            await pool.start()
            keeper = SlotKeeper(store, {"cmcc": pool})
            await keeper.start()
            opened.append((store, pool, keeper))
        yield opened
    finally:
        for store, pool, keeper in opened:
            keeper.closing = True
            await pool.abort()
            await keeper.close()
            await store.close()


def test_keepers_share_the_slots_and_a_vanished_gateways_slot_is_taken_after_takeover(
        store_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(slots, "HOLD", 0.5)
    monkeypatch.setattr(slots, "TAKEOVER", 1.0)
    most = []

    async def scenario():
        sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, 8)]))
        await sim.start()
        watching = True

        async def watch():
            while watching:
                most.append(len(sim.connections(ACCOUNT)))
                await asyncio.sleep(0.005)
        watcher = asyncio.ensure_future(watch())
        async with keepers(url, sim, 3, connections=4) as gateways:
            pools = [pool for _, pool, _ in gateways]
            await eventually(lambda: sorted(len(p.granted) for p in pools) == [1, 1, 2],
                             timeout=10)
            await eventually(lambda: len(sim.connections(ACCOUNT)) == 4, timeout=10)
            # The database ends one gateway's session: its connections go at once, and its
            # slots are taken by the others after TAKEOVER.
            _, lost_pool, lost_keeper = gateways[0]
            held = len(lost_pool.granted)
            db = await asyncpg.connect(url)
            await db.execute("SELECT pg_terminate_backend($1)",
                             lost_keeper.session._db.get_server_pid())
            await db.close()
            await eventually(lambda: lost_pool.open_connections == 0, timeout=1)
            assert lost_pool.granted == ()
            await eventually(lambda: len(sim.connections(ACCOUNT)) == 4 and
                             sum(len(p.granted) for p in pools) == 4, timeout=10)
            assert held
        watching = False
        await watcher
        await sim.stop()
    with store_settings("postgresql", tmp_path) as url:
        run(scenario, timeout=40)
    assert max(most) == 4


def test_a_heartbeat_reads_the_numbers_unsubscribed_since_the_last_with_an_overlap(
        store_settings, tmp_path):
    """The first heartbeat reads the unsubscribes of the last minute; each later one, those
    since the previous read less a minute (a gateway whose clock lags, a late commit), also
    after its session was lost and made again; never older ones."""
    async def scenario():
        async with stores(url, 2) as ((a, b), (sa, sb)):
            now = time.time()
            await b.unsubscribe("13800000001", now - 3600, "cmcc")         # long ago
            await b.unsubscribe("13800000002", now - 5, "cmcc")
            assert (await sa.heartbeat([])).unsubscribed == {"13800000002"}
            await b.unsubscribe("13800000003", now - 30, "cmcc")           # a lagging clock
            assert (await sa.heartbeat([])).unsubscribed == {"13800000002", "13800000003"}
            sa.drop()
            await b.unsubscribe("13800000004", now, "cmcc")
            await rejoin(a, sa)
            assert "13800000004" in (await sa.heartbeat([])).unsubscribed
            assert "13800000001" not in (await sa.heartbeat([])).unsubscribed
    with store_settings("postgresql", tmp_path) as url:
        run(scenario)


async def rejoin(store, session, timeout: float = 30) -> None:
    """Join again after ``session.drop()``: the server frees the old session's instance lock
    a moment after, and join raises StoreUnavailable until then."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            await store.join_cluster(session, ["cmcc"])
            return
        except StoreUnavailable:
            if loop.time() > end:
                raise
            await asyncio.sleep(0.1)
