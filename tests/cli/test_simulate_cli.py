"""`cmpp-gateway simulate`: flags and a TOML file become a running simulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import cmpp
from gateway.channel import Connection
from gateway.cli import build_parser
from gateway.cli.simulate import build_config
from gateway.sim import HeldDelivers


def parse(*argv):
    return build_parser().parse_args(["simulate", *argv])


def test_flags_become_the_simulator_settings():
    config, host, port = build_config(parse(
        "--listen", "127.0.0.1:7999", "--account", "900002:pw:2", "--report-delay", "0.5",
        "--stat", "DELIVRD=9", "--stat", "MK:0012=1", "--fault", "throttle_tps=100",
        "--fault", "duplicate_delivers=true", "--gateway-code", "79101"))
    assert (host, port) == ("127.0.0.1", 7999)
    assert [(a.account, a.secret, a.max_connections) for a in config.accounts] == [("900002", "pw", 2)]
    assert config.stats == {"DELIVRD": 9.0, "MK:0012": 1.0}
    assert config.faults.throttle_tps == 100 and config.faults.duplicate_delivers is True
    assert config.report_delay == 0.5 and config.gateway_code == 79101


def test_a_toml_file_and_flags_on_top(tmp_path):
    path = tmp_path / "sim.toml"
    path.write_text('listen = "127.0.0.1:7001"\nreport_delay = 2.0\n'
                    '[[accounts]]\naccount = "900003"\nsecret = "s"\nmax_connections = 8\n'
                    '[stats]\nUNDELIV = 1\n[faults]\nsubmit_resp_delay = 0.5\n')
    config, host, port = build_config(parse("--config", str(path), "--report-delay", "0.1"))
    assert port == 7001 and config.report_delay == 0.1
    assert config.accounts[0].max_connections == 8 and config.stats == {"UNDELIV": 1}
    assert config.faults.submit_resp_delay == 0.5


@pytest.mark.parametrize("argv,message", [
    (["--fault", "nonsense=1"], "unknown fault 'nonsense'"),
    (["--account", "900001"], "use ID:SECRET"),
    (["--stat", "DELIVRD"], "use NAME=VALUE"),
])
def test_bad_settings_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        build_config(parse(*argv))


def test_the_command_serves_a_real_client_and_stops_on_its_own():
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", "--listen",
                             "127.0.0.1:0", "--duration", "3"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ISMG simulator listening on 127.0.0.1:")
        port = int(line.split()[4].rstrip(";").rsplit(":", 1)[1])

        async def client():
            conn = await Connection.open("127.0.0.1", port, "900001", "secret", timeout=5)
            response = await conn.submit(cmpp.Submit(dest_terminal_ids=("13800138000",),
                                                     msg_content=b"hi", registered_delivery=0))
            await conn.close()
            return response
        assert asyncio.run(client()).result == 0
        out, _ = proc.communicate(timeout=10)
        assert "logins 1" in out and "submits 1" in out
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_held_reports_come_from_the_file_named_by_held(tmp_path):
    held = HeldDelivers()
    held.add("900001", [cmpp.Deliver(msg_id=5, src_terminal_id="13800138000", msg_content=b"T")])
    held.save(tmp_path / "held.json")
    config, _, _ = build_config(parse("--held", str(tmp_path / "held.json")))
    assert len(config.held) == 1
    assert build_config(parse())[0].held is None
