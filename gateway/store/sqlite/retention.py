"""SQL of the store's ceiling: unmatched reports expire, finished messages and MO are removed
after the retention time with everything that hangs off them, and idempotency keys are
forgotten after their window.

Each function is one small batch (``limit`` rows of the table it walks) in the store's worker
thread, inside a transaction like every other operation, so that a large backlog is worked
off between other operations instead of stalling them. Each returns ``Pruned``: the rows it
removed, by table, and where the next batch starts (None when the pass is done).

Messages and MO are walked in id order, which is the order they were created in; a pass ends
at the first one created at or after ``before``. Only final messages (and MO) whose callbacks
are no longer pending are removed: a message still ``accepted`` or ``submitted`` stays
whatever its age, and is looked at again by every pass (there are few: the report timeout
ends ``submitted`` ones).
"""

from __future__ import annotations

import json

from ..records import Pruned
from .state import FINAL, State, json_rows

SCHEMA = """
CREATE INDEX IF NOT EXISTS receipts_unmatched_age ON receipts(received_at)
    WHERE message_id IS NULL;
CREATE INDEX IF NOT EXISTS receipts_message ON receipts(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_ref ON outbox(ref, kind);
CREATE INDEX IF NOT EXISTS mo_parts_mo ON mo_parts(mo_id) WHERE mo_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_responses_age ON api_responses(created_at);
CREATE INDEX IF NOT EXISTS messages_keyed ON messages(created_at)
    WHERE idempotency_key IS NOT NULL;
"""

# A list of ids as one JSON parameter: one statement text whatever their number.
IDS = "(SELECT value FROM json_each(?))"


def create_schema(state: State) -> None:
    state.db.executescript(SCHEMA)


def expire_unmatched(state: State, before: float, after: int, limit: int) -> Pruned:
    """Remove up to ``limit`` reports that matched no segment and came before ``before``
    (the oldest first). ``after`` is unused: the index finds the oldest."""
    count = state.db.execute(
        "DELETE FROM receipts WHERE id IN (SELECT id FROM receipts WHERE message_id IS NULL "
        "AND received_at < ? ORDER BY received_at LIMIT ?)", (before, limit)).rowcount
    state.unmatched_changed(-count)
    return Pruned({"receipts": count}, 0 if count == limit else None)


def prune_messages(state: State, before: float, after: int, limit: int) -> Pruned:
    """Of the ``limit`` messages after id ``after``, remove those final before ``before``
    whose status callback is not pending, with their segments, receipts, outbox rows and
    verification codes."""
    rows, next_after = _walk(state, "messages", "created_at", before, after, limit,
                             "status, status_at")
    ids = [r[0] for r in rows if r[1] in FINAL and (r[2] is None or r[2] < before)]
    ids = _without_pending(state, "status", ids)
    gone = _delete(state, ids, messages="id", segments="message_id", receipts="message_id",
                   codes="message_id")
    gone["outbox"] = _delete_outbox(state, "status", ids)
    status = {r[0]: r[1] for r in rows}
    for message_id in ids:
        state.moved(status[message_id], None)
    return Pruned(gone, next_after)


def prune_mo(state: State, before: float, after: int, limit: int) -> Pruned:
    """Of the ``limit`` MO messages after id ``after``, remove those received before
    ``before`` whose callbacks are not pending, with their parts and outbox rows."""
    rows, next_after = _walk(state, "mo", "received_at", before, after, limit)
    ids = _without_pending(state, "mo", [r[0] for r in rows])
    gone = _delete(state, ids, mo="id", mo_parts="mo_id")
    gone["outbox"] = _delete_outbox(state, "mo", ids)
    return Pruned(gone, next_after)


def forget_idempotency_keys(state: State, before: float, after: int, limit: int) -> Pruned:
    """Remove up to ``limit`` stored API answers kept before ``before``, and clear as many
    messages' idempotency keys given before then: a key is remembered for the idempotency
    window only. ``after`` is unused: indexes find the oldest."""
    db = state.db
    answers = db.execute(
        "DELETE FROM api_responses WHERE (app, key) IN (SELECT app, key FROM api_responses "
        "WHERE created_at < ? ORDER BY created_at LIMIT ?)", (before, limit)).rowcount
    keys = db.execute(
        "UPDATE messages SET idempotency_key = NULL WHERE id IN (SELECT id FROM messages "
        "WHERE idempotency_key IS NOT NULL AND created_at < ? ORDER BY created_at LIMIT ?)",
        (before, limit)).rowcount
    more = answers == limit or keys == limit
    return Pruned({"api_responses": answers, "messages.idempotency_key": keys},
                  0 if more else None)


def _walk(state: State, table: str, created: str, before: float, after: int, limit: int,
          columns: str = "") -> tuple[list[list], int | None]:
    """The rows of ``table`` after id ``after`` (``limit`` at most, in id order) created
    before ``before``, as [id, *columns]; and where the next batch starts, None once a row
    created at or after ``before`` ends the pass (or the table does)."""
    extra = f", {columns}" if columns else ""
    rows = sorted(json_rows(state.db, f"id, {created}{extra}",
                            f"FROM (SELECT id, {created}{extra} FROM {table} WHERE id > ? "
                            "ORDER BY id LIMIT ?)", (after, limit)))
    old = []
    for row in rows:
        if row[1] >= before:
            return old, None
        old.append([row[0], *row[2:]])
    return old, rows[-1][0] if len(rows) == limit else None


def _without_pending(state: State, kind: str, ids: list[int]) -> list[int]:
    """``ids`` less those with a callback of ``kind`` still to send."""
    if not ids:
        return ids
    pending = {row[0] for row in state.db.execute(
        f"SELECT ref FROM outbox WHERE ref IN {IDS} AND kind = ? AND state = 'pending'",
        (json.dumps(ids), kind))}
    return [i for i in ids if i not in pending]


def _delete(state: State, ids: list[int], **tables: str) -> dict[str, int]:
    """Delete the rows whose column (``table=column``) is one of ``ids``; counts by table."""
    if not ids:
        return dict.fromkeys(tables, 0)
    values = json.dumps(ids)
    return {table: state.db.execute(f"DELETE FROM {table} WHERE {column} IN {IDS}",
                                    (values,)).rowcount
            for table, column in tables.items()}


def _delete_outbox(state: State, kind: str, ids: list[int]) -> int:
    if not ids:
        return 0
    return state.db.execute(f"DELETE FROM outbox WHERE ref IN {IDS} AND kind = ?",
                            (json.dumps(ids), kind)).rowcount
