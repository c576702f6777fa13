"""SQL of settling, for ``messages`` (SUBMIT outcomes) and ``receipts`` (status reports): a
segment takes its report, a message the status its segments give it, and a final status
queues the message's callback in the outbox, as ``gateway.store.sqlite.settle`` does for
SQLite. Runs in the store's writer thread like ``messages``; a message's row is locked before
its status is derived, so that two gateways settling parts of it take turns.
"""

from __future__ import annotations

from gateway.status import DeliveryStatus, derive_status

from ..records import SegmentResult, to_signed
from .state import FINAL, State, changed, columns


async def _match_held(state: State, results: list[SegmentResult], rows: list,
                      outcomes) -> dict[tuple[str, int], tuple | None]:
    """Match the receipts that arrived before their SUBMIT_RESP (``rows``: those the
    statement that wrote the outcomes found waiting, in arrival order) to their segments, as a
    set. That statement wrote each segments row still ``submitted`` settled by the first of
    its reports that names a status (messages._FIRST_WAITING): an UPDATE joining the reports
    to segments could be planned, from statistics of a segments table that holds few
    submitted rows, as a scan of those rows for each report. ``outcomes``: the outcomes the
    rows were written from (the latest of each message and part). Returns, for each (channel,
    Msg_Id) that had any, what its segment was settled with, (status, stat, temporary), or
    None. A database error propagates (asyncpg's)."""
    if not rows:
        return {}
    segment = {(r.channel, to_signed(r.msg_id)): r for r in results}
    await state.db.execute(
        "UPDATE receipts SET message_id = v.message_id, part = v.part FROM unnest($1::bigint[], "
        "$2::bigint[], $3::int[]) AS v(id, message_id, part) WHERE receipts.id = v.id",
        [row[0] for row in rows], [segment[(row[1], row[2])].message_id for row in rows],
        [segment[(row[1], row[2])].part for row in rows])
    written = {(r.channel, to_signed(r.msg_id)): r for r in outcomes if r.msg_id is not None}
    reported: dict[tuple[str, int], tuple | None] = {(row[1], row[2]): None for row in rows}
    for _, channel, msg_id, status, temporary, stat, _ in reversed(rows):    # the first wins
        r = written.get((channel, msg_id))
        if status is not None and r is not None and r.status is DeliveryStatus.SUBMITTED:
            reported[(channel, msg_id)] = (status, stat, temporary)
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


async def _settle_segment(state: State, message_id: int, part: int, status: str, stat: str,
                          temporary: int, at: float) -> bool:
    """A final report for a segment; the first final one wins. True when it changed it."""
    result = await state.db.execute(
        "UPDATE segments SET status = $1, stat = $2, temporary = $3, done_at = $4 "
        "WHERE message_id = $5 AND part = $6 AND status = 'submitted'",
        status, stat, temporary, at, message_id, part)
    return changed(result) == 1


async def _settle(state: State, message_id: int, parts: int, now: float,
                  provider: str | None) -> DeliveryStatus | None:
    """Derive the message's status from its segments; write it when it changed. The message's
    row is locked first, so that two gateways settling parts of it take turns."""
    row = await state.db.fetchrow("SELECT status, app, callback FROM messages WHERE id = $1 "
                                  "FOR UPDATE", message_id)
    rows = await state.db.fetch("SELECT status, stat, temporary FROM segments "
                                "WHERE message_id = $1 ORDER BY part", message_id)
    if len(rows) < parts:
        return None
    status = derive_status([DeliveryStatus(r[0]) for r in rows])
    old, app, callback = row
    if old == status.value or old in FINAL:
        return None
    decisive = next((r for r in rows if r[0] == status.value), rows[-1])
    await state.db.execute(
        "UPDATE messages SET status = $1, parts = $2, status_stat = $3, status_temporary = $4, "
        "status_provider = $5, status_at = $6, submitted_at = COALESCE(submitted_at, $6) "
        "WHERE id = $7",
        status.value, parts, decisive[1] if status.final else None,
        decisive[2] if status.final else None, provider if status.final else None,
        now, message_id)
    state.moved(old, status.value)
    if status.final and wants_status_callback(state, app, callback):
        await queue_callbacks(state, [_callback_row(app, "status", message_id, now)])
    return status


# ----------------------------------------------------------------------------- the outbox
# A final status's callback is queued here, and an MO's (``receipts``), once per event.

INSERT_CALLBACKS = ("INSERT INTO outbox (app, kind, ref, created_at, next_attempt_at) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], "
                    "$4::float8[], $5::float8[])")


def _callback_row(app: str, kind: str, ref: int, now: float) -> tuple:
    """An outbox row: queued once per event, when the message turns final or the MO is
    stored (OutboxEntry.event_id names the event)."""
    return app, kind, ref, now, now


def wants_status_callback(state: State, app: str, callback: str | None = None) -> bool:
    """Whether a final status of ``app``'s message is queued for a status callback: the
    message has a callback URL of its own, or its app has one."""
    return bool(callback) or state.status_callbacks is None or app in state.status_callbacks


async def queue_callbacks(state: State, rows: list[tuple]) -> None:
    """Outbox rows (``_callback_row``) in one statement (status callbacks only for messages
    that ``wants_status_callback``: the callers choose)."""
    if rows:
        await state.db.execute(INSERT_CALLBACKS, *columns(rows, 5))
