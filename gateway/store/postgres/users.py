"""SQL of the apps' users, as ``gateway.store.sqlite.users`` is for SQLite: each user's numbers,
by channel and a default, per app.

A user is one row: its numbers as a JSONB object (a channel's name, or "default", to an
11-digit number). An upload merges numbers into what the user has (``||``, which for these
flat objects is SQLite's ``json_patch``), a PUT replaces them; ``user_counts`` keeps how many
users each app holds, in the same transactions, so that the per-app limit costs one row read
instead of a count. That row is locked first by every change of an app's users, so gateways
sharing the database take turns per app and the count and the limit hold across them. Like
``messages``, every function runs in the store's writer thread inside a transaction, but
``find_users``, the console's search, which runs on the store's reading connection.

Userids are ``COLLATE "C"``: compared by code point whatever the database's collation, as in
SQLite, so that a prefix is one range of the primary key (``prefix_end``).
"""

from __future__ import annotations

import json

from ..records import UserRow, prefix_end
from .console import audit
from .state import State, changed, columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    app TEXT NOT NULL,
    userid TEXT COLLATE "C" NOT NULL,
    phones JSONB NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (app, userid)
);
CREATE TABLE IF NOT EXISTS user_counts (
    app TEXT PRIMARY KEY,
    users INTEGER NOT NULL
);
"""


async def save_users(state: State, app: str, users: list[tuple[str, dict[str, str]]],
                     replace: bool, max_users: int, now: float) -> list[bool]:
    """Store each (userid, numbers) in order: the numbers are merged into the user's (a
    later one of the same user wins) or, with ``replace``, take the place of them. A user the
    app does not hold yet is refused (False) once it holds ``max_users``; True: stored. One
    statement writes them all, so a userid given twice is merged here first (an upsert may
    change a row once)."""
    count = await _locked_count(state, app)
    known = {row[0] for row in await state.db.fetch(
        "SELECT userid FROM users WHERE app = $1 AND userid = ANY($2::text[])",
        app, list({u for u, _ in users}))}
    stored, phones = [], {}
    for userid, numbers in users:
        if userid not in known:
            if count >= max_users:
                stored.append(False)
                continue
            known.add(userid)
            count += 1
        phones[userid] = dict(numbers) if replace or userid not in phones \
            else {**phones[userid], **numbers}
        stored.append(True)
    merged = "EXCLUDED.phones" if replace else "users.phones || EXCLUDED.phones"
    if phones:
        await state.db.execute(
            "INSERT INTO users (app, userid, phones, updated_at) SELECT $1, u, p::jsonb, $4 "
            "FROM unnest($2::text[], $3::text[]) AS v(u, p) ON CONFLICT (app, userid) "
            f"DO UPDATE SET phones = {merged}, updated_at = EXCLUDED.updated_at",
            app, *columns([(u, json.dumps(p, ensure_ascii=False)) for u, p in phones.items()], 2),
            now)
    await _set_count(state, app, count)
    return stored


async def user(state: State, app: str, userid: str) -> dict[str, str] | None:
    """The user's numbers by channel (and "default"), or None when the app has no such user."""
    phones = await state.db.fetchval("SELECT phones::text FROM users WHERE app = $1 AND "
                                     "userid = $2", app, userid)
    return None if phones is None else json.loads(phones)


async def delete_user(state: State, app: str, userid: str, note=None, now: float = 0.0) -> bool:
    """Forget the user, with ``note``'s audit entry when one is given; False when the app
    had no such user."""
    # The count's row first, as save_users locks it (one order: no deadlock between them).
    await state.db.execute("SELECT 1 FROM user_counts WHERE app = $1 FOR UPDATE", app)
    if changed(await state.db.execute("DELETE FROM users WHERE app = $1 AND userid = $2",
                                      app, userid)) != 1:
        return False
    await state.db.execute("UPDATE user_counts SET users = users - 1 WHERE app = $1", app)
    if note is not None:
        await audit(state, note, now)
    return True


async def find_users(db, app: str, prefix: str, after: str | None,
                     limit: int) -> list[UserRow]:
    """The app's users whose userid begins with ``prefix``, after ``after``, by userid (in
    code point order: the column's collation is "C"), at most ``limit``: one range of the
    primary key, never a scan (LIKE would not use it under another collation). ``db`` is the
    store's reading connection."""
    clauses, values = ["app = $1", "userid >= $2"], [app, prefix]
    if after is not None and after >= prefix:
        values[1] = after
        clauses[1] = "userid > $2"
    end = prefix_end(prefix)
    if end is not None:
        clauses.append("userid < $3")
        values.append(end)
    rows = await db.fetch("SELECT userid, phones::text, updated_at FROM users WHERE "
                          f"{' AND '.join(clauses)} ORDER BY userid LIMIT ${len(values) + 1}",
                          *values, limit)
    return [UserRow(userid, json.loads(phones), at) for userid, phones, at in rows]


async def user_count(state: State, app: str) -> int:
    return await state.db.fetchval("SELECT COALESCE((SELECT users FROM user_counts "
                                   "WHERE app = $1), 0)", app)


async def user_numbers(state: State, app: str, userids: list[str],
                       channel: str) -> dict[str, str | None]:
    """For each of ``userids`` the app holds: its number bound to ``channel``, else its
    default, else None. Users the app does not hold are left out."""
    return dict(await state.db.fetch(
        "SELECT userid, COALESCE(phones ->> $3, phones ->> 'default') FROM users "
        "WHERE app = $1 AND userid = ANY($2::text[])", app, userids, channel))


async def _locked_count(state: State, app: str) -> int:
    """The app's user count, its row locked until the transaction ends (made at 0 when the
    app has none yet): a gateway changing the app's users waits for another's commit, then
    reads what it left."""
    return await state.db.fetchval(
        "INSERT INTO user_counts AS c (app, users) VALUES ($1, 0) ON CONFLICT (app) "
        "DO UPDATE SET users = c.users RETURNING users", app)


async def _set_count(state: State, app: str, count: int) -> None:
    await state.db.execute("UPDATE user_counts SET users = $2 WHERE app = $1", app, count)
