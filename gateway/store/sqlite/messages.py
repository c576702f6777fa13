"""SQL of the embedded store: messages, submits, reading and callbacks (what settles segments and
messages is in ``settle``, reports and MO in ``receipts``, the tables in ``schema``), as
``gateway.store.postgres.messages`` is for PostgreSQL, function for function.

Every function runs in the store's worker thread inside a transaction opened by
``SqliteStore._run``; ``State`` (in ``state``) carries the connection and the in-memory facts
that change with each transaction (receipts waiting for their SUBMIT_RESP, messages by status),
applied only when the transaction commits. ``SCHEMA_VERSION`` and ``execute_rows`` are still
importable from here, where they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
from .schema import SCHEMA_VERSION  # noqa: F401 - imported from here by tests, as before
from .settle import _find_early_reports, _match_early_reports, _settle
from .state import SUBMITTED, State, _new, execute_rows, json_rows, padded

# ----------------------------------------------------------------------------- messages

def accept(state: State, messages: list[NewMessage], now: float) -> list[Accepted]:
    results: list[Accepted | None] = [None] * len(messages)
    plain = []
    for i, m in enumerate(messages):
        if m.idempotency_key is None:
            plain.append(i)
            continue
        row = state.db.execute("SELECT id FROM messages WHERE app = ? AND idempotency_key = ?",
                               (m.app, m.idempotency_key)).fetchone()
        results[i] = Accepted(row[0], existing=True) if row else \
            Accepted(_insert_messages(state, [m], now)[0])
    for i, new_id in zip(plain, _insert_messages(state, [messages[i] for i in plain], now)):
        results[i] = _new(Accepted, (new_id, False))
    return results


def _insert_messages(state: State, messages: list[NewMessage], now: float) -> list[int]:
    if not messages:
        return []
    execute_rows(
        state.db, "INSERT INTO messages (app, channel, recipient, text, template_id, kind, "
        "idempotency_key, reference, created_at, callback, priority) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(m.app, m.channel, m.recipient, m.text, m.template_id, m.kind, m.idempotency_key,
          m.reference, now, m.callback, m.priority) for m in messages],
        shared=(0, 1, 4, 5, 6, 9))
    last = state.db.execute("SELECT last_insert_rowid()").fetchone()[0]
    state.moved(None, DeliveryStatus.ACCEPTED.value, len(messages))
    return list(range(last - len(messages) + 1, last + 1))


# The pending messages of one channel and priority from an id on, oldest first: a range of
# the index messages_pending, in its order (nothing to sort).
PENDING = ("SELECT id, recipient, text, reference, attempts, created_at, priority "
           "FROM messages WHERE channel = ? AND status = 'accepted' AND priority = ? "
           "AND id > ? AND next_attempt_at <= ? ORDER BY id LIMIT ?")


def fetch_pending(state: State, channel: str, after: Mapping[int, int], limit: int,
                  now: float) -> list[PendingMessage]:
    """The most urgent first: each priority of ``after`` in turn, from its id on, until
    ``limit``."""
    rows: list[list] = []
    for priority in sorted(after):
        if len(rows) >= limit:
            break
        rows += sorted(json_rows(
            state.db, "id, recipient, text, reference, attempts, created_at, priority",
            f"FROM ({PENDING})", (channel, priority, after[priority], now, limit - len(rows))))
    if not rows:
        return []
    done: dict[int, set[int]] = {}
    for message_id, part in _done_parts(state, [r[0] for r in rows]):
        done.setdefault(message_id, set()).add(part)
    none: frozenset[int] = frozenset()
    return [_new(PendingMessage, (r[0], channel, r[1], r[2], r[3], r[4],
                                  frozenset(done[r[0]]) if r[0] in done else none, r[5], r[6],
                                  False)) for r in rows]


def _done_parts(state: State, message_ids: list[int]) -> list[list]:
    """(message id, part) of the segments these messages have already (parts of a long
    message answered before a restart): 512 ids a statement."""
    found = []
    for start in range(0, len(message_ids), 512):
        chunk = padded(message_ids[start:start + 512])
        found += json_rows(state.db, "message_id, part",
                           f"FROM segments WHERE message_id IN ({','.join('?' * len(chunk))})",
                           chunk)
    return found


def defer(state: State, message_id: int, until: float) -> None:
    state.db.execute("UPDATE messages SET next_attempt_at = ?, attempts = attempts + 1 "
                     "WHERE id = ?", (until, message_id))


# ----------------------------------------------------------------------------- submits

def record_submits(state: State, results: list[SegmentResult],
                   provider: str) -> list[DeliveryStatus | None]:
    """Record SUBMIT outcomes; match the reports that came before them; move messages on once
    every part is answered. Returns, for each result, the final status it gave its message
    (or None). A message named twice for one part keeps its last result, as a segments row
    replaced by the later one would.

    The usual result (one part, accepted by the ISMG, no report waiting for it) goes on its
    messages row, in the UPDATE that makes the message submitted, and writes no segments row;
    every other result is a segments row, and settles its message from its segments. An
    sqlite3.Error propagates: the writer rolls the transaction back, nothing of it stays."""
    found = _find_early_reports(state, results)
    early = {results[found[0][(row[1], row[2])]].message_id for row in found[1]}
    on_row, in_segments = _split(results, early)
    in_segments += _submit_on_rows(state, results, on_row)
    _insert_segments(state, [results[i] for i in in_segments])
    if found[1]:
        _match_early_reports(state, results, found)
    final: list[DeliveryStatus | None] = [None] * len(results)
    last = {results[i].message_id: i for i in sorted(in_segments)}   # settled once, credited
    for message_id, i in last.items():                                # to its last result
        status = _settle(state, message_id, results[i].parts, results[i].at, provider)
        if status is not None and status.final:
            final[i] = status
    return final


def _split(results: list[SegmentResult], early: set[int]) -> tuple[list[int], list[int]]:
    """The indexes of the results to keep on their messages rows, and of the others (for
    segments rows); of results for the same part of a message, only the last. ``early``: the
    messages that reports wait for (matched through their segments rows)."""
    indexes: Iterable[int] = range(len(results))
    if len({r.message_id for r in results}) < len(results):     # long messages, or repeats
        indexes = {(r.message_id, r.part): i for i, r in enumerate(results)}.values()
    on_row: list[int] = []
    in_segments: list[int] = []
    submitted = DeliveryStatus.SUBMITTED
    for i in indexes:
        r = results[i]
        if r.parts == 1 and r.status is submitted and r.msg_id is not None \
                and r.message_id not in early:
            on_row.append(i)
        else:
            in_segments.append(i)
    return on_row, in_segments


def _submit_on_rows(state: State, results: list[SegmentResult], on_row: list[int]) -> list[int]:
    """Make these single-part messages submitted with their outcome on their row, in one
    multi-row UPDATE that takes a message still accepted and of the result's channel (as the
    dispatcher submits it). Returns the indexes it did not take, for segments rows, as every
    result was before layout 7 (a message submitted on another channel, or not accepted any
    more): none in the usual case, where the count of rows changed says so. Their messages'
    rows drop an outcome they had (``_not_taken``), so that a message's single part is in
    one place, and the later answer wins, as a replaced segments row did."""
    if not on_row:
        return []
    changed = execute_rows(
        state.db, "UPDATE messages SET status = 'submitted', parts = 1, "
        "submitted_at = v.column1, status_at = v.column1, msg_id = v.column3, "
        "result = v.column4, connection = v.column5, sends = v.column6 FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?, ?)",
        [(r.at, r.message_id, to_signed(r.msg_id), r.result, r.connection, r.sends, r.channel)
         for r in map(results.__getitem__, on_row)],
        ") AS v WHERE messages.id = v.column2 AND messages.status = 'accepted' "
        "AND messages.channel = v.column7", repeatable=True, shared=(4, 6))
    state.moved(DeliveryStatus.ACCEPTED.value, SUBMITTED, changed)
    return [] if changed == len(on_row) else _not_taken(state, results, on_row)


def _not_taken(state: State, results: list[SegmentResult], on_row: list[int]) -> list[int]:
    """Of ``on_row``, the results whose message does not carry them on its row (its Msg_Id
    and channel), with any other outcome on those messages' rows cleared: 512 messages a
    statement."""
    kept = set()
    for start in range(0, len(on_row), 512):
        ids = padded([results[i].message_id for i in on_row[start:start + 512]])
        kept.update((m, msg_id, channel) for m, msg_id, channel in json_rows(
            state.db, "id, msg_id, channel",
            f"FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids))
    left = [i for i in on_row if (results[i].message_id, to_signed(results[i].msg_id),
                                  results[i].channel) not in kept]
    state.db.executemany("UPDATE messages SET msg_id = NULL, result = NULL, connection = NULL, "
                         "sends = NULL WHERE id = ? AND msg_id IS NOT NULL",
                         [(results[i].message_id,) for i in left])
    return left


def _insert_segments(state: State, results: list[SegmentResult]) -> None:
    """Segments rows for these results (a row there already is replaced: the later result
    for a part wins)."""
    execute_rows(
        state.db, "INSERT OR REPLACE INTO segments (message_id, part, parts, channel, msg_id, "
        "result, connection, sends, submitted_at, status, stat, temporary, done_at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.message_id, r.part, r.parts, r.channel,
          None if r.msg_id is None else to_signed(r.msg_id), r.result, r.connection, r.sends,
          r.at, r.status._value_, r.stat or None, int(r.temporary),
          None if r.status is DeliveryStatus.SUBMITTED else r.at)
         for r in results], shared=(3, 6, 9, 10))


# ----------------------------------------------------------------------------- reading

def message_view(state: State, message_id: int) -> MessageView | None:
    """The message with its segments: its segments rows, or, for a message of one part with
    its SUBMIT outcome on its row (layout 7), the one segment that row describes."""
    row = state.db.execute(
        "SELECT id, app, channel, recipient, text, template_id, kind, created_at, status, "
        "status_stat, status_temporary, status_provider, status_at, parts, callback, "
        "msg_id, result, connection, submitted_at FROM messages WHERE id = ?",
        (message_id,)).fetchone()
    if row is None:
        return None
    segments = tuple(
        SegmentView(part, None if msg_id is None else to_unsigned(msg_id), result, status, stat,
                    None if temporary is None else bool(temporary), connection, submitted_at,
                    done_at)
        for part, msg_id, result, status, stat, temporary, connection, submitted_at, done_at
        in state.db.execute(
            "SELECT part, msg_id, result, status, stat, temporary, connection, submitted_at, "
            "done_at FROM segments WHERE message_id = ? ORDER BY part", (message_id,)))
    temporary = None if row[10] is None else bool(row[10])
    if not segments and row[15] is not None:
        segments = (segment_on_row(row[15], row[16], row[8], row[9], temporary, row[17],
                                   row[18], row[12]),)
    return MessageView(*row[:10], temporary, *row[11:14], segments=segments, callback=row[14])


def mo_view(state: State, mo_id: int) -> MoView | None:
    row = state.db.execute(
        "SELECT id, channel, src_terminal_id, dest_id, text, payload, msg_fmt, parts, complete, "
        "received_at FROM mo WHERE id = ?", (mo_id,)).fetchone()
    if row is None:
        return None
    return MoView(*row[:8], bool(row[8]), row[9])


# ----------------------------------------------------------------------------- callbacks

def due_callbacks(state: State, now: float, limit: int) -> list[OutboxEntry]:
    rows = state.db.execute(
        "SELECT id, app, kind, ref, attempts, created_at FROM outbox "
        "WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        (now, limit)).fetchall()
    return [OutboxEntry(*r) for r in rows]


def callback_done(state: State, entry_id: int, delivered: bool, now: float,
                  next_attempt_at: float | None, error: str | None) -> None:
    if delivered or next_attempt_at is None:
        state.db.execute("UPDATE outbox SET state = ?, done_at = ?, attempts = attempts + 1, "
                         "last_error = ? WHERE id = ?",
                         ("done" if delivered else "failed", now, error, entry_id))
    else:
        state.db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, "
                         "last_error = ? WHERE id = ?", (next_attempt_at, error, entry_id))


def hold_callback(state: State, entry_id: int, until: float, reason: str) -> None:
    """Keep a callback back until ``until`` without counting an attempt (nothing was sent)."""
    state.db.execute("UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                     (until, reason, entry_id))


def pending_callbacks(state: State) -> int:
    return state.db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
