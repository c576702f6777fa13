"""The simulator's strict mode over loopback TCP: each check refuses a bad CONNECT or SUBMIT
with the code the spec gives (reference sections 6, 8, 9), takes a good one, and lets the bad
one through once strict mode is off."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

import cmpp
from gateway.channel import CHINA
from gateway.sim import Account, Simulator, SimulatorConfig
from tests.aio import run
from tests.sim.raw import RawClient

ACCOUNT, SECRET, ACCESS = "900001", "secret", "10690001"
NOW = datetime(2026, 12, 31, 23, 58, 0, tzinfo=CHINA)    # a minute or two before New Year
GOOD = cmpp.Submit(registered_delivery=0, service_id="MI0001", msg_src=ACCOUNT, src_id=ACCESS,
                   dest_terminal_ids=("13800138000",), msg_content=b"hello")
UDH = bytes((5, 0, 3, 7, 2, 1))                          # part 1 of 2, reference 7


def strict_simulator(**account) -> Simulator:
    settings = dict(max_connections=4, access_number=ACCESS, service_ids=("MI0001",))
    settings.update(account)
    return Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, **settings)],
                                     strict=True, clock=lambda: NOW))


async def logged_in(sim: Simulator) -> RawClient:
    client = await RawClient.open(sim.address)
    assert (await client.login(ACCOUNT, SECRET, when=NOW)).status == 0
    return client


# ----------------------------------------------------------------------------- SUBMIT

REFUSED = [
    # name, fields changed from GOOD, Result, the account's settings changed
    ("Pk_number above Pk_total", dict(pk_total=2, pk_number=3), 1, {}),
    ("Pk_number 0", dict(pk_number=0), 1, {}),
    ("Registered_Delivery 3", dict(registered_delivery=3), 1, {}),
    ("an SMC bill to two numbers", dict(registered_delivery=2,
                                        dest_terminal_ids=("13800138000", "13900139000")), 1, {}),
    ("Msg_level 10", dict(msg_level=10), 1, {}),
    ("a Service_Id not the account's", dict(service_id="OTHER"), 7, {}),
    ("a Service_Id with a space", dict(service_id="MI 01"), 7, dict(service_ids=())),
    ("Fee_UserType 4", dict(fee_user_type=4), 1, {}),
    ("Fee_UserType 3 and no Fee_terminal_Id", dict(fee_user_type=3), 12, {}),
    ("Fee_UserType 3 and no mobile in Fee_terminal_Id",
     dict(fee_user_type=3, fee_terminal_id="12345"), 12, {}),
    ("TP_udhi 0x40", dict(tp_udhi=0x40), 1, {}),
    ("Msg_Fmt 9", dict(msg_fmt=9), 1, {}),
    ("Msg_src another SP_Id", dict(msg_src="900002"), 11, {}),
    ("Msg_src empty", dict(msg_src=""), 11, {}),
    ("FeeType 06", dict(fee_type="06"), 5, {}),
    ("FeeType empty", dict(fee_type=""), 5, {}),
    ("FeeCode empty", dict(fee_code=""), 5, {}),
    ("FeeCode not digits", dict(fee_code="1.5"), 5, {}),
    ("ValId_Time too short", dict(valid_time="2612011200"), 1, {}),
    ("ValId_Time month 13", dict(valid_time="261301120000032+"), 1, {}),
    ("ValId_Time 49 quarter hours", dict(valid_time="261201120000049+"), 1, {}),
    ("At_Time not a time", dict(at_time="tomorrow"), 1, {}),
    ("Src_Id empty", dict(src_id=""), 10, {}),
    ("Src_Id outside the access number", dict(src_id="10690002"), 10, {}),
    ("Src_Id not digits", dict(src_id="1069000A"), 10, {}),
    ("Dest_terminal_Id not a mobile", dict(dest_terminal_ids=("12345",)), 13, {}),
    ("the second Dest_terminal_Id not a mobile",
     dict(dest_terminal_ids=("13800138000", "1380013800")), 13, {}),
    ("TP_udhi 1 and a UDH longer than the content", dict(tp_udhi=1, msg_content=b"\x05\x00\x03"),
     1, {}),
    ("a UDH part 0", dict(tp_udhi=1, msg_content=bytes((5, 0, 3, 7, 2, 0)) + b"x"), 1, {}),
    ("Pk_total/Pk_number against the UDH", dict(pk_total=3, pk_number=1, tp_udhi=1,
                                                msg_content=UDH + b"part"), 1, {}),
    ("Msg_Fmt 0 with a byte above 0x7F", dict(msg_content="你好".encode()), 1, {}),
    ("Msg_Fmt 8 with an odd length", dict(msg_fmt=8, msg_content=b"\x4f\x60\x59"), 1, {}),
    ("Msg_Fmt 8 with a lone surrogate", dict(msg_fmt=8, msg_content=b"\xd8\x3d\x00a"), 1, {}),
    ("Msg_Fmt 15 that is not GBK", dict(msg_fmt=15, msg_content=b"\xff\xfe"), 1, {}),
]


@pytest.mark.parametrize("name,changes,result,account", REFUSED, ids=[c[0] for c in REFUSED])
def test_strict_mode_refuses_a_bad_submit_with_its_result_and_takes_a_good_one(
        name, changes, result, account):
    async def scenario():
        async with strict_simulator(**account) as sim:
            client = await logged_in(sim)
            bad = dataclasses.replace(GOOD, **changes)
            assert await client.submit(GOOD) == 0
            assert await client.submit(bad) == result
            refused = sim.submits[-1]
            assert refused.result == result and refused.msg_id is None and refused.refusal
            assert sim.counters[f"strict_result_{result}"] == 1
            sim.config.strict = False                 # a lenient center takes it
            assert await client.submit(bad) == 0
            await client.close()
    run(scenario)


ACCEPTED = [
    ("an extension of the access number", dict(src_id=ACCESS + "1234")),
    ("86 and +86 in front of a number", dict(dest_terminal_ids=("8613800138000",
                                                                "+8613900139000"))),
    ("Fee_UserType 3 with a mobile", dict(fee_user_type=3, fee_terminal_id="13800138000")),
    ("FeeType 05 and FeeCode 10", dict(fee_type="05", fee_code="10")),
    ("an absolute ValId_Time and a relative At_Time",
     dict(valid_time="261201120000032+", at_time="000001000000000R")),
    ("an SMC bill to one number", dict(registered_delivery=2)),
    ("Msg_level 9", dict(msg_level=9)),
    ("a UDH with Pk left at 1/1, as real senders do", dict(tp_udhi=1, msg_content=UDH + b"part")),
    ("a UDH with Pk that agree", dict(pk_total=2, pk_number=1, tp_udhi=1,
                                      msg_content=UDH + b"part")),
    ("UCS2 text", dict(msg_fmt=8, msg_content="你好😀".encode("utf-16-be"))),
    ("GBK text", dict(msg_fmt=15, msg_content="你好".encode("gbk"))),
    ("binary content", dict(msg_fmt=4, msg_content=bytes(range(256))[:140])),
]


@pytest.mark.parametrize("name,changes", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_strict_mode_takes_what_the_spec_allows(name, changes):
    async def scenario():
        async with strict_simulator() as sim:
            client = await logged_in(sim)
            assert await client.submit(dataclasses.replace(GOOD, **changes)) == 0
            await client.close()
    run(scenario)


def _frame(body: bytes, sequence: int = 0x7000) -> bytes:
    return (12 + len(body)).to_bytes(4, "big") + cmpp.CommandId.SUBMIT.to_bytes(4, "big") \
        + sequence.to_bytes(4, "big") + body


def _split(submit: cmpp.Submit) -> tuple[bytes, bytes]:
    """A one-recipient SUBMIT's body, cut around DestUsr_tl and the Dest_terminal_Id."""
    body = cmpp.encode(submit)[12:]
    return body[:116], body[116 + 1 + 21:]


@pytest.mark.parametrize("name,frame", [
    ("DestUsr_tl 0", (lambda head, tail: _frame(head + b"\x00" + tail))(*_split(GOOD))),
    ("DestUsr_tl 100", (lambda head, tail: _frame(
        head + b"\x64" + b"13800138000".ljust(21, b"\0") * 100 + tail))(*_split(GOOD))),
    ("Msg_Length 141", (lambda head, tail: _frame(
        head + b"\x01" + b"13800138000".ljust(21, b"\0") + b"\x8d" + bytes(141) + bytes(8)))(
        cmpp.encode(dataclasses.replace(GOOD, msg_fmt=8))[12:128], b"")),
])
def test_what_the_codec_refuses_is_a_structure_error_in_strict_mode_too(name, frame):
    async def scenario():
        async with strict_simulator() as sim:
            client = await logged_in(sim)
            response = await client.request(frame)
            assert isinstance(response, cmpp.SubmitResp) and response.result == 1
            assert await client.submit(GOOD) == 0         # the connection carries on
            await client.close()
    run(scenario)


# ----------------------------------------------------------------------------- CONNECT

@pytest.mark.parametrize("name,login,status,lenient", [
    ("Version 0x21 (CMPP 2.1)", dict(version=0x21), 4, 0),
    ("Version 0x30 (CMPP 3.0)", dict(version=0x30), 4, 4),
    ("Version 0x12 (CMPP 1.2)", dict(version=0x12), 5, 0),
    ("a Timestamp 301 s behind", dict(when=NOW - timedelta(seconds=301)), 3, 0),
    ("a Timestamp 301 s ahead", dict(when=NOW + timedelta(seconds=301)), 3, 0),
    ("a Timestamp that is no date", dict(timestamp=1332000000), 1, 0),
    ("a Timestamp of February 30", dict(timestamp=230000000), 1, 0),
    ("another secret in AuthenticatorSource", dict(secret="wrong"), 3, 3),
])
def test_strict_mode_refuses_a_bad_connect_with_its_status(name, login, status, lenient):
    async def attempt(sim: Simulator) -> int:
        client = await RawClient.open(sim.address)
        settings = dict(when=NOW, secret=SECRET) | login
        response = await client.login(ACCOUNT, settings.pop("secret"), **settings)
        await client.close()
        return response.status

    async def scenario():
        async with strict_simulator() as sim:
            assert await attempt(sim) == status
            assert sim.logins[-1] == (ACCOUNT, status)
            sim.config.strict = False
            assert await attempt(sim) == lenient
    run(scenario)


@pytest.mark.parametrize("when", [NOW, NOW - timedelta(seconds=299),
                                  NOW + timedelta(seconds=180)],      # on New Year's Day
                         ids=["now", "299 s behind", "180 s ahead, in the next year"])
def test_strict_mode_takes_a_timestamp_within_the_tolerance(when):
    async def scenario():
        async with strict_simulator() as sim:
            client = await RawClient.open(sim.address)
            assert (await client.login(ACCOUNT, SECRET, when=when)).status == 0
            await client.close()
    run(scenario)


def test_the_timestamp_tolerance_is_a_setting():
    async def scenario():
        config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)], strict=True,
                                 clock=lambda: NOW, timestamp_tolerance=900)
        async with Simulator(config) as sim:
            client = await RawClient.open(sim.address)
            when = NOW - timedelta(minutes=14)
            assert (await client.login(ACCOUNT, SECRET, when=when)).status == 0
            await client.close()
            sim.config.timestamp_tolerance = 60
            client = await RawClient.open(sim.address)
            assert (await client.login(ACCOUNT, SECRET, when=when)).status == 3
            await client.close()
    run(scenario)
