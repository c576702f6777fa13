"""``cmpp-gateway backup``: a sound copy of the store while the gateway writes to it."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.cli import main
from gateway.store import NewMessage, SqliteStore
from tests.aio import run

CONFIG = """
[gateway]
store = "{store}"
[channels.c]
provider = "p"
host = "127.0.0.1"
port = 7890
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
"""


def config_for(tmp_path, store: str | None = None):
    """A configuration whose store is ``store`` (else a file in ``tmp_path``)."""
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(store=store or tmp_path / "gw.sqlite"))
    return config


def test_a_backup_taken_while_messages_are_written_is_a_sound_store(tmp_path, capsys):
    config = config_for(tmp_path)
    copy = tmp_path / "copy.sqlite"

    counted = []

    async def scenario():
        store = SqliteStore(str(tmp_path / "gw.sqlite"))
        await store.open()
        writing = True

        async def writer():
            i = 0
            while writing:
                await store.accept([NewMessage("app", "c", "13800138000", f"m{i}")], now=1.0)
                i += 1
            return i
        task = asyncio.create_task(writer())
        await asyncio.sleep(0.2)
        before = sum((await store.status_counts()).values())
        assert await asyncio.to_thread(main, ["backup", "--config", str(config), str(copy)]) == 0
        writing = False
        written = await task
        await store.close()
        reopened = SqliteStore(str(copy))
        await reopened.open()
        in_copy = sum((await reopened.status_counts()).values())
        await reopened.close()
        assert before <= in_copy <= written
        counted.append(in_copy)
    run(scenario)
    assert f"copy.sqlite: {counted[0]} messages, integrity ok" in capsys.readouterr().out
    assert sqlite3.connect(copy).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_backup_never_overwrites_and_needs_a_store(tmp_path, capsys):
    config = config_for(tmp_path)
    assert main(["backup", "--config", str(config), str(tmp_path / "copy.sqlite")]) == 1
    assert "no such store" in capsys.readouterr().out
    (tmp_path / "gw.sqlite").write_bytes(b"")
    existing = tmp_path / "existing.sqlite"
    existing.write_bytes(b"keep me")
    assert main(["backup", "--config", str(config), str(existing)]) == 1
    assert "already exists" in capsys.readouterr().out
    assert existing.read_bytes() == b"keep me"


def test_a_postgresql_store_is_left_to_the_databases_own_backups(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(store="postgresql://gw@127.0.0.1:5432/sms"))
    assert main(["backup", "--config", str(config), str(tmp_path / "copy.sqlite")]) == 1
    assert "back it up with the database's own tools (pg_dump" in capsys.readouterr().out
    assert not (tmp_path / "copy.sqlite").exists()
