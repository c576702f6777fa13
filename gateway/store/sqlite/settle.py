"""SQL of settling, for ``messages`` (SUBMIT outcomes) and ``receipts`` (status reports): the
reports that came before their segment's SUBMIT_RESP are matched, a segment takes its report, a
message the status its segments give it, and a final status queues the message's callback in
the outbox (``_queue_callback``; ``wants_status_callback`` says whether it is wanted), as
``gateway.store.postgres.settle`` does for PostgreSQL. Runs in the store's worker thread like
``messages``, inside the transaction of the operation that settles.
"""

from __future__ import annotations

from gateway.status import DeliveryStatus, derive_status

from ..records import SegmentResult, to_signed
from .state import FINAL, State, json_rows, padded


def _find_early_reports(state: State, results: list[SegmentResult]) -> tuple[dict, list]:
    """The reports that came before these results' SUBMIT_RESP (they wait unmatched, found
    through the receipts_unmatched index; none waiting, nothing is looked up), as (the first
    result's index by (channel, signed Msg_Id), the reports in arrival order: rows of
    id, channel, Msg_Id, status, temporary, Stat, received_at)."""
    if not state.unmatched_now():
        return {}, []
    named: dict[tuple[str, int], int] = {}
    for i, r in enumerate(results):
        if r.msg_id is not None:
            named.setdefault((r.channel, to_signed(r.msg_id)), i)
    return named, sorted(_unmatched_reports(state, named))


def _match_early_reports(state: State, results: list[SegmentResult],
                         found: tuple[dict, list]) -> None:
    """Settle segments with the reports that came before their SUBMIT_RESP (``found``, from
    ``_find_early_reports``): the reports take the message and part, and their segments rows
    (record_submits writes one for every message a report waits for) take a final status."""
    named, reports = found
    for receipt_id, channel, msg_id, status, temporary, stat, received_at in reports:
        r = results[named[(channel, msg_id)]]
        state.db.execute("UPDATE receipts SET message_id = ?, part = ? WHERE id = ?",
                         (r.message_id, r.part, receipt_id))
        if status is not None:
            _settle_segment(state, r.message_id, r.part, status, stat, temporary, received_at)
    state.unmatched_changed(-len(reports))


def _unmatched_reports(state: State, named: dict[tuple[str, int], int]) -> list[list]:
    """The waiting reports for these (channel, Msg_Id): one statement a channel and 512."""
    by_channel: dict[str, list[int]] = {}
    for channel, msg_id in named:
        by_channel.setdefault(channel, []).append(msg_id)
    rows = []
    for channel, msg_ids in by_channel.items():
        for start in range(0, len(msg_ids), 512):
            chunk = padded(msg_ids[start:start + 512])
            rows += json_rows(
                state.db, "id, channel, msg_id, status, temporary, stat, received_at",
                "FROM receipts WHERE message_id IS NULL AND channel = ? "
                f"AND msg_id IN ({','.join('?' * len(chunk))})", (channel, *chunk))
    return rows


def _settle_segment(state: State, message_id: int, part: int, status: str, stat: str,
                    temporary: int, at: float) -> bool:
    """A final report for a segment; the first final one wins. True when it changed it."""
    cursor = state.db.execute(
        "UPDATE segments SET status = ?, stat = ?, temporary = ?, done_at = ? "
        "WHERE message_id = ? AND part = ? AND status = 'submitted'",
        (status, stat, temporary, at, message_id, part))
    return cursor.rowcount == 1


def _settle(state: State, message_id: int, parts: int, now: float,
            provider: str | None) -> DeliveryStatus | None:
    """Derive the message's status from its segments; write it when it changed."""
    db = state.db
    rows = db.execute("SELECT status, stat, temporary FROM segments WHERE message_id = ? "
                      "ORDER BY part", (message_id,)).fetchall()
    if len(rows) < parts:
        return None
    status = derive_status([DeliveryStatus(r[0]) for r in rows])
    old, app, callback = db.execute("SELECT status, app, callback FROM messages WHERE id = ?",
                                    (message_id,)).fetchone()
    if old == status.value or old in FINAL:
        return None
    decisive = next((r for r in rows if r[0] == status.value), rows[-1])
    db.execute(
        "UPDATE messages SET status = ?, parts = ?, status_stat = ?, status_temporary = ?, "
        "status_provider = ?, status_at = ?, "
        "submitted_at = COALESCE(submitted_at, ?) WHERE id = ?",
        (status.value, parts, decisive[1] if status.final else None,
         decisive[2] if status.final else None, provider if status.final else None,
         now, now, message_id))
    state.moved(old, status.value)
    if status.final:
        _queue_callback(state, app, "status", message_id, now, callback)
    return status


_INSERT_CALLBACK_HEAD = "INSERT INTO outbox (app, kind, ref, created_at, next_attempt_at) VALUES "
_INSERT_CALLBACK = _INSERT_CALLBACK_HEAD + "(?, ?, ?, ?, ?)"


def _callback_row(app: str, kind: str, ref: int, now: float) -> tuple:
    """An outbox row: queued once per event, when the message turns final or the MO is
    stored (OutboxEntry.event_id names the event)."""
    return app, kind, ref, now, now


def wants_status_callback(state: State, app: str, callback: str | None = None) -> bool:
    """Whether a final status of ``app``'s message is queued for a status callback: the
    message has a callback URL of its own, or its app has one."""
    return bool(callback) or state.status_callbacks is None or app in state.status_callbacks


def _queue_callback(state: State, app: str, kind: str, ref: int, now: float,
                    callback: str | None = None) -> None:
    if kind != "status" or wants_status_callback(state, app, callback):
        state.db.execute(_INSERT_CALLBACK, _callback_row(app, kind, ref, now))
