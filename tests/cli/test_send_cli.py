"""``cmpp-gateway send`` against a running gateway and the simulator (tests.api.test_api.s stack)."""

from __future__ import annotations

import argparse
import json
import socket

import pytest

from gateway.cli.send import add_send_command, send_command
from tests.aio import eventually, run
from tests.api.test_api import KEY, SECRET, stack


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cmpp-gateway")
    add_send_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["send", *argv])


class Cli:
    """Runs the command in-process against ``url``; returns (exit status, JSON lines, stderr)."""

    def __init__(self, capsys, url: str) -> None:
        self.capsys, self.url = capsys, url

    async def __call__(self, *argv: str, secret=("--master-secret", SECRET), env=None):
        args = parse("--url", self.url, "--app-key", KEY, *secret, *argv)
        status = await send_command(args, env=env)
        out, err = self.capsys.readouterr()
        assert SECRET not in out and SECRET not in err
        return status, [json.loads(line) for line in out.splitlines()], err


def sent_text(sim, index: int = -1) -> str:
    return sim.submits[index].submit.msg_content.decode("utf-16-be")


def test_a_single_send_prints_the_msg_id(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            cli = Cli(capsys, api.base)
            status, lines, err = await cli("13800138000", "--temp-id", "1", "--param", "order=A1",
                                           "--idempotency-key", "k1")
            assert status == 0 and err == "" and isinstance(lines[0]["msg_id"], int)
            await eventually(lambda: sim.submits)
            assert sent_text(sim) == "【商城】您的订单A1已发货"
            again = await cli("13800138000", "--temp-id", "1", "--param", "order=A1",
                              "--idempotency-key", "k1")
            assert again == (0, lines, "")                       # the first answer, sent once
    run(scenario)


def test_the_secret_may_come_from_the_environment(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            cli = Cli(capsys, api.base)
            status, lines, _ = await cli("13800138000", "--temp-id", "5",
                                         secret=("--master-secret-env", "SMS_SECRET"),
                                         env={"SMS_SECRET": SECRET})
            assert status == 0 and "msg_id" in lines[0]
            status, lines, err = await cli("13800138000", "--temp-id", "5",
                                           secret=("--master-secret-env", "NOT_SET"), env={})
            assert (status, lines) == (2, []) and "NOT_SET is not set" in err
    run(scenario)


@pytest.mark.parametrize("layout", ["lines", "list"])
def test_a_batch_from_a_file(tmp_path, capsys, layout):
    recipients = [{"mobile": "13812345678", "temp_para": {"order": "1"}},
                  {"mobile": "18603050709x", "temp_para": {"order": "2"}},
                  {"mobile": "13912345678"}]                 # takes --param's default
    path = tmp_path / "recipients.json"
    path.write_text("\n".join(json.dumps(r) for r in recipients) if layout == "lines"
                    else json.dumps(recipients), encoding="utf-8")

    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, lines, err = await Cli(capsys, api.base)(
                "--batch", str(path), "--temp-id", "1", "--param", "order=D")
            answer = lines[0]
            assert status == 0 and (answer["success_count"], answer["failure_count"]) == (2, 1)
            assert [r.get("error_code") for r in answer["recipients"]] == [None, "50006", None]
            await eventually(lambda: len(sim.submits) == 2)
            assert sorted(sent_text(sim, i) for i in (0, 1)) == \
                ["【商城】您的订单1已发货", "【商城】您的订单D已发货"]
    run(scenario)


def test_a_code_is_sent_then_checked(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            cli = Cli(capsys, api.base)
            status, lines, _ = await cli("--code", "13800138000", "--temp-id", "2")
            msg_id = lines[0]["msg_id"]
            assert status == 0 and msg_id.isdigit()
            await eventually(lambda: sim.submits)
            code = sent_text(sim).removeprefix("【商城】验证码")[:6]
            wrong = str((int(code) + 1) % 1_000_000).zfill(6)
            status, lines, err = await cli("--check", msg_id, wrong)
            assert status == 1 and lines == [{"is_valid": False, "error": {
                "code": 50010, "message": "invalid code"}}] and "50010 invalid code" in err
            assert await cli("--check", msg_id, code) == (0, [{"is_valid": True}], "")
            status, lines, err = await cli("--check", msg_id, code)
            assert status == 1 and "50012" in err
    run(scenario)


def test_wait_prints_each_change_until_delivered(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            cli = Cli(capsys, api.base)
            status, lines, err = await cli("13800138000", "--temp-id", "5", "--wait",
                                           "--interval", "0.02", "--timeout", "10")
            assert status == 0 and err == ""
            answer, *changes = lines
            msg_id = str(answer["msg_id"])
            assert [c["msg_id"] for c in changes] == [msg_id] * len(changes)
            statuses = [c["status"] for c in changes]
            assert statuses[-1] == "delivered" and changes[-1]["final"] is True
            assert len(set(statuses)) == len(statuses)            # only changes are printed
            assert changes[-1]["stat"] == "DELIVRD"
            status, lines, _ = await cli("--status", msg_id)
            assert status == 0 and lines[0]["status"] == "delivered" and lines[0]["segments"]
            status, lines, _ = await cli("--status", msg_id, "--wait")    # final already
            assert status == 0 and len(lines) == 1
    run(scenario)


def test_wait_times_out_with_exit_status_1(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            sim.config.report_delay = 30
            status, lines, err = await Cli(capsys, api.base)(
                "13800138000", "--temp-id", "5", "--wait", "--interval", "0.02",
                "--timeout", "0.3")
            assert status == 1 and "still not final after 0.3 s" in err
            assert lines[-1]["final"] is False
    run(scenario)


@pytest.mark.parametrize("argv,code", [
    (("12345", "--temp-id", "1", "--param", "order=1"), 50006),
    (("13800138000", "--temp-id", "99"), 50013),
    (("--status", "999999"), 50026),
])
def test_an_api_refusal_exits_1_with_its_code(tmp_path, capsys, argv, code):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, lines, err = await Cli(capsys, api.base)(*argv)
            assert status == 1 and lines[0]["error"]["code"] == code
            assert f"refused: {code} " in err and "(HTTP 403)" in err
    run(scenario)


def test_a_wrong_secret_is_refused_without_printing_it(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, lines, err = await Cli(capsys, api.base)(
                "13800138000", "--temp-id", "5", secret=("--master-secret", "not-the-secret"))
            assert status == 1 and "50002 auth failed" in err and "not-the-secret" not in err
    run(scenario)


def test_no_gateway_listening_exits_2(capsys):
    with socket.socket() as s:                   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        status, lines, err = await Cli(capsys, f"http://127.0.0.1:{port}")("13800138000",
                                                                           "--temp-id", "1")
        assert (status, lines) == (2, []) and f"no answer from http://127.0.0.1:{port}" in err
    run(scenario)


@pytest.mark.parametrize("argv,message", [
    (("--temp-id", "1"), "MOBILE is required"),
    (("13800138000",), "--temp-id is required"),
    (("13800138000", "--temp-id", "1", "--param", "order"), "write NAME=VALUE"),
    (("--check", "1", "123456", "--wait"), "--wait is not used with --check"),
    (("13800138000", "--status", "1"), "MOBILE is not used with --status"),
    (("--code", "13800138000", "--temp-id", "2", "--param", "a=b"), "--param is not used"),
    (("--batch", "/nonexistent/file", "--temp-id", "1"), "cannot read it"),
])
def test_usage_errors_exit_2_before_any_call(capsys, argv, message):
    async def scenario():
        status, lines, err = await Cli(capsys, "http://127.0.0.1:9")(*argv)
        assert (status, lines) == (2, []) and message in err
    run(scenario)


def test_a_url_that_is_not_http_exits_2(capsys):
    async def scenario():
        status, _, err = await Cli(capsys, "ftp://example")("13800138000", "--temp-id", "1")
        assert status == 2 and "--url" in err
    run(scenario)
