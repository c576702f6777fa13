"""The embedded store's file: its tables (``SCHEMA``, as ``gateway.store.postgres.schema`` is for
PostgreSQL, table for table and column for column), their layout version (``SCHEMA_VERSION``,
in PRAGMA user_version), ``open_database`` (open or create the file, migrate an older layout,
read ``State``'s counts) and ``layout`` (the tables as SQLite's catalogue describes them, for
copy-store). Other modules add their own tables and indexes as the store opens (``users``,
``console``, ``api``, ``retention``). ``open_database`` raises StoreError for a file that is not
an SQLite store, a newer layout, or an SQLite older than the store needs.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from ..records import StoreError
from .state import State

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
    priority INTEGER NOT NULL DEFAULT 1,
    msg_id INTEGER,
    result INTEGER,
    connection TEXT,
    sends INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages(app, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_pending ON messages(channel, priority, id)
    WHERE status = 'accepted';
CREATE INDEX IF NOT EXISTS messages_submitted ON messages(submitted_at) WHERE status = 'submitted';
-- A message of one part that the ISMG accepted keeps its SUBMIT outcome on its row (msg_id,
-- result, connection, sends: a segments row's columns) instead of in a segments row (layout 7);
-- reports find it through this index, as they find segments through segments_msg_id.
CREATE INDEX IF NOT EXISTS messages_msg_id ON messages(msg_id) WHERE msg_id IS NOT NULL;

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
# channel, priority and id, instead of messages_accepted, by channel and id; 7, messages.msg_id,
# .result, .connection and .sends (the SUBMIT outcome of a message of one part that the ISMG
# accepted, kept on its row rather than in a segments row) and the index messages_msg_id:
# columns an older file gains as it opens (NULL in its rows: the segments rows it has stay
# where they are, and are read and matched as before).
SCHEMA_VERSION = 7
MIN_SQLITE = (3, 35, 0)


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
    what is missing (CREATE ... IF NOT EXISTS leaves an existing table as it was, and SCHEMA's
    indexes need the columns): layout 2 adds messages.callback; layout 6 adds
    messages.priority, set from each message's kind, and drops messages_accepted (SCHEMA then
    makes messages_pending), in one transaction; layout 7 adds the SUBMIT outcome's columns
    (SCHEMA then makes messages_msg_id). Raises sqlite3.Error as SQLite gives it (the disk, a
    lock held past busy_timeout): the step that failed is not committed, those before it are
    (each is whole in itself), and the next open goes on from there."""
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
    if "msg_id" not in columns:
        _add_columns(db, SUBMIT_OUTCOME)


# Layout 7's columns of messages, in SCHEMA's order: a single-part message's SUBMIT outcome.
SUBMIT_OUTCOME = ("msg_id INTEGER", "result INTEGER", "connection TEXT", "sends INTEGER")


def _add_columns(db: sqlite3.Connection, columns: tuple[str, ...]) -> None:
    """Add NULL-able ``columns`` (name and type) to messages, all or none: in one
    transaction (ALTER TABLE ADD COLUMN rewrites no row, so this is quick at any size)."""
    db.execute("BEGIN IMMEDIATE")
    for column in columns:
        db.execute(f"ALTER TABLE messages ADD COLUMN {column}")
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
