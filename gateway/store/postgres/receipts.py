"""SQL of status reports and MO messages, as ``gateway.store.sqlite.receipts`` is for SQLite:
matching reports to segments as a set, the report timeout, and MO parts and messages. Runs in
the store's writer thread like ``messages``.
"""

from __future__ import annotations

from gateway.status import DeliveryStatus

from ..records import MoMessage, MoPart, Receipt, ReceiptOutcome, to_signed, to_unsigned
from .settle import (
    INSERT_CALLBACKS,
    _callback_row,
    _settle,
    _settle_segment,
    queue_callbacks,
    wants_status_callback,
)
from .state import FINAL, SUBMITTED, State, columns

# ----------------------------------------------------------------------------- receipts

async def record_receipts(state: State, receipts: list[Receipt]) -> list[ReceiptOutcome]:
    """Store reports and settle the segments they name, as a set: one query finds their
    segments (segments rows, or messages of one part kept on their row, whose report updates
    that row only) and those seen before, and the writes go out in one statement. A report
    seen before changes nothing; a segment's first final report wins. The transaction holds
    the reports' Msg_Id locks (``messages.begin``). A database error propagates (asyncpg's),
    and the transaction it ends changes nothing."""
    segments, seen = await _look_up(state, receipts)
    out: list[ReceiptOutcome | None] = [None] * len(receipts)
    rows, segment_updates, message_updates, callbacks = [], [], [], []
    for i, r in enumerate(receipts):
        c, msg_id = r.classification, to_signed(r.msg_id)
        key = (r.channel, to_signed(r.deliver_msg_id), msg_id, c.stat)
        if key in seen:
            out[i] = ReceiptOutcome(duplicate=True)
            continue
        seen.add(key)
        segment = segments.get((r.channel, msg_id))
        status = c.status.value if c.status is not None else None
        rows.append((r.channel, r.connection, key[1], msg_id, c.stat, status, int(c.temporary),
                     c.provider, r.submit_time, r.done_time, r.dest_terminal_id, r.smsc_sequence,
                     r.received_at, segment and segment.message_id, segment and segment.part))
        if segment is None:
            state.hold()
            out[i] = ReceiptOutcome()
            continue
        latency = r.received_at - segment.submitted_at
        out[i] = ReceiptOutcome(matched=True, message_id=segment.message_id, latency=latency,
                                priority=segment.priority, accepted_at=segment.created_at)
        if status is None or segment.status != SUBMITTED:
            continue
        segment.status = status                     # a later report in this set sees it final
        if segment.parts > 1:     # settled now, in arrival order: its first failure decides
            await _settle_segment(state, segment.message_id, segment.part, status, c.stat,
                                  int(c.temporary), r.received_at)
            settled = await _settle(state, segment.message_id, segment.parts, r.received_at,
                                    c.provider)
            out[i] = out[i]._replace(message_status=settled)
            continue
        if not segment.on_row:                     # a message's row is all it has
            segment_updates.append((status, c.stat, int(c.temporary), r.received_at,
                                    segment.message_id, segment.part))
        if segment.message_status not in FINAL:
            message_updates.append((status, c.stat, int(c.temporary), c.provider, r.received_at,
                                    segment.message_id))
            if wants_status_callback(state, segment.app, segment.callback):
                callbacks.append(_callback_row(segment.app, "status", segment.message_id,
                                               r.received_at))
            state.moved(segment.message_status, status)
            segment.message_status = status
            out[i] = out[i]._replace(message_status=DeliveryStatus(status))
    await _write_receipts(state, rows, segment_updates, message_updates, callbacks)
    return out


class _Named:
    """A segment named by a report, with what settling it needs from its message. ``on_row``:
    a message of one part whose SUBMIT outcome is on its row (no segments row; the segment's
    status is the message's)."""

    __slots__ = ("message_id", "part", "parts", "submitted_at", "status", "app",
                 "message_status", "callback", "created_at", "priority", "on_row")

    def __init__(self, message_id, part, parts, submitted_at, status, app, message_status,
                 callback, created_at, priority, on_row):
        self.message_id, self.part, self.parts = message_id, part, parts
        self.submitted_at, self.status = submitted_at, status
        self.app, self.message_status, self.callback = app, message_status, callback
        self.created_at, self.priority, self.on_row = created_at, priority, on_row


# The segments that Msg_Ids ($1) name: segments rows with their messages, and messages of one
# part kept on their row (through the index messages_msg_id: part 1 of 1, the message's
# status for the segment's); then the reports stored before among those of DELIVER Msg_Ids
# $2. Kind 0 a segment, 1 a report.
_LOOK_UP = (
    "SELECT 0, s.channel, s.msg_id, s.message_id, s.part, s.parts, s.submitted_at, "
    "s.status, m.app, m.status, m.callback, m.created_at, m.priority, false FROM segments s "
    "JOIN messages m ON m.id = s.message_id WHERE s.msg_id = ANY($1::bigint[]) "
    "UNION ALL SELECT 0, channel, msg_id, id, 1, 1, submitted_at, status, app, status, "
    "callback, created_at, priority, true FROM messages WHERE msg_id = ANY($1::bigint[]) "
    "UNION ALL SELECT 1, channel, msg_id, deliver_msg_id, NULL, NULL, NULL, stat, NULL, "
    "NULL, NULL, NULL, NULL, NULL FROM receipts WHERE deliver_msg_id = ANY($2::bigint[])")


async def _look_up(state: State, receipts: list[Receipt]) -> tuple[dict, set]:
    """The segments the reports name, by (channel, Msg_Id), wherever they are kept, and the
    reports already stored among them, as (channel, DELIVER Msg_Id, Msg_Id, Stat): all in one
    query (``_LOOK_UP``), with the Msg_Ids as two arrays."""
    found, seen = {}, set()
    rows = await state.db.fetch(_LOOK_UP, list({to_signed(r.msg_id) for r in receipts}),
                                list({to_signed(r.deliver_msg_id) for r in receipts}))
    for row in rows:
        if row[0] == 0:
            found[(row[1], row[2])] = _Named(*row[3:])
        else:
            seen.add((row[1], row[3], row[2], row[7]))
    return found, seen


# The reports, the segments and messages they settle, and the callbacks they queue: one
# statement (data-modifying WITH clauses), so one round trip whatever the number of reports.
_WRITE_RECEIPTS = (
    "WITH r AS (INSERT INTO receipts (channel, connection, deliver_msg_id, msg_id, stat, status, "
    "temporary, provider, submit_time, done_time, dest_terminal_id, smsc_sequence, received_at, "
    "message_id, part) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], "
    "$5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::text[], $11::text[], "
    "$12::bigint[], $13::float8[], $14::bigint[], $15::int[]) ON CONFLICT DO NOTHING), "
    "s AS (UPDATE segments SET status = v.status, stat = v.stat, temporary = v.temporary, "
    "done_at = v.done_at FROM unnest($16::text[], $17::text[], $18::int[], $19::float8[], "
    "$20::bigint[], $21::int[]) AS v(status, stat, temporary, done_at, message_id, part) "
    "WHERE segments.message_id = v.message_id AND segments.part = v.part), "
    "m AS (UPDATE messages SET status = v.status, status_stat = v.stat, "
    "status_temporary = v.temporary, status_provider = v.provider, status_at = v.at "
    "FROM unnest($22::text[], $23::text[], $24::int[], $25::text[], $26::float8[], "
    "$27::bigint[]) AS v(status, stat, temporary, provider, at, id) WHERE messages.id = v.id), "
    "c AS (" + INSERT_CALLBACKS.replace("$1:", "$28:").replace("$2:", "$29:")
    .replace("$3:", "$30:").replace("$4:", "$31:").replace("$5:", "$32:") + ") SELECT 1")


async def _write_receipts(state, rows, segment_updates, message_updates, callbacks) -> None:
    if not (rows or segment_updates or message_updates or callbacks):
        return
    # Rows updated in key order, so that two gateways' transactions lock them in one order.
    segment_updates.sort(key=lambda u: (u[4], u[5]))
    message_updates.sort(key=lambda u: u[5])
    await state.db.execute(_WRITE_RECEIPTS, *columns(rows, 15), *columns(segment_updates, 6),
                           *columns(message_updates, 6), *columns(callbacks, 5))


async def expire_reports(state: State, now: float, timeout: float) -> list[int]:
    """Messages submitted before now - timeout and still without a final report end unknown."""
    rows = await state.db.fetch(
        "UPDATE messages SET status = 'unknown', status_at = $1, status_stat = NULL, "
        "status_temporary = 0 WHERE status = 'submitted' AND submitted_at < $2 "
        "RETURNING id, app, callback", now, now - timeout)
    if rows:
        await state.db.execute("UPDATE segments SET status = 'unknown', done_at = $1 "
                               "WHERE message_id = ANY($2::bigint[]) AND status = 'submitted'",
                               now, [r[0] for r in rows])
        await queue_callbacks(state, [_callback_row(app, "status", message_id, now)
                                      for message_id, app, callback in rows
                                      if wants_status_callback(state, app, callback)])
    state.moved(SUBMITTED, DeliveryStatus.UNKNOWN.value, len(rows))
    return sorted(r[0] for r in rows)


# ----------------------------------------------------------------------------- MO

async def record_mo_parts(state: State, parts: list[MoPart]) -> list[MoPart | None]:
    """Each part stored once (the unique index decides, whichever gateway it reached); a
    duplicate, stored before or earlier in ``parts``, gives None."""
    if not parts:
        return []
    rows = await state.db.fetch(
        "INSERT INTO mo_parts (channel, connection, deliver_msg_id, src_terminal_id, dest_id, "
        "service_id, msg_fmt, tp_udhi, content, received_at) SELECT * FROM unnest($1::text[], "
        "$2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[], "
        "$9::bytea[], $10::float8[]) ON CONFLICT DO NOTHING "
        "RETURNING id, channel, deliver_msg_id, src_terminal_id, content",
        *columns([(p.channel, p.connection, to_signed(p.deliver_msg_id), p.src_terminal_id,
                   p.dest_id, p.service_id, p.msg_fmt, p.tp_udhi, p.content, p.received_at)
                  for p in parts], 10))
    stored = {(r[1], r[2], r[3], r[4]): r[0] for r in rows}
    out = []
    for p in parts:
        part_id = stored.pop((p.channel, to_signed(p.deliver_msg_id), p.src_terminal_id,
                              p.content), None)
        out.append(None if part_id is None else _with_id(p, part_id))
    return out


def _with_id(part: MoPart, part_id: int) -> MoPart:
    return part._replace(id=part_id)


async def record_mo_message(state: State, m: MoMessage, apps: tuple[str, ...]) -> int | None:
    """The message, unless a part of it is in one already: the parts' rows are locked first,
    so that two gateways that both assembled it take turns, and the second finds them taken
    (None)."""
    if m.part_ids and len(await state.db.fetch(
            "SELECT id FROM mo_parts WHERE id = ANY($1::bigint[]) AND mo_id IS NULL "
            "FOR UPDATE", list(m.part_ids))) < len(set(m.part_ids)):
        return None
    mo_id = await state.db.fetchval(
        "INSERT INTO mo (channel, src_terminal_id, dest_id, text, payload, msg_fmt, parts, "
        "complete, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        m.channel, m.src_terminal_id, m.dest_id, m.text, m.payload, m.msg_fmt,
        len(m.part_ids), int(m.complete), m.received_at)
    if m.part_ids:
        await state.db.execute("UPDATE mo_parts SET mo_id = $1 WHERE id = ANY($2::bigint[])",
                               mo_id, list(m.part_ids))
    await queue_callbacks(state, [_callback_row(app, "mo", mo_id, m.received_at)
                                  for app in apps])
    return mo_id


_MO_PART = ("SELECT channel, connection, deliver_msg_id, src_terminal_id, dest_id, service_id, "
            "msg_fmt, tp_udhi, content, received_at, id FROM mo_parts WHERE mo_id IS NULL ")


async def unassembled_mo_parts(state: State) -> list[MoPart]:
    rows = await state.db.fetch(_MO_PART + "ORDER BY id")
    return [MoPart(r[0], r[1], to_unsigned(r[2]), *tuple(r)[3:]) for r in rows]


async def loose_mo_parts(state: State, channel: str, src_terminal_id: str) -> list[MoPart]:
    rows = await state.db.fetch(_MO_PART + "AND channel = $1 AND src_terminal_id = $2 "
                                "ORDER BY id", channel, src_terminal_id)
    return [MoPart(r[0], r[1], to_unsigned(r[2]), *tuple(r)[3:]) for r in rows]

