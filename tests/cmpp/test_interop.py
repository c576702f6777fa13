"""Interoperability with CMPP code nobody here wrote, over loopback TCP.

Part 1: pycmpp 2.0.2 (PyPI), a small threaded CMPP 2.0 client, logs in to our simulator and
submits. Its quirks, read in its source, are the peer's and the simulator has to live with them:

- CONNECT carries Version 0x21 (``cmpp_defines.CMPP_VERSION``).
- Its ACTIVE_TEST_RESP appends ``b'0x00'``, the four ASCII characters "0x00", to a header whose
  Total_Length says 13 (``response.ActiveTestResponseInstance``): the 13-byte frame carries
  Reserved 0x30 ('0'), and three stray bytes "x00" go into the stream after it.
- Every SUBMIT says Msg_Fmt 8 and never carries the ``src_id`` it was given (Src_Id is empty).
  A text of 70 characters or more is cut every 64 characters (128 bytes, not the 134 a
  segment has room for), each part with UDH ``05 00 03 ref total n``, TP_pId 1 and
  Pk_total/Pk_number set. Each part gets its own Sequence_Id (one process-wide counter), and
  the reference rotates through a per-client shuffle of 0-255.
- It answers nothing but ACTIVE_TEST: no DELIVER_RESP, no TERMINATE_RESP, and ``disconnect``
  closes without waiting. Its receive loop never returns: it sleeps 10 s after a socket error
  and spins on EOF; its heartbeat thread (not a daemon) runs forever. So these tests turn the
  heartbeat off and end the receive loop through the socket (``TappedSocket``).

Part 2: our ``Connection`` against a minimal ISMG written here with ``struct`` from the byte
layouts of reference/cmpp2.md (§4-§11), sharing no code with ``cmpp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import struct
import threading
from datetime import datetime
from typing import NamedTuple

import pytest
from pycmpp import Cmpp
from pycmpp.request import ActiveTestRequestInstance

import cmpp
from cmpp import events as ev
from cmpp.session import SessionConfig
from cmpp.states import State
from gateway.channel import CHINA, Connection, LoginRefused
from gateway.sim import Account, Simulator, SimulatorConfig

ACCOUNT, SECRET = "900001", "s3cret"
SRC_ID, PHONE = "106900001", "13800138000"
STEP_TIMEOUT = 5.0        # any single wait: a frame, a thread, a condition
TEST_TIMEOUT = 30.0       # a whole scenario

# Command_Id values (reference §5), typed here rather than taken from cmpp.CommandId.
CONNECT, CONNECT_RESP = 0x00000001, 0x80000001
TERMINATE, TERMINATE_RESP = 0x00000002, 0x80000002
SUBMIT, SUBMIT_RESP = 0x00000004, 0x80000004
DELIVER, DELIVER_RESP = 0x00000005, 0x80000005
ACTIVE_TEST, ACTIVE_TEST_RESP = 0x00000008, 0x80000008

HEADER = struct.Struct(">III")                    # §4: Total_Length, Command_Id, Sequence_Id


class Frame(NamedTuple):
    total_length: int
    command_id: int
    sequence_id: int
    body: bytes


def parse_frames(data: bytes) -> list[Frame]:
    """Cut a byte stream into frames by Total_Length (§2). A frame not yet whole at the end
    (a reader between header and body) is left out; it is in the next call's data."""
    frames, at = [], 0
    while at + 12 <= len(data):
        total, command, sequence = HEADER.unpack_from(data, at)
        if at + total > len(data):
            break
        frames.append(Frame(total, command, sequence, bytes(data[at + 12:at + total])))
        at += total
    return frames


def run(scenario, timeout: float = TEST_TIMEOUT) -> None:
    """Run ``scenario()`` in a fresh event loop under a deadline, then check that it left no
    task behind. A scenario that overruns fails with TimeoutError instead of hanging."""
    async def bounded():
        async with asyncio.timeout(timeout):
            await scenario()
        await asyncio.sleep(0)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftovers == [], leftovers
    asyncio.run(bounded())


async def wait_until(condition, timeout: float = STEP_TIMEOUT) -> None:
    """Poll ``condition()`` until it is true; AssertionError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


# ============================================================================= part 1: pycmpp

class _ReceiverStopped(BaseException):
    """Ends pycmpp's receive loop, which catches every Exception and never returns."""


class TappedSocket:
    """The socket pycmpp uses: it records every ``send`` (pycmpp sends one PDU per call) and
    every byte received, and it ends pycmpp's receive loop, by raising ``_ReceiverStopped``,
    when the peer closes, the socket fails, or nothing arrives for ``STEP_TIMEOUT`` seconds."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.settimeout(STEP_TIMEOUT)
        self._lock = threading.Lock()
        self.sent: list[bytes] = []
        self._received = bytearray()

    def connect(self, address) -> None:
        self._socket.connect(address)

    def send(self, data: bytes) -> int:
        with self._lock:
            self.sent.append(bytes(data))
        self._socket.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        if size == 0:                   # pycmpp reads a 12-byte PDU's body with recv(0)
            return b""
        try:
            data = self._socket.recv(size)
        except OSError:
            raise _ReceiverStopped from None
        if not data:
            raise _ReceiverStopped
        with self._lock:
            self._received += data
        return data

    def received(self) -> list[Frame]:
        """The frames received so far (the simulator's frames are well formed)."""
        with self._lock:
            data = bytes(self._received)
        return parse_frames(data)

    def shutdown(self) -> None:
        """Wake a thread blocked in ``recv`` (closing alone does not, on Linux)."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._socket.close()


class PycmppClient:
    """A pycmpp ``Cmpp`` on a ``TappedSocket``, its receive loop in a daemon thread that ends
    when the connection does. ``stop`` fails the test if that thread outlives it."""

    def __init__(self, address: tuple[str, int], secret: str = SECRET) -> None:
        host, port = address
        self.cmpp = Cmpp(host, port, ACCOUNT, secret, SRC_ID, client_heartbeat=False)
        self.cmpp.so.close()                  # the socket Cmpp() made; the tap replaces it
        self.tap = self.cmpp.so = TappedSocket()
        self.crash: BaseException | None = None
        self._receiver = threading.Thread(target=self._receive, name="pycmpp-receive",
                                          daemon=True)

    def _receive(self) -> None:
        try:
            self.cmpp.receive()
        except _ReceiverStopped:
            pass
        except BaseException as error:   # noqa: BLE001 - e.g. a sys.exit: fail the test instead
            self.crash = error

    async def login(self) -> None:
        """TCP connect, send pycmpp's CONNECT, start its receive loop."""
        await asyncio.to_thread(self.cmpp.connect)
        await asyncio.to_thread(self.cmpp.auth)
        self._receiver.start()

    async def submit(self, text: str, phones: list[str]) -> None:
        await asyncio.to_thread(self.cmpp.submit, text, phones)

    def received(self, command_id: int) -> list[Frame]:
        return [f for f in self.tap.received() if f.command_id == command_id]

    async def stop(self) -> None:
        """pycmpp's TERMINATE (if the link is up), then wait for its receive thread to end: the
        simulator closes after TERMINATE_RESP. Raises AssertionError if the thread is still
        alive after ``STEP_TIMEOUT`` or ended with anything but the socket closing."""
        if self._receiver.is_alive():
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.cmpp.terminate)
            await asyncio.to_thread(self._receiver.join, STEP_TIMEOUT)
        self.tap.shutdown()
        if self._receiver.ident is not None:
            await asyncio.to_thread(self._receiver.join, STEP_TIMEOUT)
        self.cmpp.close()
        assert not self._receiver.is_alive(), "pycmpp's receive thread did not end"
        assert self.crash is None, f"pycmpp's receive loop raised {self.crash!r}"


@contextlib.asynccontextmanager
async def pycmpp_logged_in(session: SessionConfig | None = None):
    """A simulator with our account, and a pycmpp client logged in to it (CONNECT_RESP
    received). Stops both, in that order, whatever happens."""
    config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                             session=session or SessionConfig())
    async with Simulator(config) as sim:
        client = PycmppClient(sim.address)
        try:
            await client.login()
            await wait_until(lambda: client.received(CONNECT_RESP))
            yield sim, client
        finally:
            await client.stop()


def test_pycmpp_logs_in_with_version_0x21_and_gets_a_verifiable_connect_resp():
    async def scenario():
        async with pycmpp_logged_in() as (sim, client):
            assert sim.logins == [(ACCOUNT, 0)]
            assert len(sim.connections(ACCOUNT)) == 1
            connect = parse_frames(client.tap.sent[0])[0]
            assert (connect.total_length, connect.command_id) == (39, CONNECT)
            assert connect.body[22] == 0x21                           # Version, §6.1
            [resp] = client.received(CONNECT_RESP)
            assert resp.total_length == 30 and resp.sequence_id == connect.sequence_id
            status, authenticator, _ = struct.unpack(">B16sB", resp.body)
            source = connect.body[6:22]
            assert status == 0
            assert authenticator == hashlib.md5(b"\x00" + source + SECRET.encode()).digest()
    run(scenario)


SHORT = "您的验证码是 246810，5 分钟内有效。"


def test_pycmpp_short_message_is_recorded_field_by_field():
    async def scenario():
        async with pycmpp_logged_in() as (sim, client):
            await client.submit(SHORT, [PHONE])
            await wait_until(lambda: client.received(SUBMIT_RESP))
            [received] = sim.submits
            submit = received.submit
            assert (received.account, received.result) == (ACCOUNT, 0)
            assert submit.dest_terminal_ids == (PHONE,)
            assert submit.src_id == ""              # pycmpp never sends the src_id it was given
            assert submit.msg_src == ACCOUNT
            assert (submit.msg_fmt, submit.tp_udhi, submit.tp_pid) == (8, 0, 0)
            assert (submit.pk_total, submit.pk_number, submit.registered_delivery) == (1, 1, 0)
            assert (submit.fee_user_type, submit.fee_type, submit.fee_code) == (2, "01", "000000")
            assert submit.msg_content == SHORT.encode("utf-16-be")
            assert sim.reports == []                  # Registered_Delivery 0: no report
            [resp] = client.received(SUBMIT_RESP)
            assert resp.sequence_id == submit.sequence_id
            assert struct.unpack(">QB", resp.body) == (received.msg_id, 0)
    run(scenario)


LONG = "【互通测试】" + "这是一条由 pycmpp 拆分的长短信，第二部分应当接在第一部分之后。" * 4 + "完。"


def test_pycmpp_long_message_parts_carry_its_udh_and_reassemble():
    assert len(LONG) > 128 and len(LONG) % 64                     # three parts, the last short
    async def scenario():
        async with pycmpp_logged_in() as (sim, client):
            await client.submit(LONG, [PHONE])
            await wait_until(lambda: len(client.received(SUBMIT_RESP)) == 3)
            parts = [r.submit for r in sim.submits]
            reference = client.cmpp.msg_flag_list[0]          # the flag pycmpp just used
            first = parts[0].sequence_id
            assert [p.sequence_id for p in parts] == [first, first + 1, first + 2]
            for number, part in enumerate(parts, 1):
                text = LONG[64 * (number - 1):64 * number]
                assert part.msg_content == bytes((5, 0, 3, reference, 3, number)) \
                    + text.encode("utf-16-be")
                assert (part.tp_udhi, part.tp_pid, part.msg_fmt) == (1, 1, 8)
                assert (part.pk_total, part.pk_number) == (3, number)
                assert part.dest_terminal_ids == (PHONE,)
                assert (part.src_id, part.msg_src) == ("", ACCOUNT)
            assert [r.result for r in sim.submits] == [0, 0, 0]
            answers = {f.sequence_id: struct.unpack(">QB", f.body)
                       for f in client.received(SUBMIT_RESP)}
            assert answers == {r.submit.sequence_id: (r.msg_id, 0) for r in sim.submits}
            reassembler = cmpp.Reassembler()
            messages = [m for p in parts for m in reassembler.feed(p, 0.0)]
            assert [(m.text, m.complete) for m in messages] == [(LONG, True)]
    run(scenario)


def test_simulator_answers_pycmpp_active_test_with_13_bytes():
    async def scenario():
        async with pycmpp_logged_in() as (sim, client):
            probe = ActiveTestRequestInstance()
            await asyncio.to_thread(client.cmpp.send, probe.create())  # what its heartbeat sends
            await wait_until(lambda: client.received(ACTIVE_TEST_RESP))
            assert client.received(ACTIVE_TEST_RESP) == [
                Frame(13, ACTIVE_TEST_RESP, probe.seq_id, b"\x00")]
            assert len(sim.connections(ACCOUNT)) == 1
    run(scenario)


def test_simulator_accepts_pycmpp_active_test_resp_then_ends_the_link_at_its_stray_bytes():
    """pycmpp's answer is a 13-byte frame (Reserved '0') followed by the bytes "x00". The
    simulator takes the frame as the answer: its next probe carries a new Sequence_Id, which
    it sends only once the previous one was answered (a resend would repeat the old one).
    The stray bytes then begin the next frame, Total_Length 0x78303000 (2 GB): the stream can
    no longer be framed, so the simulator ends the link with TERMINATE, as gocmpp would."""
    async def scenario():
        async with pycmpp_logged_in(SessionConfig(heartbeat_interval=0.2)) as (sim, client):
            await wait_until(lambda: client.received(TERMINATE))
            await wait_until(lambda: not sim.connections())
            received = [(f.command_id, f.sequence_id) for f in client.tap.received()]
            assert received[1:] == [(ACTIVE_TEST, 1), (ACTIVE_TEST, 2), (TERMINATE, 3)]
            answers = client.tap.sent[1:]
            assert answers == [HEADER.pack(13, ACTIVE_TEST_RESP, 1) + b"0x00",
                               HEADER.pack(13, ACTIVE_TEST_RESP, 2) + b"0x00"]
            assert int.from_bytes(answers[0][13:] + answers[1][:1], "big") == 0x78303000
            assert sim.counters["malformed"] == 1
    run(scenario)


# ============================================================================= part 2: struct ISMG

# CONNECT body (§6.1): Source_Addr 6, AuthenticatorSource 16, Version 1, Timestamp 4.
CONNECT_BODY = struct.Struct(">6s16sBI")
# CONNECT_RESP body (§6.2, 2.0): Status 1, AuthenticatorISMG 16, Version 1.
CONNECT_RESP_BODY = struct.Struct(">B16sB")
# SUBMIT_RESP and DELIVER_RESP bodies (§9, §11): Msg_Id 8, Result 1.
MSG_ID_RESULT = struct.Struct(">QB")
# DELIVER body up to Msg_Length (§10): Msg_Id 8, Dest_Id 21, Service_Id 10, TP_pid 1,
# TP_udhi 1, Msg_Fmt 1, Src_terminal_Id 21, Registered_Delivery 1, Msg_Length 1.
DELIVER_FIXED = struct.Struct(">Q21s10sBBB21sBB")
# Status report (§10.1): Msg_Id 8, Stat 7, Submit_time 10, Done_time 10, Dest_terminal_Id 21,
# SMSC_sequence 4.
REPORT = struct.Struct(">Q7s10s10s21sI")

# SUBMIT's fixed part (§8): (field, body offset, struct format), as the table lists them.
SUBMIT_FIXED = (
    ("Msg_Id", 0, "Q"), ("Pk_total", 8, "B"), ("Pk_number", 9, "B"),
    ("Registered_Delivery", 10, "B"), ("Msg_level", 11, "B"), ("Service_Id", 12, "10s"),
    ("Fee_UserType", 22, "B"), ("Fee_terminal_Id", 23, "21s"), ("TP_pId", 44, "B"),
    ("TP_udhi", 45, "B"), ("Msg_Fmt", 46, "B"), ("Msg_src", 47, "6s"), ("FeeType", 53, "2s"),
    ("FeeCode", 55, "6s"), ("ValId_Time", 61, "17s"), ("At_Time", 78, "17s"),
    ("Src_Id", 95, "21s"), ("DestUsr_tl", 116, "B"),
)


def parse_submit(body: bytes) -> dict:
    """A SUBMIT body as {spec field name: raw value}, by the offsets of §8. Raises
    struct.error if the body is too short for its own DestUsr_tl and Msg_Length."""
    fields = {name: struct.unpack_from(">" + fmt, body, offset)[0]
              for name, offset, fmt in SUBMIT_FIXED}
    count = fields["DestUsr_tl"]
    fields["Dest_terminal_Id"] = [body[117 + 21 * k:138 + 21 * k] for k in range(count)]
    length = fields["Msg_Length"] = body[117 + 21 * count]
    fields["Msg_Content"] = body[118 + 21 * count:118 + 21 * count + length]
    fields["Reserve"] = body[118 + 21 * count + length:]
    return fields


def nul_padded(text: str, size: int) -> bytes:
    """An Octet String field: ASCII, right-padded with 0x00 (§3)."""
    return text.encode("ascii").ljust(size, b"\x00")


class Peer:
    """The struct ISMG's side of one TCP connection, driven step by step by the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sequence = itertools.count(0x100)       # the ISMG's own sequence space (§4)

    async def read_frame(self) -> Frame:
        """The next frame; TimeoutError if none within ``STEP_TIMEOUT``."""
        async with asyncio.timeout(STEP_TIMEOUT):
            total, command, sequence = HEADER.unpack(await self.reader.readexactly(12))
            return Frame(total, command, sequence, await self.reader.readexactly(total - 12))

    async def read_eof(self) -> bytes:
        """Whatever comes until the client closes the socket (b"" if nothing)."""
        async with asyncio.timeout(STEP_TIMEOUT):
            return await self.reader.read()

    def write(self, command_id: int, sequence_id: int, body: bytes = b"") -> None:
        self.writer.write(HEADER.pack(12 + len(body), command_id, sequence_id) + body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class StructIsmg:
    """A listening socket on 127.0.0.1 that hands each accepted connection to the test."""

    def __init__(self) -> None:
        self._accepted: asyncio.Queue[Peer] = asyncio.Queue()
        self._peers: list[Peer] = []
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def __aenter__(self) -> StructIsmg:
        self._server = await asyncio.start_server(self._on_accept, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for peer in self._peers:
            await peer.close()
        await self._server.wait_closed()

    def _on_accept(self, reader, writer) -> None:      # a plain callback: no task per client
        peer = Peer(reader, writer)
        self._peers.append(peer)
        self._accepted.put_nowait(peer)

    async def accept(self) -> Peer:
        async with asyncio.timeout(STEP_TIMEOUT):
            return await self._accepted.get()


class Login(NamedTuple):
    source_addr: bytes
    version: int
    timestamp: int
    status: int


async def answer_connect(peer: Peer, secret: str = SECRET) -> Login:
    """Read CONNECT (§6.1) and check its AuthenticatorSource with hashlib; answer CONNECT_RESP
    (§6.2): Status 0 with MD5(Status + AuthenticatorSource + secret), or Status 3 with 16 zero
    bytes when the authenticator is wrong. Raises AssertionError for a malformed CONNECT."""
    frame = await peer.read_frame()
    assert (frame.total_length, frame.command_id, len(frame.body)) == (39, CONNECT, 27)
    source_addr, authenticator, version, timestamp = CONNECT_BODY.unpack(frame.body)
    key = secret.encode()
    expected = hashlib.md5(source_addr + bytes(9) + key + b"%010d" % timestamp).digest()
    status = 0 if authenticator == expected else 3
    answer = hashlib.md5(bytes([status]) + authenticator + key).digest() if status == 0 \
        else bytes(16)
    peer.write(CONNECT_RESP, frame.sequence_id, CONNECT_RESP_BODY.pack(status, answer, 0x20))
    return Login(source_addr, version, timestamp, status)


LOGIN_TIME = datetime(2024, 3, 5, 8, 5, 10, tzinfo=CHINA)   # Timestamp 0305080510 (§6.1)


def opening(ismg: StructIsmg, secret: str = SECRET, **handlers) -> asyncio.Task:
    """``Connection.open`` to the struct ISMG, as a task the test awaits after the login."""
    host, port = ismg.address
    return asyncio.create_task(Connection.open(host, port, ACCOUNT, secret, timeout=STEP_TIMEOUT,
                                               clock=lambda: LOGIN_TIME, **handlers))


async def logged_in(ismg: StructIsmg, **handlers) -> tuple[Connection, Peer, Login]:
    """Open a connection and log it in, the struct ISMG answering the CONNECT."""
    task = opening(ismg, **handlers)
    peer = await ismg.accept()
    login = await answer_connect(peer)
    return await task, peer, login


async def closed_gracefully(conn: Connection, peer: Peer) -> Frame:
    """``conn.close()``, the struct ISMG answering TERMINATE with TERMINATE_RESP; returns the
    TERMINATE frame. AssertionError unless the connection ends CLOSED and drops the socket."""
    closing = asyncio.create_task(conn.close(timeout=STEP_TIMEOUT))
    terminate = await peer.read_frame()
    peer.write(TERMINATE_RESP, terminate.sequence_id)
    await closing
    assert conn.state is State.CLOSED
    assert await peer.read_eof() == b""
    return terminate


def test_struct_tables_match_the_reference_sizes():
    ends = [offset + struct.calcsize(">" + fmt) for _, offset, fmt in SUBMIT_FIXED]
    assert [offset for _, offset, _ in SUBMIT_FIXED[1:]] == ends[:-1]     # no gap, no overlap
    assert ends[-1] == 117                                                  # §8 fixed part
    assert (CONNECT_BODY.size, CONNECT_RESP_BODY.size, MSG_ID_RESULT.size) == (27, 18, 9)
    assert (DELIVER_FIXED.size, REPORT.size) == (65, 60)                   # §10, §10.1


def test_login_authenticates_both_ways():
    async def scenario():
        events = []
        async with StructIsmg() as ismg:
            conn, peer, login = await logged_in(ismg, on_event=lambda c, e: events.append(e))
            assert login == Login(b"900001", 0x20, 305080510, 0)   # the struct ISMG's MD5 matched
            assert [e for e in events if isinstance(e, ev.LoginSucceeded)] == [
                ev.LoginSucceeded(version=0x20, authenticated=True)]
            assert not any(isinstance(e, ev.AuthenticatorMismatch) for e in events)
            assert conn.is_open
            await closed_gracefully(conn, peer)
    run(scenario)


TEXT = "您好，这是互通测试"
MSG_ID = 0xB2B9DA8000010007         # §13 layout, top bit set: Msg_Id is unsigned


async def submitted(conn: Connection, peer: Peer, submit: cmpp.Submit,
                    msg_id: int = MSG_ID) -> tuple[cmpp.SubmitResp, Frame]:
    """``conn.submit`` answered by the struct ISMG with SUBMIT_RESP(msg_id, Result 0)."""
    task = asyncio.create_task(conn.submit(submit))
    frame = await peer.read_frame()
    assert frame.command_id == SUBMIT
    peer.write(SUBMIT_RESP, frame.sequence_id, MSG_ID_RESULT.pack(msg_id, 0))
    async with asyncio.timeout(STEP_TIMEOUT):
        return await task, frame


def one_submit() -> cmpp.Submit:
    return cmpp.Submit(dest_terminal_ids=(PHONE,), msg_fmt=8, msg_content=TEXT.encode("utf-16-be"),
                       src_id=SRC_ID, service_id="MI0001", msg_src=ACCOUNT)


def test_submit_is_laid_out_byte_by_byte_and_returns_the_ismg_msg_id():
    async def scenario():
        async with StructIsmg() as ismg:
            conn, peer, _ = await logged_in(ismg)
            response, frame = await submitted(conn, peer, one_submit())
            content = TEXT.encode("utf-16-be")
            assert frame.total_length == 138 + 21 * 1 + len(content) == 12 + len(frame.body)
            fields = parse_submit(frame.body)
            assert fields == {
                "Msg_Id": 0, "Pk_total": 1, "Pk_number": 1, "Registered_Delivery": 1,
                "Msg_level": 0, "Service_Id": nul_padded("MI0001", 10), "Fee_UserType": 0,
                "Fee_terminal_Id": bytes(21), "TP_pId": 0, "TP_udhi": 0, "Msg_Fmt": 8,
                "Msg_src": b"900001", "FeeType": b"01", "FeeCode": b"000000",
                "ValId_Time": bytes(17), "At_Time": bytes(17), "Src_Id": nul_padded(SRC_ID, 21),
                "DestUsr_tl": 1, "Dest_terminal_Id": [nul_padded(PHONE, 21)],
                "Msg_Length": len(content), "Msg_Content": content, "Reserve": bytes(8),
            }
            assert (response.msg_id, response.result) == (MSG_ID, 0)
            assert response.sequence_id == frame.sequence_id
            await closed_gracefully(conn, peer)
    run(scenario)


def test_long_mass_submit_carries_pk_fields_udh_and_every_destination():
    phones = (PHONE, "8613900139000")
    text = "长" * 100                                        # 200 bytes of UCS2: two parts
    async def scenario():
        async with StructIsmg() as ismg:
            conn, peer, _ = await logged_in(ismg)
            segments = cmpp.split_text(text, 8, reference=0x5A)
            for number, segment in enumerate(segments, 1):
                submit = cmpp.Submit(dest_terminal_ids=phones, src_id=SRC_ID, msg_src=ACCOUNT,
                                     msg_fmt=segment.msg_fmt, tp_udhi=segment.tp_udhi,
                                     pk_total=segment.pk_total, pk_number=segment.pk_number,
                                     msg_content=segment.msg_content)
                response, frame = await submitted(conn, peer, submit, MSG_ID + number)
                fields = parse_submit(frame.body)
                payload = text[67 * (number - 1):67 * number].encode("utf-16-be")
                assert (fields["Pk_total"], fields["Pk_number"]) == (2, number)
                assert fields["TP_udhi"] == 1
                assert fields["Msg_Content"] == bytes((5, 0, 3, 0x5A, 2, number)) + payload
                assert fields["DestUsr_tl"] == 2
                assert fields["Dest_terminal_Id"] == [nul_padded(p, 21) for p in phones]
                assert fields["Reserve"] == bytes(8)
                assert frame.total_length == 138 + 21 * 2 + fields["Msg_Length"]
                assert response.msg_id == MSG_ID + number
            await closed_gracefully(conn, peer)
    run(scenario)


DELIVER_MSG_ID = 0x0123456789ABCDEF   # the DELIVER's own id, unrelated to the report's


def report_deliver(report_msg_id: int) -> bytes:
    """A status-report DELIVER body (§10, §10.1): 133 bytes, Total_Length 145."""
    report = REPORT.pack(report_msg_id, b"DELIVRD", b"2403050805", b"2403050806",
                         PHONE.encode(), 0xFEDCBA98)
    return DELIVER_FIXED.pack(DELIVER_MSG_ID, SRC_ID.encode(), b"MI0001", 0, 0, 0,
                              PHONE.encode(), 1, len(report)) + report + bytes(8)


def test_report_for_the_submitted_msg_id_arrives_and_deliver_resp_echoes_the_deliver_id():
    async def scenario():
        reports = []

        def on_deliver(conn, event):
            reports.append(event)
            conn.acknowledge_deliver(event.deliver)

        async with StructIsmg() as ismg:
            conn, peer, _ = await logged_in(ismg, on_deliver=on_deliver)
            response, _ = await submitted(conn, peer, one_submit())
            body = report_deliver(response.msg_id)
            assert 12 + len(body) == 145
            sequence = next(peer.sequence)
            peer.write(DELIVER, sequence, body)
            answer = await peer.read_frame()
            assert (answer.total_length, answer.command_id, answer.sequence_id) == (
                21, DELIVER_RESP, sequence)
            assert MSG_ID_RESULT.unpack(answer.body) == (DELIVER_MSG_ID, 0)
            [event] = reports
            assert isinstance(event, ev.ReportReceived)
            assert event.report == cmpp.StatusReport(
                msg_id=MSG_ID, stat="DELIVRD", submit_time="2403050805", done_time="2403050806",
                dest_terminal_id=PHONE, smsc_sequence=0xFEDCBA98)
            assert (event.deliver.msg_id, event.deliver.src_terminal_id) == (DELIVER_MSG_ID, PHONE)
            assert (event.deliver.dest_id, event.deliver.registered_delivery) == (SRC_ID, 1)
            await closed_gracefully(conn, peer)
    run(scenario)


def test_active_test_from_the_ismg_is_answered_with_13_bytes():
    async def scenario():
        async with StructIsmg() as ismg:
            conn, peer, _ = await logged_in(ismg)
            sequence = next(peer.sequence)
            peer.write(ACTIVE_TEST, sequence)
            assert await peer.read_frame() == Frame(13, ACTIVE_TEST_RESP, sequence, b"\x00")
            assert conn.is_open
            await closed_gracefully(conn, peer)
    run(scenario)


def test_close_sends_terminate_and_completes_on_terminate_resp():
    async def scenario():
        events = []
        async with StructIsmg() as ismg:
            conn, peer, _ = await logged_in(ismg, on_event=lambda c, e: events.append(e))
            closing = asyncio.create_task(conn.close(timeout=STEP_TIMEOUT))
            terminate = await peer.read_frame()
            assert terminate[:2] == (12, TERMINATE) and terminate.body == b""
            done, _ = await asyncio.wait({closing}, timeout=0.05)
            assert not done and conn.state is State.TERMINATING       # waits for the answer
            peer.write(TERMINATE_RESP, terminate.sequence_id)
            async with asyncio.timeout(STEP_TIMEOUT):
                await closing
            assert conn.state is State.CLOSED
            assert events[-1] == ev.ConnectionTerminated("terminated", by_peer=False)
            assert await peer.read_eof() == b""                       # and the socket is closed
    run(scenario)


def test_wrong_password_is_refused_with_status_3():
    async def scenario():
        async with StructIsmg() as ismg:
            task = opening(ismg, secret="not-the-secret")
            peer = await ismg.accept()
            login = await answer_connect(peer)
            assert login.status == 3
            with pytest.raises(LoginRefused) as refused:
                await task
            assert (refused.value.status, refused.value.retryable) == (3, False)
            assert await peer.read_eof() == b""                       # the client hung up
    run(scenario)
