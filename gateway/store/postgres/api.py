"""SQL of the API's records, as ``gateway.store.sqlite.api`` is for SQLite: requests accepted
whole, verification codes, idempotent answers, unsubscribed numbers, and the templates and
signatures managed through the API.

Like ``messages``, every function runs in the store's writer thread inside a transaction.
"""

from __future__ import annotations

import hmac

from gateway.status import DeliveryStatus

from ..records import (
    KEY_REUSED,
    REPEATED,
    TOO_FAST,
    TOO_MANY_CODES,
    AcceptedRequest,
    code_digest,
)
from .messages import _insert_messages
from .state import State, columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    message_id BIGINT PRIMARY KEY,
    app TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    verified_at DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_responses (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    request TEXT,
    PRIMARY KEY (app, key)
);
CREATE INDEX IF NOT EXISTS messages_codes ON messages(recipient, created_at)
    WHERE kind = 'code';
CREATE TABLE IF NOT EXISTS unsubscribed (
    mobile TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    channel TEXT
);
CREATE TABLE IF NOT EXISTS templates (
    id BIGINT PRIMARY KEY,
    app TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    code_length INTEGER NOT NULL DEFAULT 0,
    ttl DOUBLE PRECISION NOT NULL DEFAULT 0,
    channel TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS signatures (
    id BIGINT PRIMARY KEY,
    app TEXT NOT NULL,
    sign TEXT NOT NULL,
    status INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    type INTEGER,
    remark TEXT
);
CREATE TABLE IF NOT EXISTS signature_images (
    sign_id BIGINT NOT NULL,
    slot INTEGER NOT NULL,
    content BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (sign_id, slot)
);
CREATE TABLE IF NOT EXISTS last_ids (
    name TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);
"""


async def accept_request(state: State, request, now: float) -> AcceptedRequest:
    """Store an API request whole: its messages, the recipients it refused (final
    ``rejected`` records carrying the JSMS code, never sent), its verification code, and the
    answer given, kept under its Idempotency-Key with the request's fingerprint. A key seen
    before returns the first answer and stores nothing, or refuses (KEY_REUSED) when it came
    with another request; a code to a number that got its ``code_limits`` is refused
    (TOO_MANY_CODES). The key, and a code's number, are locked for the transaction
    (advisory, one-bigint space), so that requests reaching two gateways at the same moment
    take turns: a retry waits and then replays, a second code is counted with the first.
    With several gateways, a request that would take its app past ``app_second_limit`` this
    second is refused (TOO_FAST), and one that holds a repeat key another holds (REPEATED)."""
    db = state.db
    if request.idempotency_key is not None:
        await db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                         f"{request.app}\x1f{request.idempotency_key}")
        row = await db.fetchrow("SELECT status, body, request FROM api_responses "
                                "WHERE app = $1 AND key = $2", request.app,
                                request.idempotency_key)
        if row is not None:
            if row[2] is not None and request.fingerprint not in (None, row[2]):
                return AcceptedRequest((), (), None, refusal=KEY_REUSED)
            return AcceptedRequest((), (), (row[0], row[1]), replayed=True)
    if request.code is not None and await _codes_exceed(state, request, now):
        return AcceptedRequest((), (), None, refusal=TOO_MANY_CODES)
    if request.app_second_limit and request.messages and state.instance is not None and \
            not await _count_app_second(state, request, now):
        return AcceptedRequest((), (), None, refusal=TOO_FAST)
    if request.repeats and state.instance is not None:
        held = await _hold_repeats(state, request, now)
        if held:
            return AcceptedRequest((), (), None, refusal=REPEATED, repeated=held)
    ids = await _insert_messages(state, list(request.messages), now)
    refused = await _insert_refused(state, request.refused, now)
    if request.code is not None:
        digest, expires_at = request.code
        await db.execute("INSERT INTO codes (message_id, app, digest, expires_at) "
                         "VALUES ($1, $2, $3, $4)", ids[0], request.app, digest, expires_at)
    response = None
    if request.render is not None:
        response = request.render(ids, refused)
        if request.idempotency_key is not None:
            await db.execute("INSERT INTO api_responses (app, key, status, body, created_at, "
                             "request) VALUES ($1, $2, $3, $4, $5, $6)", request.app,
                             request.idempotency_key, response[0], response[1], now,
                             request.fingerprint)
    return AcceptedRequest(tuple(ids), tuple(refused), response)


async def _count_app_second(state: State, request, now: float) -> bool:
    """Count the request's messages against its app's second (the whole second of ``now``)
    in ``cluster_app_seconds``, the count all gateways share; False, counting nothing, when
    that would take it past ``app_second_limit``. One upsert: its row lock makes the
    gateways' requests for one app take turns for the rest of their transactions, and a
    refusal or a rollback leaves the count as it was. The rows expire (``ClusterSession``'s
    sweep)."""
    return await state.db.fetchval(
        "INSERT INTO cluster_app_seconds AS s (app, second, sent) SELECT $1, $2, $3::int "
        "WHERE $3::int <= $4::float8 ON CONFLICT (app, second) DO UPDATE SET sent = s.sent + EXCLUDED.sent "
        "WHERE s.sent + EXCLUDED.sent <= $4 RETURNING 1", request.app, int(now),
        len(request.messages), request.app_second_limit) is not None


async def _hold_repeats(state: State, request, now: float) -> tuple[str, ...]:
    """Hold the request's repeat keys until its repeat_until (several gateways: the repeat
    rule's memory they share, cluster_repeats); returns those another request holds, and then
    holds none. Sorted, so that two requests wait for each other's keys in one order."""
    keys = sorted(set(request.repeats))
    taken = {r[0] for r in await state.db.fetch(
        "INSERT INTO cluster_repeats (key, until) SELECT k, $2 FROM unnest($1::text[]) AS k "
        "ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until "
        "WHERE cluster_repeats.until <= $3 RETURNING key", keys, request.repeat_until, now)}
    held = tuple(k for k in keys if k not in taken)
    if held and taken:
        await state.db.execute("DELETE FROM cluster_repeats WHERE key = ANY($1::text[])",
                               list(taken))
    return held


async def _codes_exceed(state: State, request, now: float) -> bool:
    """Whether the number of the request's code got ``most`` codes within ``window`` seconds,
    for one of its ``code_limits`` (counted from the messages of kind code: the index
    messages_codes finds them), the number locked first (see ``accept_request``)."""
    if not request.code_limits:
        return False
    recipient = request.messages[0].recipient
    await state.db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           f"code\x1f{recipient}")
    cutoffs = [now - window for window, _ in request.code_limits]
    counts = await state.db.fetchrow(
        "SELECT " + ", ".join(f"COUNT(*) FILTER (WHERE created_at > ${i + 3})"
                              for i in range(len(cutoffs))) +
        " FROM messages WHERE kind = 'code' AND recipient = $1 AND created_at > $2",
        recipient, min(cutoffs), *cutoffs)
    return any(count >= most for count, (_, most) in zip(counts, request.code_limits))


async def _insert_refused(state: State, refused, now: float) -> list[int]:
    """Final ``rejected`` records, ids in the order given (see ``_insert_messages``)."""
    if not refused:
        return []
    rows = await state.db.fetch(
        "INSERT INTO messages (app, channel, recipient, text, template_id, kind, reference, "
        "created_at, status, status_stat, status_temporary, status_at) SELECT a, c, r, t, tid, "
        "k, ref, $9, 'rejected', code, 0, $9 FROM unnest($1::text[], $2::text[], $3::text[], "
        "$4::text[], $5::text[], $6::text[], $7::int[], $8::text[]) "
        "AS v(a, c, r, t, tid, k, ref, code) RETURNING id",
        *columns([(m.app, m.channel, m.recipient, m.text, m.template_id, m.kind, m.reference,
                   str(code)) for m, code in refused], 8), now)
    state.moved(None, DeliveryStatus.REJECTED.value, len(rows))
    return sorted(r[0] for r in rows)


async def verify_code(state: State, app: str, message_id: int, code: str, now: float,
                      max_attempts: int = 5) -> str:
    """"ok", or why not: "unknown" (no such code for this app), "verified" (used already),
    "expired", "spent" (``max_attempts`` wrong codes were tried: it cannot be guessed),
    "invalid" (wrong code; attempts are counted). The code's row is locked, so a code is
    verified once, and its attempts counted in full, when gateways check it at once."""
    row = await state.db.fetchrow("SELECT app, digest, expires_at, verified_at, attempts "
                                  "FROM codes WHERE message_id = $1 FOR UPDATE", message_id)
    if row is None or row[0] != app:
        return "unknown"
    if row[3] is not None:
        return "verified"
    if now >= row[2]:
        return "expired"
    if row[4] >= max_attempts:
        return "spent"
    if not hmac.compare_digest(row[1], code_digest(code, row[1].split("$", 1)[0])):
        await state.db.execute("UPDATE codes SET attempts = attempts + 1 WHERE message_id = $1",
                               message_id)
        return "invalid"
    await state.db.execute("UPDATE codes SET verified_at = $1 WHERE message_id = $2", now,
                           message_id)
    return "ok"


# ----------------------------------------------------------------------------- unsubscribes

async def unsubscribe(state: State, mobile: str, now: float, channel: str) -> None:
    await state.db.execute(
        "INSERT INTO unsubscribed (mobile, at, channel) VALUES ($1, $2, $3) ON CONFLICT (mobile) "
        "DO UPDATE SET at = EXCLUDED.at, channel = EXCLUDED.channel", mobile, now, channel)


async def unsubscribed(state: State) -> set[str]:
    return {row[0] for row in await state.db.fetch("SELECT mobile FROM unsubscribed")}


# ----------------------------------------------------------------------------- templates

async def _next_id(state: State, table: str, first_id: int = 1) -> int:
    """The next id of ``table`` (templates or signatures): above every id it ever gave, so an
    id once deleted never names another item, and at least ``first_id``. One upsert, which
    locks the counter's row: two gateways never give the same id."""
    return await state.db.fetchval(
        "INSERT INTO last_ids AS l (name, last) VALUES ($1, GREATEST($2::bigint, "
        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}))) ON CONFLICT (name) DO UPDATE "
        "SET last = GREATEST(EXCLUDED.last, l.last + 1) RETURNING last", table, first_id)


async def create_template(state: State, values: dict, first_id: int, now: float) -> int:
    """A new template (ids from ``first_id`` on, above the configured ones)."""
    template_id = await _next_id(state, "templates", first_id)
    await state.db.execute(
        "INSERT INTO templates (id, app, type, content, signature, status, code_length, ttl, "
        "channel, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        template_id, values["app"], values["type"], values["content"], values["signature"],
        values["status"], values["code_length"], values["ttl"], values["channel"], now)
    return template_id


async def update_template(state: State, template_id: int, values: dict, now: float) -> bool:
    assignments = ", ".join(f"{key} = ${n}" for n, key in enumerate(values, 1))
    count = len(values)
    status = await state.db.execute(
        f"UPDATE templates SET {assignments}, updated_at = ${count + 1} WHERE id = ${count + 2}",
        *values.values(), now, template_id)
    return status == "UPDATE 1"


async def delete_template(state: State, template_id: int) -> bool:
    return await state.db.execute("DELETE FROM templates WHERE id = $1",
                                  template_id) == "DELETE 1"


async def templates(state: State) -> list[dict]:
    rows = await state.db.fetch("SELECT id, app, type, content, signature, status, code_length, "
                                "ttl, channel FROM templates ORDER BY id")
    return [dict(row) for row in rows]


# ----------------------------------------------------------------------------- signatures

async def create_signature(state: State, app: str, sign: str, images: list, status: int,
                           now: float, type: int | None = None, remark: str | None = None) -> int:
    sign_id = await _next_id(state, "signatures")
    await state.db.execute("INSERT INTO signatures (id, app, sign, status, created_at, "
                           "updated_at, type, remark) VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
                           sign_id, app, sign, status, now, type, remark)
    await _store_images(state, sign_id, images)
    return sign_id


async def update_signature(state: State, sign_id: int, sign: str, images: list, status: int,
                           now: float, type: int | None = None, remark: str | None = None) -> bool:
    """Change the signature's text and status; its images, type and remark only when new
    ones are given (None and [] keep them)."""
    result = await state.db.execute(
        "UPDATE signatures SET sign = $1, status = $2, updated_at = $3, "
        "type = COALESCE($4, type), remark = COALESCE($5, remark) WHERE id = $6",
        sign, status, now, type, remark, sign_id)
    if result != "UPDATE 1":
        return False
    if images:
        await state.db.execute("DELETE FROM signature_images WHERE sign_id = $1", sign_id)
        await _store_images(state, sign_id, images)
    return True


async def _store_images(state: State, sign_id: int, images: list) -> None:
    if images:
        await state.db.execute(
            "INSERT INTO signature_images (sign_id, slot, content, content_type) "
            "SELECT $1, * FROM unnest($2::int[], $3::bytea[], $4::text[])",
            sign_id, *columns(images, 3))


async def set_signature_status(state: State, sign_id: int, status: int, now: float) -> bool:
    result = await state.db.execute("UPDATE signatures SET status = $1, updated_at = $2 "
                                    "WHERE id = $3", status, now, sign_id)
    return result == "UPDATE 1"


async def delete_signature(state: State, sign_id: int) -> bool:
    await state.db.execute("DELETE FROM signature_images WHERE sign_id = $1", sign_id)
    return await state.db.execute("DELETE FROM signatures WHERE id = $1",
                                  sign_id) == "DELETE 1"


async def signatures(state: State) -> list[dict]:
    rows = await state.db.fetch("SELECT id, app, sign, status, type, remark FROM signatures "
                                "ORDER BY id")
    return [dict(row) for row in rows]
