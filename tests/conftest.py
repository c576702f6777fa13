"""Fixtures shared by the test tree: a throwaway PostgreSQL server for the session, and the
store settings that run one test against each backend.

``store_setting`` is parametrised: ``sqlite`` gives a file in the test's tmp_path, and
``postgresql`` a URL of a fresh database on the session's server (one per test, dropped
after it). Where no server can be started the PostgreSQL cases skip and say why; with
``CI=true`` (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import asyncio
import itertools
import os

import asyncpg
import pytest

from gateway.bench.postgres import LocalPostgres, PostgresMissing

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


@pytest.fixture
def require_postgres(postgres_server) -> LocalPostgres:
    """The session's server; the test skips (fails under CI=true) when there is none."""
    if not isinstance(postgres_server, LocalPostgres):
        _missing(postgres_server)
    return postgres_server


@pytest.fixture
def postgres_url(require_postgres):
    """The URL of a new, empty database, dropped after the test."""
    postgres_server = require_postgres
    name = f"test_{os.getpid()}_{next(_databases)}"
    asyncio.run(_admin(postgres_server, f'CREATE DATABASE "{name}" STRATEGY FILE_COPY'))
    yield postgres_server.url(name)
    asyncio.run(_admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server: LocalPostgres, statement: str) -> None:
    db = await asyncpg.connect(server.url())
    try:
        await db.execute(statement)
    finally:
        await db.close()


@pytest.fixture(params=BACKENDS)
def store_setting(request, tmp_path) -> str:
    """The ``[gateway] store`` setting of the test's store, once per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "gw.sqlite")
    return request.getfixturevalue("postgres_url")
