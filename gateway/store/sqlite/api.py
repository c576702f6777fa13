"""SQL of the API's records: requests accepted whole, verification codes, idempotent answers,
unsubscribed numbers, and the templates and signatures managed through the API.

Like ``messages``, every function runs in the store's worker thread inside a transaction.
"""

from __future__ import annotations

import hmac

from gateway.status import DeliveryStatus

from ..records import KEY_REUSED, TOO_MANY_CODES, AcceptedRequest, code_digest
from .messages import _insert_messages
from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    message_id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at REAL NOT NULL,
    verified_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_responses (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    request TEXT,
    PRIMARY KEY (app, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_codes ON messages(recipient, created_at)
    WHERE kind = 'code';
CREATE TABLE IF NOT EXISTS unsubscribed (
    mobile TEXT PRIMARY KEY,
    at REAL NOT NULL,
    channel TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    code_length INTEGER NOT NULL DEFAULT 0,
    ttl REAL NOT NULL DEFAULT 0,
    channel TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signatures (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    sign TEXT NOT NULL,
    status INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signature_images (
    sign_id INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    content BLOB NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (sign_id, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS last_ids (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;
"""

def create_schema(state: State) -> None:
    """The API's tables, and the columns that layout 5 added to those of older files."""
    state.db.executescript(SCHEMA)
    _add_columns(state.db, "api_responses", request="TEXT")
    _add_columns(state.db, "signatures", type="INTEGER", remark="TEXT")


def _add_columns(db, table: str, **columns: str) -> None:
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def accept_request(state: State, request, now: float):
    """Store an API request whole: its messages, the recipients it refused (final
    ``rejected`` records carrying the JSMS code, never sent), its verification code, and the
    answer given, kept under its Idempotency-Key with the request's fingerprint. A key seen
    before returns the first answer and stores nothing, or refuses (KEY_REUSED) when it came
    with another request; a code to a number that got its ``code_limits`` is refused
    (TOO_MANY_CODES)."""
    db = state.db
    if request.idempotency_key is not None:
        row = db.execute("SELECT status, body, request FROM api_responses "
                         "WHERE app = ? AND key = ?",
                         (request.app, request.idempotency_key)).fetchone()
        if row is not None:
            if row[2] is not None and request.fingerprint not in (None, row[2]):
                return AcceptedRequest((), (), None, refusal=KEY_REUSED)
            return AcceptedRequest((), (), (row[0], row[1]), replayed=True)
    if request.code is not None and _codes_exceed(state, request, now):
        return AcceptedRequest((), (), None, refusal=TOO_MANY_CODES)
    ids = _insert_messages(state, list(request.messages), now)
    refused = [_insert_refused(state, message, code, now) for message, code in request.refused]
    if request.code is not None:
        digest, expires_at = request.code
        db.execute("INSERT INTO codes (message_id, app, digest, expires_at) VALUES (?, ?, ?, ?)",
                   (ids[0], request.app, digest, expires_at))
    response = None
    if request.render is not None:
        response = request.render(ids, refused)
        if request.idempotency_key is not None:
            db.execute("INSERT INTO api_responses (app, key, status, body, created_at, request) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (request.app, request.idempotency_key, response[0], response[1], now,
                        request.fingerprint))
    return AcceptedRequest(tuple(ids), tuple(refused), response)


def _codes_exceed(state: State, request, now: float) -> bool:
    """Whether the number of the request's code got ``most`` codes within ``window`` seconds,
    for one of its ``code_limits`` (counted from the messages of kind code: the index
    messages_codes finds them)."""
    recipient = request.messages[0].recipient
    for window, most in request.code_limits:
        count = state.db.execute(
            "SELECT COUNT(*) FROM messages WHERE kind = 'code' AND recipient = ? "
            "AND created_at > ?", (recipient, now - window)).fetchone()[0]
        if count >= most:
            return True
    return False


def _insert_refused(state: State, message, code: int, now: float) -> int:
    cursor = state.db.execute(
        "INSERT INTO messages (app, channel, recipient, text, template_id, kind, reference, "
        "created_at, status, status_stat, status_temporary, status_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'rejected', ?, 0, ?)",
        (message.app, message.channel, message.recipient, message.text, message.template_id,
         message.kind, message.reference, now, str(code), now))
    state.moved(None, DeliveryStatus.REJECTED.value)
    return cursor.lastrowid


def verify_code(state: State, app: str, message_id: int, code: str, now: float,
                max_attempts: int = 5) -> str:
    """"ok", or why not: "unknown" (no such code for this app), "verified" (used already),
    "expired", "spent" (``max_attempts`` wrong codes were tried: it cannot be guessed),
    "invalid" (wrong code; attempts are counted)."""
    row = state.db.execute("SELECT app, digest, expires_at, verified_at, attempts FROM codes "
                           "WHERE message_id = ?", (message_id,)).fetchone()
    if row is None or row[0] != app:
        return "unknown"
    if row[3] is not None:
        return "verified"
    if now >= row[2]:
        return "expired"
    if row[4] >= max_attempts:
        return "spent"
    if not hmac.compare_digest(row[1], code_digest(code, row[1].split("$", 1)[0])):
        state.db.execute("UPDATE codes SET attempts = attempts + 1 WHERE message_id = ?",
                         (message_id,))
        return "invalid"
    state.db.execute("UPDATE codes SET verified_at = ? WHERE message_id = ?", (now, message_id))
    return "ok"


# ----------------------------------------------------------------------------- unsubscribes

def unsubscribe(state: State, mobile: str, now: float, channel: str) -> None:
    state.db.execute("INSERT OR REPLACE INTO unsubscribed (mobile, at, channel) VALUES (?, ?, ?)",
                     (mobile, now, channel))


def unsubscribed(state: State) -> set[str]:
    return {row[0] for row in state.db.execute("SELECT mobile FROM unsubscribed")}


# ----------------------------------------------------------------------------- templates

def _next_id(state: State, table: str, first_id: int = 1) -> int:
    """The next id of ``table`` (templates or signatures): above every id it ever gave, so an
    id once deleted never names another item, and at least ``first_id``."""
    given = state.db.execute("SELECT last FROM last_ids WHERE name = ?", (table,)).fetchone()
    last = max(state.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0,
               given[0] if given else 0)
    next_id = max(first_id, last + 1)
    state.db.execute("INSERT OR REPLACE INTO last_ids (name, last) VALUES (?, ?)",
                     (table, next_id))
    return next_id


def create_template(state: State, values: dict, first_id: int, now: float) -> int:
    """A new template (ids from ``first_id`` on, above the configured ones)."""
    template_id = _next_id(state, "templates", first_id)
    state.db.execute(
        "INSERT INTO templates (id, app, type, content, signature, status, code_length, ttl, "
        "channel, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (template_id, values["app"], values["type"], values["content"], values["signature"],
         values["status"], values["code_length"], values["ttl"], values["channel"], now, now))
    return template_id


def update_template(state: State, template_id: int, values: dict, now: float) -> bool:
    columns = ", ".join(f"{key} = ?" for key in values)
    cursor = state.db.execute(f"UPDATE templates SET {columns}, updated_at = ? WHERE id = ?",
                              (*values.values(), now, template_id))
    return cursor.rowcount == 1


def delete_template(state: State, template_id: int) -> bool:
    return state.db.execute("DELETE FROM templates WHERE id = ?", (template_id,)).rowcount == 1


def templates(state: State) -> list[dict]:
    cursor = state.db.execute("SELECT id, app, type, content, signature, status, code_length, "
                              "ttl, channel FROM templates ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


# ----------------------------------------------------------------------------- signatures

def create_signature(state: State, app: str, sign: str, images: list, status: int,
                     now: float, type: int | None = None, remark: str | None = None) -> int:
    sign_id = _next_id(state, "signatures")
    state.db.execute("INSERT INTO signatures (id, app, sign, status, created_at, updated_at, "
                     "type, remark) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (sign_id, app, sign, status, now, now, type, remark))
    _store_images(state, sign_id, images)
    return sign_id


def update_signature(state: State, sign_id: int, sign: str, images: list, status: int,
                     now: float, type: int | None = None, remark: str | None = None) -> bool:
    """Change the signature's text and status; its images, type and remark only when new
    ones are given (None and [] keep them)."""
    cursor = state.db.execute("UPDATE signatures SET sign = ?, status = ?, updated_at = ?, "
                              "type = COALESCE(?, type), remark = COALESCE(?, remark) "
                              "WHERE id = ?", (sign, status, now, type, remark, sign_id))
    if cursor.rowcount != 1:
        return False
    if images:
        state.db.execute("DELETE FROM signature_images WHERE sign_id = ?", (sign_id,))
        _store_images(state, sign_id, images)
    return True


def _store_images(state: State, sign_id: int, images: list) -> None:
    state.db.executemany("INSERT INTO signature_images (sign_id, slot, content, content_type) "
                         "VALUES (?, ?, ?, ?)",
                         [(sign_id, slot, content, kind) for slot, content, kind in images])


def set_signature_status(state: State, sign_id: int, status: int, now: float) -> bool:
    cursor = state.db.execute("UPDATE signatures SET status = ?, updated_at = ? WHERE id = ?",
                              (status, now, sign_id))
    return cursor.rowcount == 1


def delete_signature(state: State, sign_id: int) -> bool:
    state.db.execute("DELETE FROM signature_images WHERE sign_id = ?", (sign_id,))
    return state.db.execute("DELETE FROM signatures WHERE id = ?", (sign_id,)).rowcount == 1


def signatures(state: State) -> list[dict]:
    cursor = state.db.execute("SELECT id, app, sign, status, type, remark FROM signatures "
                              "ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]
