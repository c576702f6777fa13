"""``cmpp-gateway console-user``: operators are added with a password read from stdin (never
the command line), changed, listed and removed, each in the audit trail, in the store of
either backend."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from gateway.cli import main
from gateway.console.auth import check_password
from gateway.store import create_store
from tests.aio import run
from tests.cli.test_backup import config_for


def process(tmp_path, *args, stdin: str = "") -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "console-user", *args,
                           "--config", str(tmp_path / "gw.toml")], input=stdin,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def command(tmp_path, monkeypatch, capsys):
    """The command in this process (stdin and stdout replaced): (exit status, output)."""
    def call(*args, stdin: str = "") -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(["console-user", *args, "--config", str(tmp_path / "gw.toml")])
        return status, capsys.readouterr().out
    return call


def stored(setting: str):
    async def read():
        store = create_store(setting)
        await store.open()
        try:
            return await store.console_users(), await store.audit_page(None, 10)
        finally:
            await store.close()
    result = []

    async def scenario():
        result.extend(await read())
    run(scenario)
    return result


def test_a_store_file_that_does_not_exist_yet_is_named(tmp_path, command):
    config_for(tmp_path)
    assert command("list") == (
        1, f"no store at {tmp_path / 'gw.sqlite'}: start the gateway once so that it creates "
           "it\n")
    assert not (tmp_path / "gw.sqlite").exists()


def test_operators_are_added_changed_listed_and_removed(tmp_path, store_setting, command):
    config = config_for(tmp_path, store_setting)
    run(lambda: _create(store_setting))
    assert command("list")[1].startswith("no console user yet")
    assert process(tmp_path, "add", "alice", "--role", "admin",
                   stdin="alice-password-1\n") == (0, "added alice (admin)\n")
    assert command("add", "bob", "--role", "viewer", stdin="short\n") == \
        (1, "a password has at least 10 characters\n")
    assert command("add", "bad name", "--role", "viewer", stdin="x" * 12)[0] == 1
    assert command("add", "alice", "--role", "viewer", stdin="alice-password-2\n") == \
        (0, "changed alice (viewer); its sessions have ended\n")
    assert command("list") == (0, "alice\tviewer\n")
    users, audit = stored(store_setting)
    assert check_password("alice-password-2", users[0].password)
    assert "alice-password" not in users[0].password
    assert [(e.action, e.target, e.detail) for e in reversed(audit)] == [
        ("console user added", "alice", "role admin"),
        ("console user changed", "alice", "role viewer")]
    assert audit[0].operator.startswith("command line (")
    assert command("remove", "alice") == (0, "removed alice; its sessions have ended\n")
    assert command("remove", "alice") == (1, "no console user alice\n")
    config.write_text(config.read_text() + "[console]\nlisten = 1\n", encoding="utf-8")
    assert command("list")[0] == 2


async def _create(setting: str) -> None:
    store = create_store(setting)
    await store.open()
    await store.close()
