"""SQL of the store's ceiling, as ``gateway.store.sqlite.retention`` is for SQLite, function for
function: unmatched reports expire, finished messages and MO are removed after the retention
time with everything that hangs off them, and idempotency keys are forgotten after their
window.

Each function is one small batch (``limit`` rows of the table it walks) in the store's writer,
inside a transaction like every other operation, and returns ``Pruned``: the rows it removed,
by table, and where the next batch starts (None when the pass is done). Messages and MO are
walked in id order, the order they were created in; a pass ends at the first one created at or
after ``before``. Only final messages (and MO) whose callbacks are no longer pending go.

Each batch deletes in one statement (data-modifying WITH clauses: the rows and those hanging
off them, found through indexes), so a batch costs two round trips whatever its size. Rows
another transaction holds are skipped (``FOR UPDATE SKIP LOCKED``), not waited for: with
several gateways sweeping one database, each takes its own rows, and a row skipped now is
taken by the next sweep.
"""

from __future__ import annotations

from collections import Counter

from ..records import Pruned
from .state import FINAL, State, changed

# receipts_unmatched_age's "received_at IS NOT NULL" (always true) lets the expiry use it
# (its "received_at < $1" implies it) and no other statement: looking up the reports that
# wait for a Msg_Id, the planner could read this index whole, and would, where statistics
# taken while no report waited say the read is free (measured: per Msg_Id, at each commit).
SCHEMA = """
CREATE INDEX IF NOT EXISTS receipts_unmatched_age ON receipts(received_at)
    WHERE message_id IS NULL AND received_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS receipts_message ON receipts(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_ref ON outbox(ref, kind);
CREATE INDEX IF NOT EXISTS mo_parts_mo ON mo_parts(mo_id) WHERE mo_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_responses_age ON api_responses(created_at);
CREATE INDEX IF NOT EXISTS messages_keyed ON messages(created_at)
    WHERE idempotency_key IS NOT NULL;
"""


def _prune(table: str, kind: str, status: str, **dependents: str) -> str:
    """The statement that removes the rows of ``table`` whose ids are in $1 and whose
    callbacks of ``kind`` are not pending, with the rows of ``dependents`` (table=column)
    and the outbox rows that name them. Its one row: the statuses of the rows removed
    (``status``: the column, or NULL), then the count removed from each dependent and the
    outbox."""
    steps = [f"gone AS (DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t "
             f"WHERE t.id = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM outbox o "
             f"WHERE o.ref = t.id AND o.kind = '{kind}' AND o.state = 'pending') "
             f"FOR UPDATE OF t SKIP LOCKED) RETURNING id, {status} AS status)"]
    counts = []
    for i, (name, column) in enumerate({**dependents, "outbox": "ref"}.items()):
        other = f" AND kind = '{kind}'" if name == "outbox" else ""
        steps.append(f"d{i} AS (DELETE FROM {name} WHERE {column} IN (SELECT id FROM gone)"
                     f"{other} RETURNING 1)")
        counts.append(f"(SELECT COUNT(*) FROM d{i})")
    return (f"WITH {', '.join(steps)} "
            f"SELECT ARRAY(SELECT status FROM gone), {', '.join(counts)}")


_PRUNE_MESSAGES = _prune("messages", "status", "status", segments="message_id",
                         receipts="message_id", codes="message_id")
_PRUNE_MO = _prune("mo", "mo", "NULL::text", mo_parts="mo_id")


async def expire_unmatched(state: State, before: float, after: int, limit: int) -> Pruned:
    """Remove up to ``limit`` reports that matched no segment and came before ``before``
    (the oldest first). ``after`` is unused: the index finds the oldest."""
    count = changed(await state.db.execute(
        "DELETE FROM receipts WHERE id IN (SELECT id FROM receipts WHERE message_id IS NULL "
        "AND received_at < $1 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        before, limit))
    state.release(count)
    return Pruned({"receipts": count}, 0 if count == limit else None)


async def prune_messages(state: State, before: float, after: int, limit: int) -> Pruned:
    """Of the ``limit`` messages after id ``after``, remove those final before ``before``
    whose status callback is not pending, with their segments, receipts, outbox rows and
    verification codes."""
    rows, next_after = await _walk(state, "messages", "created_at", before, after, limit,
                                   "status, status_at")
    ids = [r[0] for r in rows if r[1] in FINAL and (r[2] is None or r[2] < before)]
    statuses, *counts = await state.db.fetchrow(_PRUNE_MESSAGES, ids)
    for status, count in Counter(statuses).items():
        state.moved(status, None, count)
    return Pruned(dict(zip(("messages", "segments", "receipts", "codes", "outbox"),
                           (len(statuses), *counts))), next_after)


async def prune_mo(state: State, before: float, after: int, limit: int) -> Pruned:
    """Of the ``limit`` MO messages after id ``after``, remove those received before
    ``before`` whose callbacks are not pending, with their parts and outbox rows."""
    rows, next_after = await _walk(state, "mo", "received_at", before, after, limit)
    gone, parts, outbox = await state.db.fetchrow(_PRUNE_MO, [r[0] for r in rows])
    return Pruned({"mo": len(gone), "mo_parts": parts, "outbox": outbox}, next_after)


async def forget_idempotency_keys(state: State, before: float, after: int,
                                  limit: int) -> Pruned:
    """Remove up to ``limit`` stored API answers kept before ``before``, and clear as many
    messages' idempotency keys given before then, in one statement: a key is remembered for
    the idempotency window only. ``after`` is unused: indexes find the oldest."""
    answers, keys = await state.db.fetchrow(
        "WITH a AS (DELETE FROM api_responses WHERE (app, key) IN (SELECT app, key FROM "
        "api_responses WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP "
        "LOCKED) RETURNING 1), k AS (UPDATE messages SET idempotency_key = NULL WHERE id IN "
        "(SELECT id FROM messages WHERE idempotency_key IS NOT NULL AND created_at < $1 "
        "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT (SELECT COUNT(*) FROM a), (SELECT COUNT(*) FROM k)", before, limit)
    more = answers == limit or keys == limit
    return Pruned({"api_responses": answers, "messages.idempotency_key": keys},
                  0 if more else None)


async def _walk(state: State, table: str, created: str, before: float, after: int, limit: int,
                columns: str = "") -> tuple[list[list], int | None]:
    """The rows of ``table`` after id ``after`` (``limit`` at most, in id order) created
    before ``before``, as [id, *columns]; and where the next batch starts, None once a row
    created at or after ``before`` ends the pass (or the table does)."""
    extra = f", {columns}" if columns else ""
    rows = await state.db.fetch(f"SELECT id, {created}{extra} FROM {table} WHERE id > $1 "
                                "ORDER BY id LIMIT $2", after, limit)
    old = []
    for row in rows:
        if row[1] >= before:
            return old, None
        old.append([row[0], *tuple(row)[2:]])
    return old, rows[-1][0] if len(rows) == limit else None
