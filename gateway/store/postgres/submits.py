"""SQL of SUBMIT outcomes on the shared store: segments in, the reports that came before
their SUBMIT_RESP matched, messages moved on, as a set (``messages`` says how the SQL is
written and run).
"""

from __future__ import annotations

from gateway.status import DeliveryStatus

from ..interface import SegmentResult, to_signed
from .messages import (
    FINAL,
    SUBMITTED,
    State,
    _callback_row,
    _settle,
    changed,
    columns,
    queue_callbacks,
    wants_status_callback,
)


async def record_submits(state: State, results: list[SegmentResult],
                         provider: str) -> list[DeliveryStatus | None]:
    """Segments in; receipts that came early are matched (found by the statement that inserts
    the segments, under the transaction's Msg_Id locks: ``begin``); messages move on when
    every part is answered. Returns, for each result, the final status it gave its message
    (or None).

    The early reports are looked up one (channel, Msg_Id) at a time through the
    receipts_unmatched index, whatever the planner's statistics say: OFFSET 0 keeps the
    lookup a subquery of its own. Joined instead, a table whose statistics lag (a young one,
    or one whose unmatched reports grew fast) was read through every unmatched report at
    each commit, the cost issue 12 took away from SQLite."""
    latest = {(r.message_id, r.part): r for r in results}      # a later outcome replaces
    named = [r for r in results if r.msg_id is not None]
    held = await state.db.fetch(
        "WITH s AS (INSERT INTO segments (message_id, part, parts, channel, msg_id, result, "
        "connection, sends, submitted_at, status, stat, temporary, done_at) SELECT * FROM unnest("
        "$1::bigint[], $2::int[], $3::int[], $4::text[], $5::bigint[], $6::int[], $7::text[], "
        "$8::int[], $9::float8[], $10::text[], $11::text[], $12::int[], $13::float8[]) "
        "ON CONFLICT (message_id, part) DO UPDATE SET parts = EXCLUDED.parts, "
        "channel = EXCLUDED.channel, msg_id = EXCLUDED.msg_id, result = EXCLUDED.result, "
        "connection = EXCLUDED.connection, sends = EXCLUDED.sends, "
        "submitted_at = EXCLUDED.submitted_at, status = EXCLUDED.status, stat = EXCLUDED.stat, "
        "temporary = EXCLUDED.temporary, done_at = EXCLUDED.done_at) "
        "SELECT r.id, k.channel, k.msg_id, r.status, r.temporary, r.stat, r.received_at "
        "FROM unnest($14::text[], $15::bigint[]) AS k(channel, msg_id) CROSS JOIN LATERAL "
        "(SELECT id, status, temporary, stat, received_at FROM receipts WHERE channel = "
        "k.channel AND msg_id = k.msg_id AND message_id IS NULL OFFSET 0) AS r ORDER BY r.id",
        *columns([(r.message_id, r.part, r.parts, r.channel,
                   None if r.msg_id is None else to_signed(r.msg_id), r.result, r.connection,
                   r.sends, r.at, r.status.value, r.stat or None, int(r.temporary),
                   None if r.status is DeliveryStatus.SUBMITTED else r.at)
                  for r in latest.values()], 13),
        [r.channel for r in named], [to_signed(r.msg_id) for r in named])
    reported = await _match_held(state, named, held)
    simple, early, others = [], [], {}
    for i, r in enumerate(results):
        if r.parts == 1 and r.status is DeliveryStatus.SUBMITTED:
            key = (r.channel, to_signed(r.msg_id))
            if key not in reported:
                simple.append(r)
                continue
            if reported[key] is not None and latest[(r.message_id, 1)] is r:
                early.append((r, reported[key]))
                continue
        others[r.message_id] = i               # settled once, credited to its last result
    if simple:          # the usual case: one part, accepted by the ISMG, no early report
        status = await state.db.execute(
            "UPDATE messages SET status = 'submitted', parts = 1, submitted_at = v.at, "
            "status_at = v.at FROM unnest($1::float8[], $2::bigint[]) AS v(at, id) "
            "WHERE messages.id = v.id AND messages.status = 'accepted'",
            [r.at for r in simple], [r.message_id for r in simple])
        state.moved(DeliveryStatus.ACCEPTED.value, SUBMITTED, changed(status))
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


async def _match_held(state: State, results: list[SegmentResult],
                      rows: list) -> dict[tuple[str, int], tuple | None]:
    """Settle segments with the receipts that arrived before their SUBMIT_RESP (``rows``:
    those the segments' insert found waiting, in arrival order), as a set: each segment takes
    the first of its reports that names a status, if it is still ``submitted``. Returns, for
    each (channel, Msg_Id) that had any, what its segment was settled with, (status, stat,
    temporary), or None."""
    if not rows:
        return {}
    segment = {(r.channel, to_signed(r.msg_id)): r for r in results}
    await state.db.execute(
        "UPDATE receipts SET message_id = v.message_id, part = v.part FROM unnest($1::bigint[], "
        "$2::bigint[], $3::int[]) AS v(id, message_id, part) WHERE receipts.id = v.id",
        [row[0] for row in rows], [segment[(row[1], row[2])].message_id for row in rows],
        [segment[(row[1], row[2])].part for row in rows])
    reported: dict[tuple[str, int], tuple | None] = {(row[1], row[2]): None for row in rows}
    first: dict[tuple[int, int], tuple] = {}          # (message id, part) -> its first status
    for _, channel, msg_id, status, temporary, stat, received_at in reversed(rows):
        if status is not None:
            r = segment[(channel, msg_id)]
            first[(r.message_id, r.part)] = (status, stat, temporary, received_at, r.message_id,
                                             r.part)
    if first:
        for channel, msg_id, *settled in await state.db.fetch(
                "UPDATE segments SET status = v.status, stat = v.stat, temporary = v.temporary, "
                "done_at = v.done_at FROM unnest($1::text[], $2::text[], $3::int[], "
                "$4::float8[], $5::bigint[], $6::int[]) AS v(status, stat, temporary, done_at, "
                "message_id, part) WHERE segments.message_id = v.message_id AND "
                "segments.part = v.part AND segments.status = 'submitted' RETURNING "
                "segments.channel, segments.msg_id, v.status, v.stat, v.temporary",
                *columns(list(first.values()), 6)):
            reported[(channel, msg_id)] = tuple(settled)
    state.release(len(rows))
    return reported


async def _settle_reported(state: State, early: list[tuple[SegmentResult, tuple]],
                           provider: str | None) -> dict[int, DeliveryStatus]:
    """What ``_settle`` does, as a set, for one-part messages whose segment a report that
    came before the SUBMIT_RESP just settled (with several gateways, half the reports reach
    the one that did not send them, most of them before the sender records the SUBMIT_RESP):
    the message takes the segment's status, unless it is final already. The messages' rows
    are locked first, by id. Returns the final statuses given, by message id."""
    if not early:
        return {}
    reports = {r.message_id: (r.at, *report) for r, report in early}
    rows = await state.db.fetch("SELECT id, status, app, callback FROM messages "
                                "WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
                                sorted(reports))
    updates, callbacks, final = [], [], {}
    for message_id, old, app, callback in rows:
        at, status, stat, temporary = reports[message_id]
        if old == status or old in FINAL:
            continue
        done = DeliveryStatus(status).final
        updates.append((status, stat if done else None, temporary if done else None,
                        provider if done else None, at, message_id))
        state.moved(old, status)
        if done:
            final[message_id] = DeliveryStatus(status)
            if wants_status_callback(state, app, callback):
                callbacks.append(_callback_row(app, "status", message_id, at))
    if updates:
        await state.db.execute(
            "UPDATE messages SET status = v.status, parts = 1, status_stat = v.stat, "
            "status_temporary = v.temporary, status_provider = v.provider, status_at = v.at, "
            "submitted_at = COALESCE(submitted_at, v.at) FROM unnest($1::text[], $2::text[], "
            "$3::int[], $4::text[], $5::float8[], $6::bigint[]) AS v(status, stat, temporary, "
            "provider, at, id) WHERE messages.id = v.id", *columns(updates, 6))
    await queue_callbacks(state, callbacks)
    return final
