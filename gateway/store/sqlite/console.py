"""SQL of the operator's console: apps made there, operator accounts and sessions, the
console's keys, review decisions and the audit trail.

Like ``messages``, every function runs in the store's writer thread inside a transaction;
each change is written together with its audit entry. The searches that may read much of
the store are in ``search``, on a connection of their own.
"""

from __future__ import annotations

import json

from ..console import (
    AuditEntry,
    AuditNote,
    ConsoleSession,
    ConsoleUser,
    Review,
    StoredApp,
)
from ..records import APPROVED, PENDING, REFUSED
from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    app_key TEXT NOT NULL UNIQUE,
    master_secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until REAL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS console_sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions(user);
CREATE TABLE IF NOT EXISTS console_keys (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    item INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    operator TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_item ON reviews(kind, item);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

MAX_SESSIONS_PER_USER = 20
REVIEWED = {"template": "templates", "sign": "signatures"}


def create_schema(state: State) -> None:
    state.db.executescript(SCHEMA)


def audit(state: State, note: AuditNote, now: float) -> None:
    state.db.execute("INSERT INTO audit (at, operator, action, target, detail) "
                     "VALUES (?, ?, ?, ?, ?)", (now, *note))


def audit_page(state: State, before_id: int | None, limit: int) -> list[AuditEntry]:
    rows = state.db.execute(
        "SELECT id, at, operator, action, target, detail FROM audit WHERE id < ? "
        "ORDER BY id DESC LIMIT ?", (before_id or (1 << 62), limit)).fetchall()
    return [AuditEntry(*row) for row in rows]


# ----------------------------------------------------------------------------- apps

_APP_COLUMNS = ("name, app_key, master_secret, settings, created_at, updated_at, "
                "previous_secret, previous_until")


def apps(state: State) -> list[StoredApp]:
    rows = state.db.execute(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY name").fetchall()
    return [_app(row) for row in rows]


def _app(row) -> StoredApp:
    name, key, secret, settings, created, updated, previous, until = row
    return StoredApp(name, key, secret, json.loads(settings), created, updated, previous, until)


def create_app(state: State, app: StoredApp, note: AuditNote) -> bool:
    """False when the name or the key is taken."""
    cursor = state.db.execute(
        f"INSERT OR IGNORE INTO apps ({_APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (app.name, app.app_key, app.master_secret, json.dumps(app.settings), app.created_at,
         app.updated_at, app.previous_secret, app.previous_until))
    if cursor.rowcount != 1:
        return False
    audit(state, note, app.created_at)
    return True


def update_app_settings(state: State, name: str, settings: dict, note: AuditNote,
                        now: float) -> bool:
    cursor = state.db.execute("UPDATE apps SET settings = ?, updated_at = ? WHERE name = ?",
                              (json.dumps(settings), now, name))
    if cursor.rowcount != 1:
        return False
    audit(state, note, now)
    return True


def rotate_app_secret(state: State, name: str, secret: str, previous_until: float,
                      note: AuditNote, now: float) -> bool:
    """The new secret in place; the one it replaces stays valid until ``previous_until`` (and
    one replaced before that is no longer valid)."""
    cursor = state.db.execute(
        "UPDATE apps SET previous_secret = master_secret, previous_until = ?, "
        "master_secret = ?, updated_at = ? WHERE name = ?", (previous_until, secret, now, name))
    if cursor.rowcount != 1:
        return False
    audit(state, note, now)
    return True


# ----------------------------------------------------------------------------- accounts

def console_user(state: State, name: str) -> ConsoleUser | None:
    row = state.db.execute("SELECT name, role, password, created_at FROM console_users "
                           "WHERE name = ?", (name,)).fetchone()
    return None if row is None else ConsoleUser(*row)


def console_users(state: State) -> list[ConsoleUser]:
    rows = state.db.execute("SELECT name, role, password, created_at FROM console_users "
                            "ORDER BY name").fetchall()
    return [ConsoleUser(*row) for row in rows]


def put_console_user(state: State, user: ConsoleUser, note: AuditNote, now: float) -> bool:
    """Add the account, or replace its role and password; True when it is new. Its sessions
    end: a changed password or role signs the operator out everywhere."""
    new = console_user(state, user.name) is None
    state.db.execute("INSERT OR REPLACE INTO console_users (name, role, password, created_at) "
                     "VALUES (?, ?, ?, ?)", (user.name, user.role, user.password,
                                             user.created_at or now))
    state.db.execute("DELETE FROM console_sessions WHERE user = ?", (user.name,))
    audit(state, note, now)
    return new


def remove_console_user(state: State, name: str, note: AuditNote, now: float) -> bool:
    cursor = state.db.execute("DELETE FROM console_users WHERE name = ?", (name,))
    if cursor.rowcount != 1:
        return False
    state.db.execute("DELETE FROM console_sessions WHERE user = ?", (name,))
    audit(state, note, now)
    return True


# ----------------------------------------------------------------------------- sessions

def create_session(state: State, session_id: str, user: str, note: AuditNote, now: float,
                   idle: float, lifetime: float) -> None:
    """A new session; sessions past their expiry are deleted, and an operator keeps at most
    MAX_SESSIONS_PER_USER (the oldest go)."""
    db = state.db
    db.execute("DELETE FROM console_sessions WHERE created_at < ? OR seen_at < ?",
               (now - lifetime, now - idle))
    db.execute("INSERT INTO console_sessions (id, user, created_at, seen_at) VALUES (?, ?, ?, ?)",
               (session_id, user, now, now))
    db.execute("DELETE FROM console_sessions WHERE user = ? AND id NOT IN (SELECT id FROM "
               "console_sessions WHERE user = ? ORDER BY created_at DESC LIMIT ?)",
               (user, user, MAX_SESSIONS_PER_USER))
    audit(state, note, now)


def session(state: State, session_id: str) -> ConsoleSession | None:
    """The session and its operator's current role (None once the account is gone)."""
    row = state.db.execute(
        "SELECT s.user, u.role, s.created_at, s.seen_at FROM console_sessions s "
        "JOIN console_users u ON u.name = s.user WHERE s.id = ?", (session_id,)).fetchone()
    return None if row is None else ConsoleSession(*row)


def touch_session(state: State, session_id: str, now: float) -> None:
    state.db.execute("UPDATE console_sessions SET seen_at = ? WHERE id = ?", (now, session_id))


def end_session(state: State, session_id: str, note: AuditNote | None, now: float) -> bool:
    cursor = state.db.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,))
    if cursor.rowcount == 1 and note is not None:
        audit(state, note, now)
    return cursor.rowcount == 1


def console_key(state: State, name: str, candidate: str) -> str:
    """The key stored under ``name``; ``candidate`` becomes it when there is none yet (the
    first instance to ask decides for all)."""
    state.db.execute("INSERT OR IGNORE INTO console_keys (name, value) VALUES (?, ?)",
                     (name, candidate))
    return state.db.execute("SELECT value FROM console_keys WHERE name = ?",
                            (name,)).fetchone()[0]


# ----------------------------------------------------------------------------- reviews

def review(state: State, kind: str, item: int, status: int, reason: str, note: AuditNote,
           now: float) -> bool:
    """Set a template's or signature's review status, keep the decision and its reason, and
    audit it. False when there is no such item."""
    if status not in (APPROVED, REFUSED, PENDING):
        raise ValueError(f"review status {status} is not 0, 1 or 2")
    table = REVIEWED[kind]
    cursor = state.db.execute(f"UPDATE {table} SET status = ?, updated_at = ? WHERE id = ?",
                              (status, now, item))
    if cursor.rowcount != 1:
        return False
    state.db.execute("INSERT INTO reviews (kind, item, status, reason, operator, at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (kind, item, status, reason, note.operator, now))
    audit(state, note, now)
    return True


def last_reviews(state: State) -> list[Review]:
    """The latest decision on each reviewed item."""
    rows = state.db.execute(
        "SELECT kind, item, status, reason, operator, at FROM reviews WHERE id IN "
        "(SELECT MAX(id) FROM reviews GROUP BY kind, item)").fetchall()
    return [Review(*row) for row in rows]


def signature_images(state: State, sign_id: int) -> list[tuple[int, str]]:
    """(slot, content type) of each image sent with a signature, for its reviewer."""
    return [tuple(row) for row in state.db.execute(
        "SELECT slot, content_type FROM signature_images WHERE sign_id = ? ORDER BY slot",
        (sign_id,))]


def signature_image(state: State, sign_id: int, slot: int) -> tuple[bytes, str] | None:
    row = state.db.execute("SELECT content, content_type FROM signature_images "
                           "WHERE sign_id = ? AND slot = ?", (sign_id, slot)).fetchone()
    return None if row is None else (bytes(row[0]), row[1])
