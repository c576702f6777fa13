"""Faults of a PostgreSQL server, for tests of what the store and the gateway do about them.

``frozen(server)``: every process of the server stopped (SIGSTOP) until the block ends, as a
frozen host or a network that drops packets looks to its clients: connections stay open (new
ones are accepted by the kernel) and nothing is answered. ``DISK_FULL`` makes the server refuse
what the store writes as it does when its disk has no room: triggers raise SQLSTATE 53100 with
the server's own message, for the tables given (``disk_full(tables)``), until ``DISK_ROOM``.
"""

from __future__ import annotations

import contextlib
import os
import signal

from gateway.bench.postgres import LocalPostgres

DISK_FULL_FUNCTION = (
    "CREATE OR REPLACE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file "
    "\"base/16384/16385\": No space left on device', HINT = 'Check free disk space.'; END $$")


def disk_full(*tables: str) -> list[str]:
    """Statements after which every INSERT into ``tables`` fails as on a full disk."""
    return [DISK_FULL_FUNCTION] + [f"CREATE TRIGGER disk_full BEFORE INSERT ON {t} FOR EACH ROW "
                                   "EXECUTE FUNCTION disk_full()" for t in tables]


def disk_room(*tables: str) -> list[str]:
    """Statements that undo ``disk_full(*tables)``."""
    return [f"DROP TRIGGER disk_full ON {t}" for t in tables]


def server_processes(server: LocalPostgres) -> list[int]:
    """The postmaster and every process it started (Linux /proc)."""
    pids = [server.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):          # gone meanwhile
                continue
            if parent == server.pid:
                pids.append(int(entry))
    return pids


@contextlib.contextmanager
def frozen(server: LocalPostgres):
    """The server answers nothing while the block runs, and goes on after it."""
    pids = server_processes(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
