"""Whether the shared store can write, told truthfully: which errors mean it cannot, and the
probe that finds out when it can again (as ``gateway.store.sqlite.health`` is for SQLite).

The store cannot write when the database cannot be reached (the server refuses connections,
or does not answer within the engine's ``answer_timeout``), when the writer's session is lost
(the server restarted, or ended it), and when the server refuses to write: its disk is full
(SQLSTATE 53100: a file could not grow), it is out of memory or connections (53xxx), an I/O
error (58xxx), or it is read-only (25006: a standby, after a failover that went the wrong
way). The engine then marks the store not writable and probes it, on a connection of its own,
until a probe succeeds. The probe is the one judge of recovery, because writes that change
rows in place can succeed while no file can grow and every new message fails.
"""

from __future__ import annotations

import asyncpg

SCHEMA = "CREATE TABLE IF NOT EXISTS store_probe (data BYTEA NOT NULL);"

# SQLSTATEs, or their classes, of a server that cannot write now, whatever the statement.
WRITE_ERRORS = ("53000", "53100", "53200", "53300", "58", "25006")


def write_error(error: BaseException) -> str | None:
    """What the server said when ``error`` means it cannot write now (its message and
    SQLSTATE); None for any other error (a bad operation, which fails alone)."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    if isinstance(error, asyncpg.PostgresError) and sqlstate.startswith(WRITE_ERRORS):
        return f"{error.message} (SQLSTATE {sqlstate})"      # without the HINT: one line
    return None


async def probe(db) -> None:
    """Write where a file must grow, and commit: TRUNCATE gives store_probe a new, empty file,
    so the row inserted into it needs the file's first page (the server's disk has no room:
    SQLSTATE 53100); the row is deleted again before COMMIT, which writes the WAL. Raises what
    the store's writes would raise while the server cannot write; returns when it could."""
    async with db.transaction():
        await db.execute("TRUNCATE store_probe")
        await db.execute("INSERT INTO store_probe (data) VALUES ($1)", b"probe")
        await db.execute("DELETE FROM store_probe")
