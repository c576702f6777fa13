"""SQL of the shared store: messages, submits, reading and callbacks (what settles segments
and messages is in ``settle``, reports and MO in ``receipts``, the tables in ``schema``), as
``gateway.store.sqlite.messages`` is for SQLite, function for function.

Every function runs in the store's writer thread inside a transaction opened by
``PostgresStore._transaction``. Rows go to the server as one array per column (``unnest``),
so that a statement's text, and its prepared plan, is the same whatever the number of rows,
and a batch costs one round trip, not one per row. ``State`` (in ``state``) carries the
connection and the facts kept in step with what is committed.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.status import DeliveryStatus

from ..records import (
    Accepted,
    MessageView,
    MoView,
    NewMessage,
    OutboxEntry,
    PendingMessage,
    SegmentResult,
    SegmentView,
    segment_on_row,
    to_signed,
    to_unsigned,
)
from .settle import _match_held, _settle, _settle_reported
from .state import SUBMITTED, State, columns

# ----------------------------------------------------------------------------- messages

async def accept(state: State, messages: list[NewMessage], now: float) -> list[Accepted]:
    """Keyed messages first, as the SQLite store does: a key already stored (or seen earlier
    in ``messages``) gives the first message's id. ON CONFLICT on the unique index makes this
    hold with several gateways accepting the same key at once: the second waits for the
    first's commit and then finds its row."""
    results: list[Accepted | None] = [None] * len(messages)
    first: dict[tuple[str, str], int] = {}
    for i, m in enumerate(messages):
        if m.idempotency_key is not None:
            first.setdefault((m.app, m.idempotency_key), i)
    if first:
        ids = await _insert_keyed(state, [messages[i] for i in first.values()], now)
        for i, m in enumerate(messages):
            if m.idempotency_key is not None:
                key = (m.app, m.idempotency_key)
                new_id, fresh = ids[key]
                results[i] = Accepted(new_id, existing=not (fresh and first[key] == i))
    plain = [i for i, m in enumerate(messages) if m.idempotency_key is None]
    for i, new_id in zip(plain, await _insert_messages(state, [messages[i] for i in plain], now)):
        results[i] = Accepted(new_id)
    return results


_INSERT_MESSAGES = (
    "INSERT INTO messages (app, channel, recipient, text, template_id, kind, idempotency_key, "
    "reference, callback, priority, created_at) SELECT a, c, r, t, tid, k, ik, ref, cb, p, $11 "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::text[], $8::int[], $9::text[], $10::int[]) AS v(a, c, r, t, tid, k, ik, ref, cb, p) ")


def _message_rows(messages: list[NewMessage]) -> list[list]:
    return columns([(m.app, m.channel, m.recipient, m.text, m.template_id, m.kind,
                     m.idempotency_key, m.reference, m.callback, m.priority)
                    for m in messages], 10)


async def _insert_messages(state: State, messages: list[NewMessage], now: float) -> list[int]:
    """New ids in the order of ``messages``: a statement draws its ids from the sequence in
    the order it inserts the rows, so sorting them gives that order back."""
    if not messages:
        return []
    rows = await state.db.fetch(_INSERT_MESSAGES + "RETURNING id", *_message_rows(messages),
                                now)
    state.moved(None, DeliveryStatus.ACCEPTED.value, len(rows))
    return sorted(r[0] for r in rows)


async def _insert_keyed(state: State, messages: list[NewMessage],
                        now: float) -> dict[tuple[str, str], tuple[int, bool]]:
    """(app, key) -> (id, whether this call stored it), for messages with distinct keys."""
    inserted = await state.db.fetch(
        _INSERT_MESSAGES + "ON CONFLICT (app, idempotency_key) WHERE idempotency_key IS NOT "
        "NULL DO NOTHING RETURNING id, app, idempotency_key", *_message_rows(messages), now)
    state.moved(None, DeliveryStatus.ACCEPTED.value, len(inserted))
    found = {(r[1], r[2]): (r[0], True) for r in inserted}
    missing = [m for m in messages if (m.app, m.idempotency_key) not in found]
    if missing:
        for r in await state.db.fetch(
                "SELECT m.id, m.app, m.idempotency_key FROM messages m JOIN unnest($1::text[], "
                "$2::text[]) AS k(app, key) ON m.app = k.app AND m.idempotency_key = k.key",
                [m.app for m in missing], [m.idempotency_key for m in missing]):
            found[(r[1], r[2])] = (r[0], False)
    return found


# The pending messages of one channel, the most urgent first: for each priority asked for, a
# range of the index messages_pending from that priority's last id on, in the index's order
# (nothing to sort but the few rows kept), all priorities in one round trip.
_PENDING = (
    "SELECT m.id, m.recipient, m.text, m.reference, m.attempts, "
    "ARRAY(SELECT s.part FROM segments s WHERE s.message_id = m.id), m.created_at, m.priority "
    "FROM unnest($2::int[], $3::bigint[]) AS a(priority, after) CROSS JOIN LATERAL "
    "(SELECT * FROM messages WHERE channel = $1 AND status = 'accepted' "
    "AND priority = a.priority AND id > a.after AND next_attempt_at <= $4 "
    "ORDER BY id LIMIT $5) AS m ORDER BY m.priority, m.id LIMIT $5")


async def fetch_pending(state: State, channel: str, after: Mapping[int, int], limit: int,
                        now: float) -> list[PendingMessage]:
    """Up to ``limit`` messages by priority, then id: each priority of ``after`` from the id
    it maps to on; the priorities it leaves out are not read. One of several gateways claims
    them (``_claim_pending``)."""
    priorities = sorted(after)
    ids = [after[p] for p in priorities]
    if state.instance is not None:
        return await _claim_pending(state, channel, priorities, ids, limit, now)
    rows = await state.db.fetch(_PENDING, channel, priorities, ids, now, limit)
    return [PendingMessage(r[0], channel, r[1], r[2], r[3], r[4], frozenset(r[5]), r[6], r[7])
            for r in rows]


# A claim holds while its gateway's row in cluster_instances does (cluster.py): a message
# claimed by a gateway that is gone is taken over, and said so (PendingMessage.taken_over).
_CLAIMABLE = ("(m.claim IS NULL OR NOT EXISTS (SELECT 1 FROM cluster_instances i "
              "WHERE i.id = m.claim))")


# _PENDING for one of several gateways: the rows are locked as each priority's range is read
# (rows another transaction holds are skipped, not waited for), and claimed in the statement
# that found them.
_CLAIM_PENDING = (
    "WITH c AS (SELECT p.id, p.claim FROM unnest($2::int[], $3::bigint[]) AS a(priority, after) "
    "CROSS JOIN LATERAL (SELECT m.id, m.claim, m.priority FROM messages m WHERE m.channel = $1 "
    "AND m.status = 'accepted' AND m.priority = a.priority AND m.id > a.after "
    "AND m.next_attempt_at <= $4 AND " + _CLAIMABLE + " ORDER BY m.id LIMIT $5 "
    "FOR UPDATE SKIP LOCKED) AS p ORDER BY p.priority, p.id LIMIT $5) "
    "UPDATE messages m SET claim = $6 FROM c WHERE m.id = c.id "
    "RETURNING m.id, m.recipient, m.text, m.reference, m.attempts, "
    "ARRAY(SELECT s.part FROM segments s WHERE s.message_id = m.id), m.created_at, m.priority, "
    "c.claim IS NOT NULL")


async def _claim_pending(state: State, channel: str, priorities: list[int], ids: list[int],
                         limit: int, now: float) -> list[PendingMessage]:
    """fetch_pending for one of several gateways: the messages are claimed for this one, and
    those it holds already are not found again. By priority, then id, as fetch_pending."""
    rows = await state.db.fetch(_CLAIM_PENDING, channel, priorities, ids, now, limit,
                                state.instance)
    return sorted((PendingMessage(r[0], channel, r[1], r[2], r[3], r[4], frozenset(r[5]), r[6],
                                  r[7], r[8]) for r in rows),
                  key=lambda row: (row.priority, row.id))


async def release_claims(state: State, message_ids: list[int]) -> None:
    """This gateway will not submit these messages (now): any gateway may claim them."""
    if state.instance is not None:
        await state.db.execute("UPDATE messages SET claim = NULL WHERE id = ANY($1::bigint[]) "
                               "AND claim = $2", message_ids, state.instance)


async def release_claims_not_held(state: State, channel: str, held: list[int]) -> None:
    """Every message of ``channel`` this gateway claims and does not hold: any gateway may
    claim them again. Reads the channel's accepted messages (the index messages_pending): a
    step after a failed fetch, not one of the hot path."""
    if state.instance is not None:
        await state.db.execute("UPDATE messages SET claim = NULL WHERE channel = $1 "
                               "AND status = 'accepted' AND claim = $2 "
                               "AND NOT id = ANY($3::bigint[])", channel, state.instance, held)


async def defer(state: State, message_id: int, until: float) -> None:
    """Try this message again no earlier than ``until`` (whichever gateway claims it then)."""
    await state.db.execute("UPDATE messages SET next_attempt_at = $1, attempts = attempts + 1, "
                           "claim = NULL WHERE id = $2", until, message_id)


# ----------------------------------------------------------------------------- submits

def begin(keys) -> str:
    """The statement that opens a transaction and takes, until it ends, a lock on each Msg_Id
    its reports and SUBMIT outcomes name (advisory, in PostgreSQL's one-bigint key space).

    A report and its SUBMIT_RESP recorded at once by two gateways then take turns, and the
    second sees the first's commit (its next statement's snapshot is taken after the lock),
    so they never miss each other under READ COMMITTED. Taken all at once, sorted, before the
    transaction touches any row: two transactions never wait for each other. The keys are
    integers written into the text, so BEGIN and the locks cost one round trip together."""
    if not keys:
        return "BEGIN"
    array = ",".join(str(int(k)) for k in sorted(set(keys)))
    return f"BEGIN; SELECT pg_advisory_xact_lock(k) FROM unnest('{{{array}}}'::bigint[]) AS k"


def lock_keys(fn, args) -> list[int]:
    """The Msg_Ids an operation's transaction must lock (see ``begin``)."""
    if fn is record_submits:
        return [to_signed(r.msg_id) for r in args[0] if r.msg_id is not None]
    if fn.__name__ == "record_receipts":
        return [to_signed(r.msg_id) for r in args[0]]
    return []


# Segments rows for SUBMIT outcomes: INSERT INTO segments (these columns) SELECT ... (the
# values, in this order) and _UPSERT: a row there already takes the later outcome.
_SEGMENT_COLUMNS = ("message_id, part, parts, channel, msg_id, result, connection, sends, "
                    "submitted_at, status, stat, temporary, done_at")
_UPSERT = (
    " ON CONFLICT (message_id, part) DO UPDATE SET parts = EXCLUDED.parts, "
    "channel = EXCLUDED.channel, msg_id = EXCLUDED.msg_id, result = EXCLUDED.result, "
    "connection = EXCLUDED.connection, sends = EXCLUDED.sends, "
    "submitted_at = EXCLUDED.submitted_at, status = EXCLUDED.status, stat = EXCLUDED.stat, "
    "temporary = EXCLUDED.temporary, done_at = EXCLUDED.done_at")
_OUTCOMES = (
    "unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::bigint[], $6::int[], "
    "$7::text[], $8::int[], $9::float8[], $10::text[], $11::text[], $12::int[], $13::float8[]) "
    "AS u(" + _SEGMENT_COLUMNS + ")")

# The first report waiting for a segment's Msg_Id that names a status, for a segment still
# submitted (the columns of ``e``): the segments row is written settled by it, as
# ``settle._match_held`` reads it. Through the receipts_unmatched index (OFFSET 0: see below).
_FIRST_WAITING = (
    "LEFT JOIN LATERAL (SELECT w.status, w.stat, w.temporary, w.received_at FROM (SELECT id, "
    "status, stat, temporary, received_at FROM receipts WHERE channel = v.channel AND "
    "msg_id = v.msg_id AND message_id IS NULL OFFSET 0) AS w WHERE v.status = 'submitted' "
    "AND w.status IS NOT NULL ORDER BY w.id LIMIT 1) AS e ON true")

# A message still accepted, written so that the planner cannot read it through the partial
# index messages_pending (WHERE status = 'accepted'), only by the primary key: statistics taken
# while nothing was pending (autovacuum on an idle gateway) make that index look empty, and
# once a backlog filled it the UPDATE below scanned all of it for each outcome (0.8 s a
# statement with 300,000 pending, against 0.2 ms; tests/store/test_postgres.py). The column is
# NOT NULL, so IS TRUE changes nothing else.
_STILL_ACCEPTED = "(messages.status = 'accepted') IS TRUE"

# record_submits' statement. The SUBMIT outcomes ($1-$13, the latest of each message and
# part) ``on_row`` (one part, accepted by the ISMG, no report waiting for the Msg_Id) go on
# their messages rows, in the UPDATE that makes a message submitted, if it is still accepted
# and of the outcome's channel (reports find it by that channel); every other one is a
# segments row, settled by the first report waiting for it that names a status, if any
# (``_FIRST_WAITING``). The reports waiting for the Msg_Ids ($14, $15: channels and Msg_Ids) are
# looked up one (channel, Msg_Id) at a time through the receipts_unmatched index, whatever
# the planner's statistics say (OFFSET 0 keeps the lookup a subquery of its own: joined
# instead, a table whose statistics lag was read through every unmatched report at each
# commit, the cost issue 12 took away from SQLite); ``on_row`` probes the same index. Rows:
# kind 0, a waiting report (id, channel, Msg_Id, status, temporary, Stat, received_at), in
# arrival order; last, kind 1, the count of messages made submitted on their rows.
_RECORD_SUBMITS = (
    "WITH v AS (SELECT u.*, u.parts = 1 AND u.status = 'submitted' AND u.msg_id IS NOT NULL "
    "AND NOT EXISTS (SELECT FROM receipts WHERE channel = u.channel AND msg_id = u.msg_id "
    "AND message_id IS NULL) AS on_row FROM " + _OUTCOMES + "), "
    "s AS (INSERT INTO segments (" + _SEGMENT_COLUMNS + ") SELECT v.message_id, v.part, "
    "v.parts, v.channel, v.msg_id, v.result, v.connection, v.sends, v.submitted_at, "
    "COALESCE(e.status, v.status), COALESCE(e.stat, v.stat), "
    "COALESCE(e.temporary, v.temporary), COALESCE(e.received_at, v.done_at) FROM v "
    + _FIRST_WAITING + " WHERE NOT v.on_row" + _UPSERT + "), "
    "m AS (UPDATE messages SET status = 'submitted', parts = 1, submitted_at = v.submitted_at, "
    "status_at = v.submitted_at, msg_id = v.msg_id, result = v.result, "
    "connection = v.connection, sends = v.sends FROM v WHERE v.on_row "
    "AND messages.id = v.message_id AND " + _STILL_ACCEPTED + " "
    "AND messages.channel = v.channel RETURNING 1) "
    "SELECT 0, r.id, k.channel, k.msg_id, r.status, r.temporary, r.stat, r.received_at "
    "FROM unnest($14::text[], $15::bigint[]) AS k(channel, msg_id) CROSS JOIN LATERAL "
    "(SELECT id, status, temporary, stat, received_at FROM receipts WHERE channel = "
    "k.channel AND msg_id = k.msg_id AND message_id IS NULL OFFSET 0) AS r "
    "UNION ALL SELECT 1, COUNT(*), NULL, NULL, NULL, NULL, NULL, NULL FROM m ORDER BY 1, 2")


def _on_row(r: SegmentResult) -> bool:
    """Whether an outcome may go on its message's row (if no report waits for its Msg_Id):
    _RECORD_SUBMITS's test, in Python."""
    return r.parts == 1 and r.status is DeliveryStatus.SUBMITTED and r.msg_id is not None


def _segment_columns(results) -> list[list]:
    """SUBMIT outcomes as the column arrays of ``_OUTCOMES``."""
    return columns([(r.message_id, r.part, r.parts, r.channel,
                     None if r.msg_id is None else to_signed(r.msg_id), r.result, r.connection,
                     r.sends, r.at, r.status.value, r.stat or None, int(r.temporary),
                     None if r.status is DeliveryStatus.SUBMITTED else r.at)
                    for r in results], 13)


async def record_submits(state: State, results: list[SegmentResult],
                         provider: str) -> list[DeliveryStatus | None]:
    """Record SUBMIT outcomes; match the reports that came before them (found by the statement
    that writes the outcomes, under the transaction's Msg_Id locks: ``begin``); move messages
    on once every part is answered. Of outcomes for the same part of a message, the last
    counts. The usual one (one part, accepted by the ISMG, no report waiting) is kept on its
    messages row, with no segments row; every other one is a segments row, and its message
    is settled from its segments. Returns, for each result, the final status it gave its
    message (or None). A database error propagates (asyncpg's), and the transaction it ends
    changes nothing."""
    latest = {(r.message_id, r.part): r for r in results}
    named = [r for r in results if r.msg_id is not None]
    rows = await state.db.fetch(_RECORD_SUBMITS, *_segment_columns(latest.values()),
                                [r.channel for r in named], [to_signed(r.msg_id) for r in named])
    held = [tuple(row)[1:] for row in rows[:-1]]
    waiting = {(row[1], row[2]) for row in held}
    on_row = [r for r in latest.values()
              if _on_row(r) and (r.channel, to_signed(r.msg_id)) not in waiting]
    state.moved(DeliveryStatus.ACCEPTED.value, SUBMITTED, rows[-1][1])
    not_taken = await _not_taken(state, on_row) if rows[-1][1] < len(on_row) else set()
    reported = await _match_held(state, named, held, latest.values())
    early, others = [], {}
    for i, r in enumerate(results):
        if _on_row(r):
            key = (r.channel, to_signed(r.msg_id))
            if key not in reported:
                if r.message_id not in not_taken:
                    continue                    # on its row, made submitted by the statement
            elif reported[key] is not None and latest[(r.message_id, 1)] is r:
                early.append((r, reported[key]))
                continue
        others[r.message_id] = i               # settled once, credited to its last result
    return await _settled(state, results, latest, early, others, provider)


async def _not_taken(state: State, on_row: list[SegmentResult]) -> set[int]:
    """Of the outcomes meant for their messages rows, those whose message did not take them
    (submitted on another channel than the message's, or a message no longer accepted) are
    written as segments rows, as every outcome was before layout 7, and an outcome their
    message's row had is cleared: a message's single part is kept in one place, and the later
    answer wins, as a replaced segments row did. Returns their messages' ids. Runs only when
    the count of rows changed says some were not taken."""
    kept = {tuple(row) for row in await state.db.fetch(
        "SELECT id, msg_id, channel FROM messages WHERE id = ANY($1::bigint[])",
        [r.message_id for r in on_row])}
    rest = [r for r in on_row if (r.message_id, to_signed(r.msg_id), r.channel) not in kept]
    if rest:
        await state.db.execute(
            "WITH c AS (UPDATE messages SET msg_id = NULL, result = NULL, connection = NULL, "
            "sends = NULL WHERE id = ANY($14::bigint[]) AND msg_id IS NOT NULL) "
            f"INSERT INTO segments ({_SEGMENT_COLUMNS}) SELECT * FROM {_OUTCOMES}{_UPSERT}",
            *_segment_columns(rest), sorted(r.message_id for r in rest))
    return {r.message_id for r in rest}


async def _settled(state: State, results: list[SegmentResult], latest: dict, early: list,
                   others: dict[int, int], provider: str) -> list[DeliveryStatus | None]:
    """record_submits' messages settled by their segments (``others``: message id -> the
    index of its result credited) and by the reports that came early (``early``), and the
    final status each result gave its message (or None)."""
    final: list[DeliveryStatus | None] = [None] * len(results)
    by_message = await _settle_reported(state, early, provider)
    for i, r in enumerate(results):
        if r.message_id in by_message and latest[(r.message_id, r.part)] is r:
            final[i] = by_message[r.message_id]
    for message_id, i in others.items():
        status = await _settle(state, message_id, results[i].parts, results[i].at, provider)
        if status is not None and status.final:
            final[i] = status
    return final


# ----------------------------------------------------------------------------- reading

async def message_view(state: State, message_id: int) -> MessageView | None:
    """The message and its segments, None when there is no such message. A message of one
    part kept on its row (a Msg_Id there, no segments rows) has the one SegmentView its row
    gives (``records.segment_on_row``)."""
    row = await state.db.fetchrow(
        "SELECT id, app, channel, recipient, text, template_id, kind, created_at, status, "
        "status_stat, status_temporary, status_provider, status_at, parts, callback, msg_id, "
        "result, connection, submitted_at FROM messages WHERE id = $1", message_id)
    if row is None:
        return None
    segments = tuple(
        SegmentView(part, None if msg_id is None else to_unsigned(msg_id), result, status, stat,
                    None if temporary is None else bool(temporary), connection, submitted_at,
                    done_at)
        for part, msg_id, result, status, stat, temporary, connection, submitted_at, done_at
        in await state.db.fetch(
            "SELECT part, msg_id, result, status, stat, temporary, connection, submitted_at, "
            "done_at FROM segments WHERE message_id = $1 ORDER BY part", message_id))
    row = tuple(row)
    temporary = None if row[10] is None else bool(row[10])
    if not segments and row[15] is not None:
        segments = (segment_on_row(row[15], row[16], row[8], row[9], temporary, row[17],
                                   row[18], row[12]),)
    return MessageView(*row[:10], temporary, *row[11:14], segments=segments, callback=row[14])


async def mo_view(state: State, mo_id: int) -> MoView | None:
    row = await state.db.fetchrow(
        "SELECT id, channel, src_terminal_id, dest_id, text, payload, msg_fmt, parts, complete, "
        "received_at FROM mo WHERE id = $1", mo_id)
    if row is None:
        return None
    row = tuple(row)
    return MoView(*row[:8], bool(row[8]), row[9])


# ----------------------------------------------------------------------------- callbacks

async def due_callbacks(state: State, now: float, limit: int) -> list[OutboxEntry]:
    if state.instance is not None:
        rows = await state.db.fetch(
            "WITH c AS (SELECT o.id FROM outbox o WHERE o.state = 'pending' AND "
            "o.next_attempt_at <= $1 AND (o.claim IS NULL OR o.claim = $3 OR NOT EXISTS "
            "(SELECT 1 FROM cluster_instances i WHERE i.id = o.claim)) "
            "ORDER BY o.next_attempt_at, o.id LIMIT $2 FOR UPDATE SKIP LOCKED) "
            "UPDATE outbox o SET claim = $3 FROM c WHERE o.id = c.id "
            "RETURNING o.id, o.app, o.kind, o.ref, o.attempts, o.created_at, o.next_attempt_at",
            now, limit, state.instance)
        rows.sort(key=lambda r: (r[6], r[0]))
        return [OutboxEntry(*r[:6]) for r in rows]
    rows = await state.db.fetch(
        "SELECT id, app, kind, ref, attempts, created_at FROM outbox "
        "WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id "
        "LIMIT $2", now, limit)
    return [OutboxEntry(*r) for r in rows]


async def callback_done(state: State, entry_id: int, delivered: bool, now: float,
                        next_attempt_at: float | None, error: str | None) -> None:
    if delivered or next_attempt_at is None:
        await state.db.execute(
            "UPDATE outbox SET state = $1, done_at = $2, attempts = attempts + 1, "
            "last_error = $3, claim = NULL WHERE id = $4",
            "done" if delivered else "failed", now, error, entry_id)
    else:
        await state.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, "
            "claim = NULL WHERE id = $3", next_attempt_at, error, entry_id)


async def hold_callback(state: State, entry_id: int, until: float, reason: str) -> None:
    """Keep a callback back until ``until`` without counting an attempt (nothing was sent)."""
    await state.db.execute("UPDATE outbox SET next_attempt_at = $1, last_error = $2, "
                           "claim = NULL WHERE id = $3", until, reason, entry_id)


async def pending_callbacks(state: State) -> int:
    return await state.db.fetchval("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")

