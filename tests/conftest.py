"""Fixtures shared by the test tree: a throwaway PostgreSQL server for the session, and the
store settings that run one test against each backend.

``store_setting`` is parametrised: ``sqlite`` gives a file in the test's tmp_path, and
``postgresql`` a URL of a database on the session's server that holds the store's tables and
no row (StoreDatabases: emptied after each test and used again, so that a test pays some 20
ms, not the 200 to 500 ms of making a database and its tables). ``postgres_url`` is a new,
empty database, for the tests of making and migrating the schema. Where no server can
be started the PostgreSQL cases skip and say why; with ``CI=true`` (as .ci/run sets) they
fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os

import asyncpg
import pytest

from gateway.bench.postgres import LocalPostgres, PostgresMissing
from gateway.store import PostgresStore

BACKENDS = ["sqlite", "postgresql"]
_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole session (fsync off: tests need no power-cut
    durability), stopped and removed at the end."""
    try:
        server = LocalPostgres()
    except PostgresMissing as error:
        yield str(error)                  # each test that needs it skips (or fails)
        return
    try:
        server.start()
    except PostgresMissing as error:
        server.remove()
        yield str(error)
        return
    yield server
    server.remove()


def _missing(reason: str):
    """Skip (fail under CI=true) each test that needs the server that could not start."""
    first_line = reason.splitlines()[0]
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the PostgreSQL tests, and no server could start: {reason}")
    pytest.skip(f"no PostgreSQL server: {first_line}")


def _server(postgres_server) -> LocalPostgres:
    if not isinstance(postgres_server, LocalPostgres):
        _missing(postgres_server)
    return postgres_server


@pytest.fixture
def require_postgres(postgres_server) -> LocalPostgres:
    """The session's server; the test skips (fails under CI=true) when there is none."""
    return _server(postgres_server)


@contextlib.contextmanager
def _database(server: LocalPostgres):
    """The URL of a new, empty database, dropped after."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield server.url(name)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server: LocalPostgres, statement: str, database: str = "postgres"):
    db = await asyncpg.connect(server.url(database))
    try:
        return await db.fetch(statement)
    finally:
        await db.close()


# The store's tables and indexes, column by column, and the database's own settings: a
# database whose layout a test changed is not handed to another.
_LAYOUT = """SELECT md5(string_agg(c.relname || ':' || a.attname || ':' || a.atttypid, ','
    ORDER BY c.relname, a.attnum)) || (SELECT COUNT(*) FROM pg_db_role_setting s, pg_database d
    WHERE s.setdatabase = d.oid AND d.datname = current_database())
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"""


class StoreDatabases:
    """Databases holding the store's tables, used again and again: after a test its database
    is emptied (its sessions ended, every row deleted, ids restarted: some 20 ms, where making
    a database costs 200 to 500 ms) and goes to the next test; one whose layout the test
    changed (a table, column or index, or a database setting) is dropped instead."""

    def __init__(self, server: LocalPostgres) -> None:
        self.server, self.free = server, []
        self.layout: str | None = None
        self.tables: list[str] = []
        self.identities: list[str] = []

    @contextlib.contextmanager
    def database(self):
        name = self.free.pop() if self.free else asyncio.run(self._make())
        try:
            yield self.server.url(name)
        finally:
            if asyncio.run(self._emptied(name)):
                self.free.append(name)
            else:
                asyncio.run(_admin(self.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _make(self) -> str:
        """A new database with the store's tables (a store opened once on it)."""
        name = f"store_{os.getpid()}_{next(_databases)}"
        await _admin(self.server, f'CREATE DATABASE "{name}"')
        store = PostgresStore(self.server.url(name))
        await store.open()
        await store.close()
        db = await asyncpg.connect(self.server.url(name))
        try:
            if self.layout is None:
                self.layout = await db.fetchval(_LAYOUT)
                self.tables = [r[0] for r in await db.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'store_version'")]
                self.identities = [r[0] for r in await db.fetch(
                    "SELECT table_name FROM information_schema.columns WHERE "
                    "table_schema = 'public' AND is_identity = 'YES'")]
        finally:
            await db.close()
        return name

    async def _emptied(self, name: str) -> bool:
        """Empty the database for the next test; False when it cannot be used again."""
        await _admin(self.server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        db = await asyncpg.connect(self.server.url(name))
        try:
            added = [r[0] for r in await db.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> ALL($1::text[]) AND tablename <> 'store_version'",
                self.tables)]
            for table in added:
                await db.execute(f'DROP TABLE "{table}" CASCADE')
            if await db.fetchval(_LAYOUT) != self.layout:
                return False
            await db.execute("; ".join([f'DELETE FROM "{t}"' for t in self.tables] +
                                       [f'ALTER TABLE "{t}" ALTER COLUMN id RESTART'
                                        for t in self.identities]))
            return True
        finally:
            await db.close()


@pytest.fixture
def postgres_url(require_postgres):
    """The URL of a new, empty database, dropped after the test."""
    with _database(require_postgres) as url:
        yield url


@pytest.fixture(scope="session")
def store_settings(postgres_server):
    """``with store_settings(backend, directory) as setting``: the ``[gateway] store``
    setting of a new store of ``backend`` ("sqlite": a file in ``directory``; "postgresql": a
    database holding the store's tables and no row, StoreDatabases'). For fixtures of any
    scope."""
    databases: list[StoreDatabases] = []

    @contextlib.contextmanager
    def setting(backend: str, directory):
        if backend == "sqlite":
            yield str(directory / "gw.sqlite")
            return
        if not databases:
            databases.append(StoreDatabases(_server(postgres_server)))
        with databases[0].database() as url:
            yield url
    return setting


@pytest.fixture(params=BACKENDS)
def store_setting(request, tmp_path, store_settings) -> str:
    """The ``[gateway] store`` setting of the test's store, once per backend."""
    with store_settings(request.param, tmp_path) as setting:
        yield setting
