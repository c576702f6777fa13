"""SQL of the apps' users: each user's numbers, by channel and a default, per app.

A user is one row: its numbers as a JSON object (a channel's name, or "default", to an
11-digit number). An upload merges numbers into what the user has (SQLite's ``json_patch``),
a PUT replaces them; ``user_counts`` keeps how many users each app holds, in the same
transactions, so that the per-app limit costs one row read instead of a count. Like
``messages``, every function runs in the store's worker thread inside a transaction, but
``find_users``, the console's search, which runs on the store's reading connection.
"""

from __future__ import annotations

import json
import sqlite3

from ..records import UserRow, prefix_end
from .console import audit
from .state import State, execute_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    app TEXT NOT NULL,
    userid TEXT NOT NULL,
    phones TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (app, userid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_counts (
    app TEXT PRIMARY KEY,
    users INTEGER NOT NULL
) WITHOUT ROWID;
"""

# The rows of ``userids`` (a JSON array): one statement, whatever their number.
_AMONG = "app = ? AND userid IN (SELECT value FROM json_each(?))"


def create_schema(state: State) -> None:
    state.db.executescript(SCHEMA)


def save_users(state: State, app: str, users: list[tuple[str, dict[str, str]]],
               replace: bool, max_users: int, now: float) -> list[bool]:
    """Store each (userid, numbers) in order: the numbers are merged into the user's (a
    later one of the same user wins) or, with ``replace``, take the place of them. A user the
    app does not hold yet is refused (False) once it holds ``max_users``; True: stored."""
    db = state.db
    known = {row[0] for row in db.execute(f"SELECT userid FROM users WHERE {_AMONG}",
                                          (app, json.dumps([u for u, _ in users])))}
    count = _count(state, app)
    stored, rows = [], []
    for userid, phones in users:
        if userid not in known:
            if count >= max_users:
                stored.append(False)
                continue
            known.add(userid)
            count += 1
        rows.append((app, userid, json.dumps(phones, ensure_ascii=False), now))
        stored.append(True)
    phones = "excluded.phones" if replace else "json_patch(users.phones, excluded.phones)"
    execute_rows(db, "INSERT INTO users (app, userid, phones, updated_at) VALUES ",
                 "(?, ?, ?, ?)", rows,
                 f" ON CONFLICT (app, userid) DO UPDATE SET phones = {phones}, "
                 "updated_at = excluded.updated_at")
    _set_count(state, app, count)
    return stored


def user(state: State, app: str, userid: str) -> dict[str, str] | None:
    """The user's numbers by channel (and "default"), or None when the app has no such user."""
    row = state.db.execute("SELECT phones FROM users WHERE app = ? AND userid = ?",
                           (app, userid)).fetchone()
    return None if row is None else json.loads(row[0])


def delete_user(state: State, app: str, userid: str, note=None, now: float = 0.0) -> bool:
    """Forget the user, with ``note``'s audit entry when one is given; False when the app
    had no such user."""
    if state.db.execute("DELETE FROM users WHERE app = ? AND userid = ?",
                        (app, userid)).rowcount != 1:
        return False
    _set_count(state, app, _count(state, app) - 1)
    if note is not None:
        audit(state, note, now)
    return True


def find_users(db: sqlite3.Connection, app: str, prefix: str, after: str | None,
               limit: int) -> list[UserRow]:
    """The app's users whose userid begins with ``prefix``, after ``after``, by userid (in
    code point order: SQLite compares text as UTF-8 bytes), at most ``limit``: one range of
    the primary key, never a scan (LIKE would not use it: it ignores case, the key does
    not)."""
    clauses, values = ["app = ?", "userid >= ?"], [app, prefix]
    if after is not None and after >= prefix:
        values[1] = after
        clauses[1] = "userid > ?"
    end = prefix_end(prefix)
    if end is not None:
        clauses.append("userid < ?")
        values.append(end)
    rows = db.execute("SELECT userid, phones, updated_at FROM users WHERE "
                      f"{' AND '.join(clauses)} ORDER BY userid LIMIT ?", (*values, limit))
    return [UserRow(userid, json.loads(phones), at) for userid, phones, at in rows]


def user_count(state: State, app: str) -> int:
    return _count(state, app)


def user_numbers(state: State, app: str, userids: list[str],
                 channel: str) -> dict[str, str | None]:
    """For each of ``userids`` the app holds: its number bound to ``channel``, else its
    default, else None. Users the app does not hold are left out."""
    path = f'$."{channel}"'            # channel names are letters, digits, _ and -
    return dict(state.db.execute(
        "SELECT userid, COALESCE(json_extract(phones, ?), json_extract(phones, '$.default')) "
        f"FROM users WHERE {_AMONG}", (path, app, json.dumps(userids))))


def _count(state: State, app: str) -> int:
    row = state.db.execute("SELECT users FROM user_counts WHERE app = ?", (app,)).fetchone()
    return row[0] if row else 0


def _set_count(state: State, app: str, count: int) -> None:
    state.db.execute("INSERT INTO user_counts (app, users) VALUES (?, ?) "
                     "ON CONFLICT (app) DO UPDATE SET users = excluded.users", (app, count))
