"""Fixtures shared by the test tree: a throwaway PostgreSQL server for the session, and the
store settings that run one test against each backend.

``store_setting`` is parametrised: ``sqlite`` gives a file in the test's tmp_path, and
``postgresql`` a URL of a fresh database on the session's server (one per test, dropped
after it), copied from a template that already holds the store's tables, so that a test pays
for a database copy (tens of milliseconds) and not for making the schema. ``postgres_url``
is an empty database, for the tests of making and migrating the schema. Where no server can
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
TEMPLATE = "cmpp_store_template"
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
def _database(server: LocalPostgres, template: str = "template1"):
    """The URL of a new database copied from ``template`` (WAL_LOG: no checkpoint, which
    FILE_COPY takes twice), dropped after."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}" '
                               "STRATEGY WAL_LOG"))
    try:
        yield server.url(name)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server: LocalPostgres, statement: str) -> None:
    db = await asyncpg.connect(server.url())
    try:
        await db.execute(statement)
    finally:
        await db.close()


async def _make_template(server: LocalPostgres) -> None:
    """The template database: a store opened once, so it holds the tables at this layout."""
    await _admin(server, f'CREATE DATABASE "{TEMPLATE}"')
    store = PostgresStore(server.url(TEMPLATE))
    await store.open()
    await store.close()


@pytest.fixture
def postgres_url(require_postgres):
    """The URL of a new, empty database, dropped after the test."""
    with _database(require_postgres) as url:
        yield url


@pytest.fixture(scope="session")
def store_settings(postgres_server):
    """``with store_settings(backend, directory) as setting``: the ``[gateway] store``
    setting of a new store of ``backend`` ("sqlite": a file in ``directory``; "postgresql": a
    database made from the template, dropped after). For fixtures of any scope."""
    made = []

    @contextlib.contextmanager
    def setting(backend: str, directory):
        if backend == "sqlite":
            yield str(directory / "gw.sqlite")
            return
        server = _server(postgres_server)
        if not made:
            asyncio.run(_make_template(server))
            made.append(TEMPLATE)
        with _database(server, TEMPLATE) as url:
            yield url
    return setting


@pytest.fixture(params=BACKENDS)
def store_setting(request, tmp_path, store_settings) -> str:
    """The ``[gateway] store`` setting of the test's store, once per backend."""
    with store_settings(request.param, tmp_path) as setting:
        yield setting
