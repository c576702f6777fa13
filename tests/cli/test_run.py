"""`cmpp-gateway run`: endpoints, SIGHUP reloads, SIGTERM drains and exits 0, safe log lines."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys

import aiohttp

from gateway.ops.logs import LogfmtFormatter, Redactor, mask_phone_numbers, setup_logging
from gateway.sim import Account, Simulator, SimulatorConfig
from tests.aio import eventually, free_port, run

SECRET = "run-secret-Zq7"


def test_run_serves_reloads_on_sighup_and_drains_on_sigterm(tmp_path, store_setting):
    async def scenario():
        async with Simulator(SimulatorConfig(accounts=[Account("900001", SECRET)])) as sim:
            port = free_port()
            config = tmp_path / "gw.toml"
            config.write_text(
                f'[gateway]\nstore = "{store_setting}"\n'
                f'metrics_listen = "127.0.0.1:{port}"\n'
                f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\n'
                f'port = {sim.address[1]}\naccount = "900001"\npassword = "{SECRET}"\n'
                'access_number = "10690001"\nconnections = 1\n')
            log = tmp_path / "daemon.log"
            with open(log, "wb") as out:
                daemon = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
                    stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                async with aiohttp.ClientSession() as http:
                    async def ready():
                        try:
                            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                                return r.status == 200
                        except aiohttp.ClientError:
                            return False
                    for _ in range(200):
                        if await ready():
                            break
                        await asyncio.sleep(0.05)
                    assert await ready()
                    good = config.read_text()
                    config.write_text(good.replace("connections = 1", "connections = 0"))
                    daemon.send_signal(signal.SIGHUP)       # a bad file: keeps running
                    await eventually(lambda: "reload refused" in log.read_text(), timeout=10)
                    assert await ready() and len(sim.logins) == 1
                    config.write_text(good)
                    daemon.send_signal(signal.SIGHUP)
                    await eventually(lambda: len(sim.logins) == 2, timeout=10)
                    for _ in range(200):
                        if await ready():
                            break
                        await asyncio.sleep(0.05)
                    assert await ready()
                daemon.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(daemon.wait(), 20) == 0
            text = log.read_text()
            assert "signal SIGHUP: draining" in text and "signal SIGTERM: draining" in text
            assert text.count("signal SIGHUP: draining") == 1
            assert "reload refused, still running the previous configuration: " in text
            assert "connections: 0 is out of range" in text
            assert text.count("gateway started") == 2
            assert text.count("event loop asyncio (standard library)") == 2   # the default
            assert all(line.startswith("ts=") and " level=" in line
                       for line in text.splitlines() if line)
            assert SECRET not in text
    run(scenario, timeout=60)


def test_a_bad_configuration_exits_2_naming_the_problem(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[channels.x]\nport = 70000\n")
    from gateway.cli import main
    assert main(["run", "--config", str(config)]) == 2
    assert "port: 70000 is out of range" in capsys.readouterr().out


def test_phone_numbers_are_masked():
    assert mask_phone_numbers("to 13800138000, 8613912345678 and +8618612345678") == \
        "to 138****8000, 86139****5678 and +86186****5678"
    assert mask_phone_numbers("msg_id 12878564852733378560 seq 1234567") == \
        "msg_id 12878564852733378560 seq 1234567"


def test_secrets_and_numbers_never_reach_a_log_line():
    stream = io.StringIO()
    setup_logging("debug", secrets=[SECRET], stream=stream)
    logger = logging.getLogger("cmpp_gateway.test")
    logger.warning("login with %s for %s", SECRET, "13800138000", extra={"peer": "13800138000"})
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        logger.exception("failed")
    line = stream.getvalue()
    assert SECRET not in line and "13800138000" not in line
    assert 'msg="login with ****** for 138****8000"' in line and "peer=138****8000" in line
    assert "boom ******" in line
    logging.getLogger().handlers.clear()


def test_logfmt_lines_quote_what_needs_quoting():
    record = logging.LogRecord("cmpp_gateway.pool", logging.INFO, "", 0, 'a "b" c', (), None)
    line = LogfmtFormatter().format(record)
    assert line.split(" ", 3)[1:3] == ["level=info", "logger=pool"]
    assert line.endswith('msg="a \\"b\\" c"')
    assert Redactor(["x"]).clean("axb") == "a******b"


def unreachable_channel_config(tmp_path, gateway: str, provider: str = "p",
                               store: str | None = None):
    """A configuration whose start is refused before anything connects."""
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nstore = "{store or tmp_path / "gw.sqlite"}"\n{gateway}\n'
                      f'[channels.c]\nprovider = "{provider}"\nhost = "127.0.0.1"\nport = 9\n'
                      'account = "900001"\npassword = "x"\naccess_number = "1069"\n'
                      'connections = 1\n')
    return config


def test_a_store_from_a_newer_version_exits_2_and_is_left_alone(tmp_path, capsys):
    import sqlite3
    db = sqlite3.connect(tmp_path / "gw.sqlite")
    db.execute("PRAGMA user_version=999")
    db.close()
    config = unreachable_channel_config(tmp_path, 'metrics_listen = "127.0.0.1:19108"')
    from gateway.cli import main
    assert main(["run", "--config", str(config)]) == 2
    assert "written by a newer cmpp-gateway (store layout 999" in capsys.readouterr().out
    logging.getLogger().handlers.clear()


def test_a_postgresql_store_that_refuses_the_gateway_exits_2_naming_it_not_its_password(
        tmp_path, capsys, monkeypatch, postgres_url):
    """A role the database does not know: no wait would fix it, so the start fails at once."""
    monkeypatch.setenv("GW_TEST_DB_PASSWORD", "db-Pw-91x")
    stranger = postgres_url.replace("postgresql://postgres@", "postgresql://stranger@")
    config = unreachable_channel_config(
        tmp_path, 'metrics_listen = "127.0.0.1:19108"\nstore_password_env = "GW_TEST_DB_PASSWORD"',
        store=stranger)
    from gateway.cli import main
    assert main(["run", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "stranger@127.0.0.1:" in out and "cannot use the database" in out
    assert 'role "stranger" does not exist' in out and "db-Pw-91x" not in out
    logging.getLogger().handlers.clear()


def test_a_postgresql_store_that_cannot_be_reached_is_waited_for_until_sigterm(tmp_path):
    """No server at the store's address: the gateway waits (a warning at each attempt,
    /healthz 200, /readyz 503 naming the store and why), and SIGTERM ends the wait with 0."""
    async def scenario():
        port = free_port()
        config = unreachable_channel_config(
            tmp_path, f'metrics_listen = "127.0.0.1:{port}"\nstore_password_env = "GW_PW"',
            store=f"postgresql://gw@127.0.0.1:{free_port()}/sms")
        log = tmp_path / "daemon.log"
        with open(log, "wb") as out:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
                stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "GW_PW": "db-Pw-91x"})
            try:
                async with aiohttp.ClientSession() as http:
                    detail = await until_answered(http, f"http://127.0.0.1:{port}/readyz")
                    assert detail["ready"] is False and detail["store"]["writable"] is False
                    assert "/sms: the database cannot be reached" in detail["store"]["reason"]
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                await eventually(lambda: log.read_text().count("trying again in") >= 2,
                                 timeout=20)
            finally:
                daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 20) == 0
        text = log.read_text()
        assert "trying again in 1 s" in text and "trying again in 2 s" in text
        assert "db-Pw-91x" not in text
    run(scenario, timeout=60)


async def until_answered(http, url: str, timeout: float = 20) -> dict:
    """The JSON of the first answer from ``url``, asked every 0.1 s until one comes."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            async with http.get(url) as response:
                return await response.json()
        except aiohttp.ClientError:
            if loop.time() > end:
                raise
            await asyncio.sleep(0.1)


def test_bad_receipt_tables_exit_2_naming_the_file(tmp_path, capsys):
    tables = tmp_path / "providers"
    tables.mkdir()
    (tables / "acme.toml").write_text('[codes]\n"MK:1" = { status = "gone" }\n')
    config = unreachable_channel_config(tmp_path, f'providers = "{tables}"', provider="acme")
    from gateway.cli import main
    assert main(["run", "--config", str(config)]) == 2
    assert f"{tables / 'acme.toml'}: [codes] \"MK:1\": status" in capsys.readouterr().out
    assert not (tmp_path / "gw.sqlite").exists()            # refused before the store opened
    logging.getLogger().handlers.clear()
