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

``Writability`` is that part of the engine (a base of ``engine.Engine``): it keeps why the
store cannot write (``write_error``, never with the password) and runs the probe on the
writer's event loop, at once and then every ``probe_interval`` seconds, until the store can
write; when the writer's session was lost, the probe's connection takes its place and the
facts kept in memory are re-read on it. ``CONNECTION_ERRORS`` are what a session that breaks,
or cannot be made, raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from ..records import StoreUnavailable

log = logging.getLogger("cmpp_gateway.store")

SCHEMA = "CREATE TABLE IF NOT EXISTS store_probe (data BYTEA NOT NULL);"

# SQLSTATEs, or their classes, of a server that cannot write now, whatever the statement.
WRITE_ERRORS = ("53000", "53100", "53200", "53300", "58", "25006")

# What a session raises when it breaks or cannot be made (the writer's, the prober's, others).
CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
# Of those, what a database that cannot be reached yet raises at a connection: nothing the
# gateway's configuration could fix (a wrong password, no such role or database, a TLS
# certificate refused are), so a start waits for it (gateway.daemon).
UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError)


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


class Writability:
    """The engine's side of whether the store can write (see the module). A base of
    ``engine.Engine``, whose attributes it uses: ``name``, ``answer_timeout``,
    ``probe_interval``, ``write_error``, the writer's ``_state``, ``_writer_loop``,
    ``_prober``, ``_closing`` and ``_secrets``, and its ``_connect``."""

    def writable_snapshot(self) -> tuple[bool, str]:
        """(True, "") while the store can write; else (False, why not)."""
        reason = self.write_error
        return reason is None, reason or ""

    def _failed(self, error: Exception) -> Exception:
        """A failed operation's exception, as its caller gets it: StoreUnavailable (and the
        store marked not writable) when the session is lost or the server cannot write."""
        if isinstance(error, StoreUnavailable):
            return error
        if self._state.db.is_closed():
            self._cannot_write(self._unreachable("the session to the database was lost"))
        else:
            refused = write_error(error)
            if refused is None:
                return error
            self._cannot_write(f"the store {self.name} cannot write: {refused}")
        unavailable = StoreUnavailable(self.write_error)
        unavailable.__cause__ = error
        return unavailable

    def _lost(self, db) -> None:
        """The writer's session ended (the server restarted or ended it, the network broke):
        not writable until the prober connects again. Also asyncpg's termination listener."""
        if db is self._state.db and not self._closing:
            self._cannot_write(self._unreachable("the session to the database was lost"))

    def _give_up(self, db) -> None:
        """Writer: the server did not answer within answer_timeout: end the session now."""
        db.remove_termination_listener(self._lost)
        db.terminate()
        self._cannot_write(self._unreachable(f"no answer within {self.answer_timeout:g} s"))

    def _unreachable(self, detail: str) -> str:
        return f"the store {self.name} cannot be reached: {detail}"

    def _cannot_write(self, reason: str) -> None:
        """Writer: say why the store cannot write (logged once, when it starts), and probe."""
        reason = self._redacted(reason)
        if self.write_error is None:
            log.error("%s; not ready until a write succeeds (probing every %g s)", reason,
                      self.probe_interval)
        self.write_error = reason
        if self._prober is None or self._prober.done():
            self._prober = self._writer_loop.create_task(self._probe_until_writable(),
                                                         name="store-probe")

    async def _first_probe(self) -> None:
        """At open, on the writer's session: a store that cannot write says so from the
        start (and probes until it can)."""
        reason = await self._probe_on(self._state.db)
        if reason is not None:
            self._cannot_write(reason)

    async def _probe_until_writable(self) -> None:
        """Writer loop, while the store cannot write: a probe at once, then every
        ``probe_interval`` seconds, until one succeeds. When the writer's session is lost,
        the probe's connection takes its place (the facts kept in memory re-read on it)."""
        while True:
            try:
                db = await self._connect()
            except CONNECTION_ERRORS as error:
                reason = self._unreachable(_text(error))
            else:
                reason = await self._probe_on(db, replacing=self._state.db.is_closed())
                if not (reason is None and db is self._state.db):
                    await _close(db, self.answer_timeout)
            if reason is None:
                log.warning("the store %s can write again", self.name)
                self.write_error = None
                return
            self._cannot_write(reason)
            await asyncio.sleep(self.probe_interval)

    async def _probe_on(self, db, replacing: bool = False) -> str | None:
        """Probe (health.probe) on ``db`` within ``answer_timeout``, and, ``replacing``,
        make it the writer's session. Returns None when the store can write, else why not."""
        try:
            async with asyncio.timeout(self.answer_timeout):
                await probe(db)
                if replacing:
                    await self._state.reload(db)
        except TimeoutError:
            db.terminate()
            return self._unreachable(f"no answer within {self.answer_timeout:g} s")
        except Exception as error:  # noqa: BLE001 - classified into the reason
            if db.is_closed():
                return self._unreachable("the session to the database was lost")
            return f"the store {self.name} cannot write: " \
                   f"{write_error(error) or _text(error)}"
        if replacing:
            db.add_termination_listener(self._lost)
            self._state.db = db
            log.warning("store %s reconnected", self.name)
        return None

    def _redacted(self, text: str) -> str:
        """``text`` without the password, wherever an error might have repeated it."""
        for secret in self._secrets:
            text = text.replace(secret, "******")
        return text


def _text(error: BaseException) -> str:
    """An error as a reason shows it: its message, or its kind when it has none."""
    return str(error) or type(error).__name__


async def _close(db, timeout: float) -> None:
    """Close a session, or abort it when the server does not answer within ``timeout``."""
    with contextlib.suppress(Exception):        # close() aborts the session when it fails
        await db.close(timeout=timeout)
