"""Whether the store can write, told truthfully: which errors mean it cannot, and the probe
that finds out when it can again.

A disk that is full (or a file that may not grow: ``PRAGMA max_page_count``), an I/O error, a
file that became read-only or stays locked by another process all make SQLite fail the
transaction that writes; the engine then marks the store not writable and probes it every few
seconds until the probe succeeds. The probe is the one judge of recovery, because writes that
change rows in place can succeed while the file cannot grow and every new message fails.
"""

from __future__ import annotations

import sqlite3

from .state import State

SCHEMA = "CREATE TABLE IF NOT EXISTS store_probe (data BLOB NOT NULL);"

# SQLite's primary result codes that mean "cannot write now" (extended ones start with these).
WRITE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN",
                "SQLITE_BUSY", "SQLITE_LOCKED")
PROBE_PAGES = 256             # at most 1 MiB at 4 KiB pages


def create_schema(state: State) -> None:
    state.db.executescript(SCHEMA)


def write_error(error: BaseException) -> str | None:
    """Why the store cannot write, when ``error`` says so; None for any other error (a bad
    operation, which fails alone)."""
    name = getattr(error, "sqlite_errorname", None) or ""
    if isinstance(error, sqlite3.DatabaseError) and name.startswith(WRITE_ERRORS):
        return f"the store cannot write: {error} ({name})"
    return None


def probe(state: State) -> None:
    """Commit a row that needs at least one new page of the file (more than its free pages,
    up to ``PROBE_PAGES``), then delete it. Raises what the store's writes would raise while
    the file cannot grow; returns when it could."""
    db = state.db
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    try:
        state.begin()
        db.execute("INSERT INTO store_probe (data) VALUES (zeroblob(?))",
                   (page_size * min(free + 1, PROBE_PAGES),))
        state.commit()
        state.begin()
        db.execute("DELETE FROM store_probe")
        state.commit()
    except BaseException:
        state.rollback()
        raise
