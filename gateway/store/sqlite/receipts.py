"""SQL of status reports and MO messages: matching reports to segments as a set, the report
timeout, and MO parts and messages (a segment and its message are settled by ``settle``). Runs
in the store's worker thread like ``messages``.
"""

from __future__ import annotations

import functools
import json
from collections import Counter

from gateway.status import DeliveryStatus

from ..records import MoMessage, MoPart, Receipt, ReceiptOutcome, to_signed, to_unsigned
from .settle import (
    _INSERT_CALLBACK_HEAD,
    _callback_row,
    _queue_callback,
    _settle,
    _settle_segment,
    wants_status_callback,
)
from .state import FINAL, SUBMITTED, State, _new, execute_rows, padded

# ----------------------------------------------------------------------------- receipts

def record_receipts(state: State, receipts: list[Receipt]) -> list[ReceiptOutcome]:
    """Store reports and settle the segments they name, as a set: one query finds their
    segments and those seen before, and the writes go out in multi-row statements. A report
    seen before changes nothing; a segment's first final report wins."""
    segments, seen = _look_up(state, receipts)
    out: list[ReceiptOutcome] = []
    rows, segment_updates, message_updates, callbacks = [], [], [], []
    moves: Counter = Counter()                   # (old status, new status) -> messages
    unmatched = 0
    for r in receipts:
        c, msg_id, deliver_msg_id = r.classification, to_signed(r.msg_id), \
            to_signed(r.deliver_msg_id)
        key = (r.channel, deliver_msg_id, msg_id, c.stat)
        if key in seen:
            out.append(_DUPLICATE)
            continue
        seen.add(key)
        segment = segments.get((r.channel, msg_id))
        status = c.status._value_ if c.status is not None else None   # (.value: much slower)
        temporary = int(c.temporary)
        message_id, part = (None, None) if segment is None else \
            (segment[_MESSAGE_ID], segment[_PART])
        rows.append((r.channel, r.connection, deliver_msg_id, msg_id, c.stat, status, temporary,
                     c.provider, r.submit_time, r.done_time, r.dest_terminal_id, r.smsc_sequence,
                     r.received_at, message_id, part))
        if segment is None:
            unmatched += 1
            out.append(_UNMATCHED)
            continue
        settled = None
        if status is not None and segment[_STATUS] == SUBMITTED:
            segment[_STATUS] = status               # a later report in this set sees it final
            if segment[_PARTS] > 1:  # settled now, in arrival order: its first failure decides
                _settle_segment(state, message_id, part, status, c.stat, temporary,
                                r.received_at)
                settled = _settle(state, message_id, segment[_PARTS], r.received_at,
                                  c.provider)
            else:
                if not segment[_ON_ROW]:        # kept on its messages row: no segments row
                    segment_updates.append((status, c.stat, temporary, r.received_at,
                                            message_id, part))
                if segment[_MESSAGE_STATUS] not in FINAL:
                    message_updates.append((status, c.stat, temporary, c.provider,
                                            r.received_at, message_id))
                    if wants_status_callback(state, segment[_APP], segment[_CALLBACK]):
                        callbacks.append(_callback_row(segment[_APP], "status", message_id,
                                                       r.received_at))
                    moves[segment[_MESSAGE_STATUS], status] += 1
                    segment[_MESSAGE_STATUS] = status
                    settled = c.status
        out.append(_new(ReceiptOutcome, (False, True, message_id, settled,
                                         r.received_at - segment[_SUBMITTED_AT],
                                         segment[_PRIORITY], segment[_CREATED_AT])))
    state.unmatched_changed(unmatched)
    for (old, new), count in moves.items():
        state.moved(old, new, count)
    _write_receipts(state, rows, segment_updates, message_updates, callbacks)
    return out


_DUPLICATE, _UNMATCHED = ReceiptOutcome(duplicate=True), ReceiptOutcome()

# A segment named by a report, with what settling it needs from its message: the row of
# _look_up's JSON as it is (a list, changed as reports in the set settle it; an object a row
# would cost a Python __init__ a report), its fields by these indexes (0: its Msg_Id).
# _ON_ROW: 1 for a message of one part with its SUBMIT outcome on its messages row (no
# segments row: its segment's status is the message's), 0 for a segments row.
(_MESSAGE_ID, _PART, _PARTS, _SUBMITTED_AT, _STATUS, _APP, _MESSAGE_STATUS, _CALLBACK,
 _CREATED_AT, _PRIORITY, _ON_ROW) = range(1, 12)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _look_up(state: State, receipts: list[Receipt]) -> tuple[dict, set]:
    """The segments the reports name, by (channel, Msg_Id), segments rows and single-part
    messages' rows alike, and the reports already stored among them, as (channel, DELIVER
    Msg_Id, Msg_Id, Stat): one statement a channel and 512 reports, with both answers as JSON
    (one SQLite step, see ``json_rows``)."""
    found, seen = {}, set()
    by_channel: dict[str, list[Receipt]] = {}
    for r in receipts:
        by_channel.setdefault(r.channel, []).append(r)
    for channel, named in by_channel.items():
        for chunk in _chunks(named, 512):
            msg_ids = padded(sorted({to_signed(r.msg_id) for r in chunk}))
            deliver_ids = padded(sorted({to_signed(r.deliver_msg_id) for r in chunk}))
            segments, stored = json.loads(state.db.execute(
                _look_up_statement(len(msg_ids), len(deliver_ids)),
                (*msg_ids, channel, *deliver_ids)).fetchone()[0])
            for row in segments:
                found[(channel, row[0])] = row
            seen.update((channel, *row) for row in stored)
    return found, seen


@functools.lru_cache(maxsize=64)
def _look_up_statement(msg_ids: int, deliver_ids: int) -> str:
    """_look_up's statement for ``msg_ids`` Msg_Ids (?1..?n), the channel (?n+1) and
    ``deliver_ids`` DELIVER Msg_Ids: the segments rows with their messages, and the messages
    of one part with their SUBMIT outcome on their row (as part 1 of 1, submitted when the
    message was, the segment's status the message's; index messages_msg_id), in one UNION
    ALL, with the stored reports, as one JSON value (one SQLite step). The Msg_Ids are
    numbered parameters, so that both halves share them."""
    ids, channel = ",".join(f"?{i}" for i in range(1, msg_ids + 1)), f"?{msg_ids + 1}"
    return (
        "SELECT json_array((SELECT json_group_array(json_array(a, b, c, d, e, f, g, h, i, j, "
        "k, l)) FROM ("
        "SELECT s.msg_id AS a, s.message_id AS b, s.part AS c, s.parts AS d, "
        "s.submitted_at AS e, s.status AS f, m.app AS g, m.status AS h, m.callback AS i, "
        "m.created_at AS j, m.priority AS k, 0 AS l "
        "FROM segments s JOIN messages m ON m.id = s.message_id "
        f"WHERE s.msg_id IN ({ids}) AND s.channel = {channel} "
        "UNION ALL "
        "SELECT m.msg_id, m.id, 1, 1, m.submitted_at, m.status, m.app, m.status, m.callback, "
        "m.created_at, m.priority, 1 FROM messages m "
        f"WHERE m.msg_id IN ({ids}) AND m.channel = {channel})), "
        "(SELECT json_group_array(json_array(deliver_msg_id, msg_id, stat)) "
        f"FROM receipts WHERE deliver_msg_id IN ({_marks(deliver_ids)}) AND channel = {channel}))")


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _write_receipts(state, rows, segment_updates, message_updates, callbacks) -> None:
    db = state.db
    execute_rows(
        db, "INSERT INTO receipts (channel, connection, deliver_msg_id, msg_id, stat, status, "
        "temporary, provider, submit_time, done_time, dest_terminal_id, smsc_sequence, "
        "received_at, message_id, part) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows, shared=(0, 1, 4, 5, 7, 8, 9))
    execute_rows(
        db, "UPDATE segments SET status = v.column1, stat = v.column2, temporary = v.column3, "
        "done_at = v.column4 FROM (VALUES ", "(?, ?, ?, ?, ?, ?)", segment_updates,
        ") AS v WHERE segments.message_id = v.column5 AND segments.part = v.column6",
        repeatable=True, shared=(0, 1))
    execute_rows(
        db, "UPDATE messages SET status = v.column1, status_stat = v.column2, "
        "status_temporary = v.column3, status_provider = v.column4, status_at = v.column5 "
        "FROM (VALUES ", "(?, ?, ?, ?, ?, ?)", message_updates,
        ") AS v WHERE messages.id = v.column6", repeatable=True, shared=(0, 1, 3))
    execute_rows(db, _INSERT_CALLBACK_HEAD, "(?, ?, ?, ?, ?)", callbacks, shared=(0, 1))


def expire_reports(state: State, now: float, timeout: float) -> list[int]:
    """Messages submitted before now - timeout and still without a final report end unknown,
    and so do those of their segments rows still submitted (a message of one part with its
    outcome on its row has none: its segment's status is the message's)."""
    rows = state.db.execute(
        "UPDATE messages SET status = 'unknown', status_at = ?, status_stat = NULL, "
        "status_temporary = 0 WHERE status = 'submitted' AND submitted_at < ? "
        "RETURNING id, app, callback", (now, now - timeout)).fetchall()
    for message_id, app, callback in rows:
        state.db.execute("UPDATE segments SET status = 'unknown', done_at = ? "
                         "WHERE message_id = ? AND status = 'submitted'", (now, message_id))
        _queue_callback(state, app, "status", message_id, now, callback)
    state.moved(SUBMITTED, DeliveryStatus.UNKNOWN.value, len(rows))
    return [r[0] for r in rows]


# ----------------------------------------------------------------------------- MO

def record_mo_parts(state: State, parts: list[MoPart]) -> list[MoPart | None]:
    out = []
    for p in parts:
        cursor = state.db.execute(
            "INSERT OR IGNORE INTO mo_parts (channel, connection, deliver_msg_id, "
            "src_terminal_id, dest_id, service_id, msg_fmt, tp_udhi, content, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.channel, p.connection, to_signed(p.deliver_msg_id), p.src_terminal_id, p.dest_id,
             p.service_id, p.msg_fmt, p.tp_udhi, p.content, p.received_at))
        out.append(_with_id(p, cursor.lastrowid) if cursor.rowcount == 1 else None)
    return out


def _with_id(part: MoPart, part_id: int) -> MoPart:
    return part._replace(id=part_id)


def record_mo_message(state: State, m: MoMessage, apps: tuple[str, ...]) -> int:
    cursor = state.db.execute(
        "INSERT INTO mo (channel, src_terminal_id, dest_id, text, payload, msg_fmt, parts, "
        "complete, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (m.channel, m.src_terminal_id, m.dest_id, m.text, m.payload, m.msg_fmt,
         len(m.part_ids), int(m.complete), m.received_at))
    mo_id = cursor.lastrowid
    state.db.executemany("UPDATE mo_parts SET mo_id = ? WHERE id = ?",
                         [(mo_id, part_id) for part_id in m.part_ids])
    for app in apps:
        _queue_callback(state, app, "mo", mo_id, m.received_at)
    return mo_id


def unassembled_mo_parts(state: State) -> list[MoPart]:
    rows = state.db.execute(
        "SELECT channel, connection, deliver_msg_id, src_terminal_id, dest_id, service_id, "
        "msg_fmt, tp_udhi, content, received_at, id FROM mo_parts WHERE mo_id IS NULL "
        "ORDER BY id").fetchall()
    return [MoPart(r[0], r[1], to_unsigned(r[2]), *r[3:]) for r in rows]
