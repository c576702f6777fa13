"""SQL of the embedded store: the schema, messages, submits, reading and callbacks (reports
and MO are in ``receipts``).

Every function runs in the store's worker thread inside a transaction opened by
``SqliteStore._run``; ``State`` carries the connection and the in-memory facts that change with
each transaction (receipts waiting for their SUBMIT_RESP, messages by status), applied only when
the transaction commits.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from itertools import chain

from gateway.status import DeliveryStatus, derive_status

from ..interface import (
    Accepted,
    MessageView,
    MoView,
    NewMessage,
    OutboxEntry,
    PendingMessage,
    SegmentResult,
    SegmentView,
    StoreError,
    to_signed,
    to_unsigned,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    template_id TEXT,
    kind TEXT NOT NULL,
    idempotency_key TEXT,
    reference INTEGER NOT NULL,
    created_at REAL NOT NULL,
    parts INTEGER,
    status TEXT NOT NULL DEFAULT 'accepted',
    status_stat TEXT,
    status_temporary INTEGER,
    status_provider TEXT,
    status_at REAL,
    submitted_at REAL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    callback TEXT,
    priority INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages(app, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_pending ON messages(channel, priority, id)
    WHERE status = 'accepted';
CREATE INDEX IF NOT EXISTS messages_submitted ON messages(submitted_at) WHERE status = 'submitted';

CREATE TABLE IF NOT EXISTS segments (
    message_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    channel TEXT NOT NULL,
    msg_id INTEGER,
    result INTEGER NOT NULL,
    connection TEXT,
    sends INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    status TEXT NOT NULL,
    stat TEXT,
    temporary INTEGER,
    done_at REAL,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS segments_msg_id ON segments(msg_id) WHERE msg_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    connection TEXT,
    deliver_msg_id INTEGER NOT NULL,
    msg_id INTEGER NOT NULL,
    stat TEXT NOT NULL,
    status TEXT,
    temporary INTEGER NOT NULL,
    provider TEXT NOT NULL,
    submit_time TEXT,
    done_time TEXT,
    dest_terminal_id TEXT,
    smsc_sequence INTEGER,
    received_at REAL NOT NULL,
    message_id INTEGER,
    part INTEGER
);
CREATE INDEX IF NOT EXISTS receipts_deliver ON receipts(deliver_msg_id);
CREATE INDEX IF NOT EXISTS receipts_unmatched ON receipts(channel, msg_id) WHERE message_id IS NULL;

CREATE TABLE IF NOT EXISTS mo_parts (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    connection TEXT,
    deliver_msg_id INTEGER NOT NULL,
    src_terminal_id TEXT NOT NULL,
    dest_id TEXT NOT NULL,
    service_id TEXT,
    msg_fmt INTEGER NOT NULL,
    tp_udhi INTEGER NOT NULL,
    content BLOB NOT NULL,
    received_at REAL NOT NULL,
    mo_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS mo_parts_once
    ON mo_parts(channel, deliver_msg_id, src_terminal_id, content);
CREATE INDEX IF NOT EXISTS mo_parts_loose ON mo_parts(id) WHERE mo_id IS NULL;

CREATE TABLE IF NOT EXISTS mo (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    src_terminal_id TEXT NOT NULL,
    dest_id TEXT NOT NULL,
    text TEXT,
    payload BLOB NOT NULL,
    msg_fmt INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    received_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref INTEGER NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
"""

FINAL = tuple(s.value for s in DeliveryStatus if s.final)
SUBMITTED = DeliveryStatus.SUBMITTED.value

# A NamedTuple (Accepted, PendingMessage, ReceiptOutcome) from all its fields, without the
# Python frame of its __new__: the store's thread makes one a message, with the GIL.
_new = tuple.__new__


class State:
    """The connection, and in-memory facts kept in step with what is committed: counts only,
    so that memory and the cost of a commit stay the same however many rows there are."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.unmatched = 0                # receipts waiting for a segment (receipts_unmatched)
        self.counts: Counter = Counter()  # messages by status
        # Apps whose final statuses are queued for a callback; None: every app's.
        self.status_callbacks: frozenset[str] | None = None
        self._unmatched_delta = 0
        self._delta: Counter = Counter()

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self._unmatched_delta, self._delta = 0, Counter()

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.unmatched += self._unmatched_delta
        counts = Counter(self.counts)
        counts.update(self._delta)
        self.counts = +counts          # a new object, swapped in whole: readers never see half

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def unmatched_now(self) -> int:
        """Receipts waiting for a segment, this transaction's changes included."""
        return self.unmatched + self._unmatched_delta

    def unmatched_changed(self, count: int) -> None:
        """``count`` receipts more (fewer, when negative) wait for a segment."""
        self._unmatched_delta += count

    def moved(self, old: str | None, new: str | None, count: int = 1) -> None:
        """``count`` messages went from status ``old`` (None: new) to ``new`` (None: gone)."""
        if old is not None:
            self._delta[old] -= count
        if new is not None:
            self._delta[new] += count


# The layout of the store file, in PRAGMA user_version. A version that changes the layout
# raises it and migrates older files in open_database; a file of a newer version is refused,
# so a downgrade never writes to a layout it does not know (restore the backup taken before
# the upgrade instead). Versions: 1, the first; 2, messages.callback (the status callback URL
# a send request gave for its message); 3, the apps' users (the tables of users.py, which an
# older file gains as the store opens: they are new, nothing else changes); 4, the operator's
# console's tables (apps, console_users, console_sessions, console_keys, reviews, audit;
# gateway.store.sqlite.console), created when an older file is opened, which changes nothing
# it wrote; 5, api_responses.request (what a request with an Idempotency-Key was, so that the
# key cannot be used for another), signatures.type and .remark (JSMS's signature form), and
# the index messages_codes (the codes a number got, counted for codes_per_number_*): columns
# and an index that gateway.store.sqlite.api adds to an older file as it opens; 6,
# messages.priority (0 urgent: codes and messages marked urgent, 1 notification, 2 marketing;
# an older file's messages get theirs from their kind) and the index messages_pending, by
# channel, priority and id, instead of messages_accepted, by channel and id.
SCHEMA_VERSION = 6

ROWS_PER_STATEMENT = 512
MIN_SQLITE = (3, 35, 0)


def execute_rows(db: sqlite3.Connection, head: str, row: str, rows: list[tuple],
                 tail: str = "", repeatable: bool = False, shared: tuple[int, ...] = ()) -> int:
    """Run ``head`` + ``row, row, ...`` + ``tail`` over ``rows`` in one or two statements
    rather than one per row (``executemany``): SQLite steps once per statement, and the
    store's thread gives up and takes back the GIL once per step, which under load costs more
    than the SQL. Statements hold a multiple of 16 rows, then the rest, so that few statement
    texts stay prepared in the connection's cache; when repeating a row changes nothing
    (``repeatable``: an UPDATE ... FROM (VALUES ...) updates a row once however often it is
    named), the last row fills the statement up instead. ``shared``: the columns (indexes in
    a row) of texts (or None) that are often the same in every row (an app, a channel, a
    status; texts only, as 1 == 1.0 == True); one that is, in a statement, is bound once
    rather than once a row: binding a text copies it, which is much of the GIL time a row
    costs. Returns how many rows changed."""
    changed, start, count = 0, 0, len(rows)
    while start < count:
        size = min(count - start, ROWS_PER_STATEMENT)
        if size >= 16 and not repeatable:
            size -= size % 16
        chunk = rows[start:start + size]
        if repeatable and size % 16:
            chunk = chunk + [chunk[-1]] * (16 - size % 16)
        parameters = list(chunk[0])
        columns = list(zip(*chunk[1:])) if shared and len(chunk) > 1 else ()
        same = tuple(i for i in shared if columns and _same(columns[i], chunk[0][i]))
        if same:          # the later rows' other columns, row by row
            parameters += chain.from_iterable(
                zip(*[values for i, values in enumerate(columns) if i not in same]))
        else:
            parameters += chain.from_iterable(chunk[1:])
        changed += db.execute(_statement(head, row, len(chunk), tail, same),
                              parameters).rowcount
        start += size
    return changed


def _same(values: tuple, first) -> bool:
    """Whether every value is ``first`` (None is a value here too)."""
    return values.count(first) == len(values)


@functools.lru_cache(maxsize=1024)
def _statement(head: str, row: str, size: int, tail: str, same: tuple[int, ...]) -> str:
    """``head`` + ``size`` times ``row`` + ``tail``; after the first row, the columns ``same``
    name the first row's parameters (?N: its Nth), so that their values are bound once. The
    other parameters stay anonymous, numbered in the order they come (SQLite scans the
    numbered ones it has seen for each ?N: a few, not thousands, keep preparing cheap)."""
    if not same:
        return head + ", ".join([row] * size) + tail
    marks = row.split("?")
    later = marks[0] + "".join(("?" if column not in same else f"?{column + 1}") + mark
                               for column, mark in enumerate(marks[1:]))
    return head + ", ".join([row] + [later] * (size - 1)) + tail


def json_rows(db: sqlite3.Connection, columns: str, rest: str, parameters=()) -> list[list]:
    """``SELECT columns rest`` with every row in one JSON array: SQLite steps once for the lot
    instead of once per row (and the store's thread takes the GIL back once). Row order is
    the order SQLite aggregates in; callers that need an order sort. Reals come back with 15
    significant digits."""
    text = db.execute(f"SELECT json_group_array(json_array({columns})) {rest}",
                      parameters).fetchone()[0]
    return json.loads(text)


def padded(values: list) -> list:
    """``values`` with the last repeated up to the next power of two (for ``IN (?, ...)``): a
    few statement texts then stay prepared in the connection's cache."""
    target = 1 << max(0, (len(values) - 1).bit_length())
    return values + [values[-1]] * (target - len(values))


def open_database(path: str, synchronous: str) -> State:
    """Open (creating if needed) the store file. Raises StoreError when the file is not an
    SQLite database or was written by a newer cmpp-gateway, or when Python's SQLite is older
    than the store needs (3.35: RETURNING, UPDATE ... FROM, 32,766 parameters a statement)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"the store needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                         f"this Python has {sqlite3.sqlite_version}")
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         cached_statements=512)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as error:
        db.close()
        raise StoreError(f"{path}: not a cmpp-gateway store ({error})") from None
    if version > SCHEMA_VERSION:
        db.close()
        raise StoreError(f"{path}: written by a newer cmpp-gateway (store layout {version}; "
                         f"this version knows up to {SCHEMA_VERSION}); run that version, or "
                         "restore the backup taken before upgrading")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    _migrate(db)
    db.executescript(SCHEMA)
    if version < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    state = State(db)
    state.counts = Counter(dict(db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status")))
    state.unmatched = db.execute(
        "SELECT COUNT(*) FROM receipts WHERE message_id IS NULL").fetchone()[0]
    return state


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the messages of a file of an older layout up to this one, before SCHEMA makes
    what is missing (CREATE ... IF NOT EXISTS leaves an existing table as it was): layout 2
    adds messages.callback; layout 6 adds messages.priority, set from each message's kind, and
    drops messages_accepted (SCHEMA then makes messages_pending), in one transaction."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if not columns:                     # a new file: SCHEMA makes the table as it is now
        return
    if "callback" not in columns:
        db.execute("ALTER TABLE messages ADD COLUMN callback TEXT")
    if "priority" not in columns:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
        db.execute("UPDATE messages SET priority = CASE kind WHEN 'code' THEN 0 ELSE 2 END "
                   "WHERE kind IN ('code', 'marketing')")
        db.execute("DROP INDEX IF EXISTS messages_accepted")
        db.execute("COMMIT")


def layout(state: State) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Tables -> (columns, primary key), from SQLite's catalogue (rowid tables: their
    INTEGER PRIMARY KEY); store_probe left out (health.probe's scratch, never a record)."""
    tables = [r[0] for r in state.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name <> 'store_probe' ORDER BY name")]
    found = {}
    for table in tables:
        info = state.db.execute(f'PRAGMA table_info("{table}")').fetchall()
        key = sorted((r[5], r[1]) for r in info if r[5])
        found[table] = (tuple(r[1] for r in info), tuple(name for _, name in key))
    return found


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
    """Segments in; receipts that came early are matched; messages move on when every part is
    answered. Returns, for each result, the final status it gave its message (or None)."""
    db = state.db
    execute_rows(
        db, "INSERT OR REPLACE INTO segments (message_id, part, parts, channel, msg_id, result, "
        "connection, sends, submitted_at, status, stat, temporary, done_at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.message_id, r.part, r.parts, r.channel,
          None if r.msg_id is None else to_signed(r.msg_id), r.result, r.connection, r.sends,
          r.at, r.status._value_, r.stat or None, int(r.temporary),
          None if r.status is DeliveryStatus.SUBMITTED else r.at)
         for r in results], shared=(3, 6, 9, 10))
    early = _match_early_reports(state, results)
    simple, others = [], {}
    for i, r in enumerate(results):
        if r.parts == 1 and r.status is DeliveryStatus.SUBMITTED and i not in early:
            simple.append(r)
        else:
            others[r.message_id] = i           # settled once, credited to its last result
    if simple:          # the usual case: one part, accepted by the ISMG, no early report
        changed = execute_rows(
            db, "UPDATE messages SET status = 'submitted', parts = 1, submitted_at = v.column1, "
            "status_at = v.column1 FROM (VALUES ", "(?, ?)",
            [(r.at, r.message_id) for r in simple],
            ") AS v WHERE messages.id = v.column2 AND messages.status = 'accepted'",
            repeatable=True)
        state.moved(DeliveryStatus.ACCEPTED.value, SUBMITTED, changed)
    final: list[DeliveryStatus | None] = [None] * len(results)
    for message_id, i in others.items():
        status = _settle(state, message_id, results[i].parts, results[i].at, provider)
        if status is not None and status.final:
            final[i] = status
    return final


def _match_early_reports(state: State, results: list[SegmentResult]) -> set[int]:
    """Settle segments with the reports that came before their SUBMIT_RESP (they wait
    unmatched, found through the receipts_unmatched index; none waiting, nothing is looked
    up). Returns the indexes of the results that had any."""
    if not state.unmatched_now():
        return set()
    named: dict[tuple[str, int], int] = {}
    for i, r in enumerate(results):
        if r.msg_id is not None:
            named.setdefault((r.channel, to_signed(r.msg_id)), i)
    reports = sorted(_unmatched_reports(state, named))          # in arrival order
    for receipt_id, channel, msg_id, status, temporary, stat, received_at in reports:
        r = results[named[(channel, msg_id)]]
        state.db.execute("UPDATE receipts SET message_id = ?, part = ? WHERE id = ?",
                         (r.message_id, r.part, receipt_id))
        if status is not None:
            _settle_segment(state, r.message_id, r.part, status, stat, temporary, received_at)
    state.unmatched_changed(-len(reports))
    return {named[(row[1], row[2])] for row in reports}


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


# ----------------------------------------------------------------------------- reading

def message_view(state: State, message_id: int) -> MessageView | None:
    row = state.db.execute(
        "SELECT id, app, channel, recipient, text, template_id, kind, created_at, status, "
        "status_stat, status_temporary, status_provider, status_at, parts, callback "
        "FROM messages WHERE id = ?", (message_id,)).fetchone()
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
