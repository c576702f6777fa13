"""`cmpp-gateway simulate`: flags and a TOML file become a running simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest

import cmpp
from gateway.channel import Connection, SubmitRejectedError
from gateway.cli import build_parser
from gateway.cli.simulate import build_config
from gateway.sim import HeldDelivers
from tests.sim.raw import RawClient


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


def test_strict_mode_and_the_heartbeat_from_flags_and_from_a_file(tmp_path):
    config, _, _ = build_config(parse(
        "--strict", "--timestamp-tolerance", "120", "--heartbeat-interval", "30",
        "--account", "900002:pw:2:10690002", "--fault", "zero_authenticator=true"))
    assert config.strict is True and config.timestamp_tolerance == 120
    assert config.session.heartbeat_interval == 30 and config.heartbeat
    assert config.faults.zero_authenticator is True
    assert config.accounts[0].access_number == "10690002"
    default, _, _ = build_config(parse())
    assert (default.strict, default.timestamp_tolerance, default.heartbeat,
            default.session.heartbeat_interval) == (False, 300, True, 180)
    assert build_config(parse("--no-heartbeat"))[0].heartbeat is False
    path = tmp_path / "sim.toml"
    path.write_text('strict = true\ntimestamp_tolerance = 60\nheartbeat = false\n'
                    '[[accounts]]\naccount = "900003"\nsecret = "s"\n'
                    'access_number = "1069"\nservice_ids = ["MI0001", "MI0002"]\n')
    config, _, _ = build_config(parse("--config", str(path)))
    assert config.strict and config.timestamp_tolerance == 60 and config.heartbeat is False
    account = config.accounts[0]
    assert (account.access_number, account.service_ids) == ("1069", ("MI0001", "MI0002"))
    config, _, _ = build_config(parse("--config", str(path), "--heartbeat-interval", "5"))
    assert config.heartbeat and config.session.heartbeat_interval == 5   # a flag over the file
    path.write_text('strict = "yes"\n')
    with pytest.raises(ValueError, match="strict: 'yes' is not accepted; give true or false"):
        build_config(parse("--config", str(path)))


@pytest.mark.parametrize("argv,message", [
    (["--fault", "nonsense=1"], "unknown fault 'nonsense'"),
    (["--account", "900001"], "use ID:SECRET"),
    (["--stat", "DELIVRD"], "use NAME=VALUE"),
    (["--heartbeat-interval", "0"], "heartbeat_interval: 0.0 is not accepted"),
    (["--timestamp-tolerance", "-5"], "timestamp_tolerance: -5.0 is not accepted"),
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


def test_the_strict_command_refuses_what_a_strict_center_refuses_and_says_why():
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", "--listen",
                             "127.0.0.1:0", "--duration", "3", "--strict",
                             "--account", "900001:secret:2:10690001"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ISMG simulator listening on 127.0.0.1:") and "strict" in line
        port = int(line.split()[4].rstrip(";").rsplit(":", 1)[1])

        async def client():
            conn = await Connection.open("127.0.0.1", port, "900001", "secret", timeout=5)
            submit = cmpp.Submit(dest_terminal_ids=("13800138000",), msg_content=b"hi",
                                 msg_src="900001", src_id="10690001", registered_delivery=0)
            results = [(await conn.submit(submit)).result]
            try:
                await conn.submit(dataclasses.replace(submit, src_id=""))
            except SubmitRejectedError as error:
                results.append(error.result)
            await conn.close()
            return results
        assert asyncio.run(client()) == [0, 10]
        out, err = proc.communicate(timeout=10)
        assert "strict_result_10 1" in out and "submits 2" in out
        assert "refused with Result 10: Src_Id is empty" in err and "level=warning" in err
        assert "secret" not in err
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_heartbeat_interval_flag_takes_effect():
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", "--listen",
                             "127.0.0.1:0", "--duration", "5", "--heartbeat-interval", "0.1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split()[4].rstrip(";").rsplit(":", 1)[1])

        async def client():
            raw = await RawClient.open(("127.0.0.1", port))
            assert (await raw.login("900001", "secret")).status == 0
            probe = await raw.wait_for(lambda pdu: isinstance(pdu, cmpp.ActiveTest), timeout=4)
            await raw.close()
            return probe
        assert isinstance(asyncio.run(client()), cmpp.ActiveTest)   # 180 s by default
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
