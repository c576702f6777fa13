"""The load tool's CMPP client: a lean path for SUBMITs, a real session all the same.

The gateway's ``ChannelPool`` decodes every PDU into an object, runs it through a session
state machine and hands events around: right for a gateway, three quarters of the CPU of a
load tool that must stay cheaper than what it measures. Here each connection (``Link``, an
asyncio Protocol) logs in through the codec's ``Session`` (CONNECT, CONNECT_RESP, the
AuthenticatorISMG check, as the gateway does), and from then on works on bytes: a SUBMIT is
a frame encoded once (``Outgoing``) with its Sequence_Id patched in as it is copied into the
connection's output, and all the SUBMITs one read frees go out in one write. Answers are
read by their header: SUBMIT_RESP's Msg_Id and Result, a DELIVER's Registered_Delivery and,
for a report, its Msg_Id and Stat; each DELIVER is answered (DELIVER_RESP with its Msg_Id),
an ACTIVE_TEST too, a TERMINATE ends the connection. The window of every connection and
the channel's TPS (``TpsLimiter``) hold as in the pool; Result 8 cools the connection
(the pool's backoff) and sends the SUBMIT again, up to the pool's cap. Anything that breaks
the protocol (a length out of range, an unknown Command_Id, an answer to nothing sent)
ends that connection with a message saying what it was; its SUBMITs in flight fail as
``OutcomeUnknown``, and the others go on.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Callable, NamedTuple

import cmpp
from cmpp import events as ev
from cmpp.session import Role, Session, SessionConfig
from gateway.channel import (
    ConnectFailed,
    LoginFailed,
    LoginRefused,
    LoginTimedOut,
    OutcomeUnknown,
    PoolTuning,
    SubmitRejectedError,
    SubmitThrottledError,
    TpsLimiter,
    china_time,
)

HEADER = struct.Struct(">III")           # Total_Length, Command_Id, Sequence_Id
SEQUENCE = struct.Struct(">I")
RESULT = struct.Struct(">QB")            # SUBMIT_RESP: Msg_Id, Result
MSG_ID = struct.Struct(">Q")
SUBMIT_RESP = cmpp.CommandId.SUBMIT_RESP
DELIVER, DELIVER_RESP = cmpp.CommandId.DELIVER, cmpp.CommandId.DELIVER_RESP
ACTIVE_TEST, ACTIVE_TEST_RESP = cmpp.CommandId.ACTIVE_TEST, cmpp.CommandId.ACTIVE_TEST_RESP
TERMINATE, TERMINATE_RESP = cmpp.CommandId.TERMINATE, cmpp.CommandId.TERMINATE_RESP
MAX_LENGTH = SessionConfig().max_length
DELIVER_FIXED = 12 + 8 + 21 + 10 + 3 + 21 + 1 + 1 + 8    # a DELIVER without its Msg_Content
REGISTERED_DELIVERY, MSG_LENGTH, CONTENT = 12 + 63, 12 + 64, 12 + 65   # offsets in a DELIVER
REPORT_SIZES = (60, 71)                  # a status report's Msg_Content (2.0, and 3.0's size)
TUNING = PoolTuning()                    # the pool's Result 8 backoff and cap


class Outgoing(NamedTuple):
    """One SUBMIT as the tool sends it: its frame (Sequence_Id 0, patched at each send), and
    what the report needs of it."""

    frame: bytes
    msg_level: int
    report: bool            # Registered_Delivery 1: a status report is to come
    first: bool             # the first segment of its message

    @classmethod
    def of(cls, submit: cmpp.Submit) -> Outgoing:
        """ValueError (from the codec) for a field that does not fit."""
        return cls(cmpp.encode(submit), submit.msg_level, submit.registered_delivery == 1,
                   submit.pk_number == 1)


class ProtocolBroken(Exception):
    """The center sent something CMPP 2.0 does not allow here: the connection ends."""


# What each SUBMIT in flight carries: (Outgoing, its answered callback, Result 8 so far, the
# loop time it was written). A tuple: made and taken apart once per SUBMIT.
Answered = Callable[[Exception | None], None]


class Link(asyncio.Protocol):
    """One connection of the tool: logged in by a ``Session``, then bytes in, bytes out."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None          # while logging in
        self.logged_in = self.loop.create_future()
        self.closed = self.loop.create_future()      # the reason it ended
        self.buffer = bytearray()
        self.out = bytearray()
        self.pending: dict[int, tuple] = {}          # Sequence_Id -> SUBMIT in flight
        self.sequence = 1
        self.free = client.window
        self.cooling_until = 0.0
        self.throttled_in_a_row = 0

    # Logging in.

    async def login(self, host: str, port: int, account: str, secret: str,
                    timeout: float) -> None:
        """Connect and log in through the codec's session. Raises ``ConnectFailed``,
        ``LoginTimedOut`` or ``LoginRefused`` as the gateway's connections do."""
        loop = self.loop
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, host, port), timeout)
        except asyncio.TimeoutError:
            raise LoginTimedOut(f"no TCP connection to {host}:{port} in {timeout:g} s") from None
        except OSError as error:
            raise ConnectFailed(host, port, error) from None
        self.session = Session(Role.CLIENT, SessionConfig(window=self.client.window),
                               now=loop.time())
        self.session.login(account, secret, cmpp.timestamp(china_time()), loop.time())
        self.transport.write(self.session.data_to_send())
        try:
            await asyncio.wait_for(asyncio.shield(self.logged_in),
                                   max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            self.abort("no CONNECT_RESP")
            raise LoginTimedOut(f"no CONNECT_RESP from {host}:{port} in {timeout:g} s") \
                from None
        except BaseException:
            self.abort("no login")
            raise

    def _login_data(self) -> None:
        """The CONNECT_RESP, once whole, through the session; what follows it is read as
        usual."""
        buffer = self.buffer
        if len(buffer) < 4 or len(buffer) < (size := SEQUENCE.unpack_from(buffer)[0]):
            return
        session, self.session = self.session, None
        session.receive_data(bytes(buffer[:size]), self.loop.time())
        del buffer[:size]
        self.transport.write(session.data_to_send())
        while (event := session.next_event()) is not None:
            self._login_event(event)
        if not self.logged_in.done():
            self.logged_in.set_exception(LoginFailed(f"no login: {session.state.value}"))
        if buffer and self.transport is not None and not self.transport.is_closing():
            self.data_received(b"")

    def _login_event(self, event: ev.Event) -> None:
        self.client.recorder.on_event(self, event)
        if type(event) is ev.LoginSucceeded and not self.logged_in.done():
            self.logged_in.set_result(None)
        elif type(event) is ev.LoginRejected and not self.logged_in.done():
            self.logged_in.set_exception(LoginRefused(event.status, event.reason,
                                                      event.retryable))
        elif type(event) is ev.ConnectionTerminated and not self.logged_in.done():
            self.logged_in.set_exception(LoginFailed(event.reason))

    # The connection.

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, error: Exception | None) -> None:
        self._end(f"connection lost: {error}" if error else "connection closed by the center")
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.session is not None:
            self._login_data()
            return
        try:
            self._read()
        except ProtocolBroken as error:
            self.abort(f"protocol error: {error}")
            return
        self.client.fill()

    def _read(self) -> None:
        """Every whole PDU in the buffer; ProtocolBroken for one the protocol does not allow."""
        buffer, pending, answered = self.buffer, self.pending, self.client.answered
        now, at, end = self.loop.time(), 0, len(self.buffer)
        try:
            while end - at >= 12:
                size, command, sequence = HEADER.unpack_from(buffer, at)
                if not 12 <= size <= MAX_LENGTH:
                    raise ProtocolBroken(f"Total_Length {size} is outside 12..{MAX_LENGTH}")
                if end - at < size:
                    break
                if command == SUBMIT_RESP and size == 21:
                    entry = pending.pop(sequence, None)
                    if entry is None:
                        raise ProtocolBroken(f"SUBMIT_RESP to Sequence_Id {sequence}, "
                                             "which is not waiting for one")
                    self.free += 1
                    answered(self, entry, *RESULT.unpack_from(buffer, at + 12), now)
                else:
                    self._other(command, sequence, buffer, at, size)
                at += size
        finally:
            del buffer[:at]
        self.flush()

    def _other(self, command: int, sequence: int, buffer: bytearray, at: int,
               size: int) -> None:
        if command == DELIVER:
            self._deliver(sequence, buffer, at, size)
        elif command == ACTIVE_TEST and size == 12:
            self.out += HEADER.pack(13, ACTIVE_TEST_RESP, sequence) + b"\0"
        elif command == TERMINATE and size == 12:
            self.out += HEADER.pack(12, TERMINATE_RESP, sequence)
            self.flush()
            self.abort("terminated by the center")
        elif command == TERMINATE_RESP:
            self.abort("closed")
        elif command != ACTIVE_TEST_RESP:
            raise ProtocolBroken(f"Command_Id 0x{command:08x} of {size} bytes is not a PDU a "
                                 "CMPP 2.0 client takes here")

    def _deliver(self, sequence: int, buffer: bytearray, at: int, size: int) -> None:
        """Answer the DELIVER; count a report (Msg_Id, Stat) or an MO."""
        length = buffer[at + MSG_LENGTH] if size > MSG_LENGTH else -1
        if size != DELIVER_FIXED + length:
            raise ProtocolBroken(f"a DELIVER of {size} bytes with Msg_Length {length}")
        recorder = self.client.recorder
        if buffer[at + REGISTERED_DELIVERY] == 1:
            if length not in REPORT_SIZES:
                raise ProtocolBroken(f"a status report is 60 or 71 bytes, not {length}")
            stat = bytes(buffer[at + CONTENT + 8:at + CONTENT + 15]).split(b"\0", 1)[0]
            if not stat.isascii():
                raise ProtocolBroken("a status report's Stat is not ASCII")
            recorder.report(MSG_ID.unpack_from(buffer, at + CONTENT)[0], stat.decode())
        else:
            recorder.mo_received()
        self.out += HEADER.pack(21, DELIVER_RESP, sequence)
        self.out += buffer[at + 12:at + 20]
        self.out += b"\0"

    # Sending.

    def send(self, outgoing: Outgoing, answered: Answered, throttled: int, now: float) -> None:
        """Put a SUBMIT in the output under the next Sequence_Id (``flush`` writes it)."""
        self.sequence = sequence = self.sequence % 0xFFFFFFFF + 1
        out = self.out
        out += outgoing.frame
        SEQUENCE.pack_into(out, len(out) - len(outgoing.frame) + 8, sequence)
        self.pending[sequence] = (outgoing, answered, throttled, now)
        self.free -= 1

    def flush(self) -> None:
        """Write what is in the output, in one write (a new buffer: the transport may keep a
        view of the one it was given)."""
        if self.out and self.transport is not None and not self.closed.done():
            self.transport.write(self.out)
            self.out = bytearray()

    # Ending.

    def abort(self, reason: str) -> None:
        """End the connection now, saying why."""
        self._end(reason)
        if self.transport is not None:
            self.transport.abort()

    async def terminate(self, timeout: float) -> None:
        """TERMINATE, and the connection closed on TERMINATE_RESP or after ``timeout``."""
        if self.transport is None or self.closed.done():
            return
        self.sequence = self.sequence % 0xFFFFFFFF + 1
        self.out += HEADER.pack(12, TERMINATE, self.sequence)
        self.flush()
        self.client.terminating.add(self)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            self.abort("closed")

    def _end(self, reason: str) -> None:
        """Once: the connection is out of the pool, its SUBMITs in flight fail."""
        if self.closed.done():
            return
        self.closed.set_result(reason)
        if not self.logged_in.done():
            self.logged_in.set_exception(LoginFailed(reason))
            self.logged_in.exception()          # read: a failed login is reported elsewhere
        self.client.lost(self, reason)
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            entry[1](OutcomeUnknown(reason))


class Client:
    """The tool's connections to one account: their windows, the TPS, Result 8 resends.

    ``fill`` sends SUBMITs taken from ``take`` (a callable giving the next (Outgoing,
    answered) or None) while a connection has window free, is not cooling after a Result 8
    and the TPS allows; it runs again whenever that changes."""

    def __init__(self, channel, recorder, take: Callable[[], tuple | None] | None = None,
                 on_all_lost: Callable[[], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.channel, self.recorder = channel, recorder
        self.take, self.on_all_lost = take, on_all_lost
        self.window = channel.window
        self.limiter = TpsLimiter(channel.tps) if channel.tps else None
        self.links = [Link(self) for _ in range(channel.connections)]
        self.open: list[Link] = []
        self.resends: deque[tuple] = deque()     # (Outgoing, answered, Result 8 so far)
        self.terminating: set[Link] = set()
        self._wake: asyncio.TimerHandle | None = None

    async def log_in(self, link: Link) -> None:
        channel = self.channel
        await link.login(channel.host, channel.port, channel.account, channel.password,
                         channel.connect_timeout)
        if not link.closed.done():
            self.open.append(link)

    def fill(self) -> None:
        """Send what the windows, the TPS and the cooling allow (see the class)."""
        take, resends, limiter = self.take, self.resends, self.limiter
        if take is None:
            return
        now = self.loop.time()
        for link in self.open:
            if link.cooling_until > now:
                self.wake_at(link.cooling_until)
                continue
            while link.free:
                if resends:
                    outgoing, answered, throttled = resends.popleft()
                else:
                    got = take()
                    if got is None:
                        link.flush()
                        return
                    (outgoing, answered), throttled = got, 0
                if limiter is not None and (turn := limiter.try_pass(now)) is not None:
                    resends.appendleft((outgoing, answered, throttled))
                    self.wake_at(turn)
                    link.flush()
                    return
                link.send(outgoing, answered, throttled, now)
            link.flush()

    def answered(self, link: Link, entry: tuple, msg_id: int, result: int, now: float) -> None:
        """A SUBMIT_RESP: counted; Result 8 cools the connection and the SUBMIT goes again
        (up to the pool's cap), any other Result is the SUBMIT's outcome."""
        outgoing, answered, throttled, sent = entry
        self.recorder.submit_resp(outgoing, result, msg_id, now - sent)
        if not result:
            link.throttled_in_a_row = 0
            answered(None)
        elif result == 8:
            link.cooling_until = now + TUNING.throttle.delay(link.throttled_in_a_row)
            link.throttled_in_a_row += 1
            if throttled >= TUNING.max_throttled_sends:
                answered(SubmitThrottledError())
            else:
                self.resends.append((outgoing, answered, throttled + 1))
        else:
            answered(SubmitRejectedError(result))

    def wake_at(self, when: float) -> None:
        """``fill`` again at loop time ``when`` (one timer at a time, the earliest)."""
        wake = self._wake
        if wake is not None and not wake.cancelled() and wake.when() <= when:
            return
        if wake is not None:
            wake.cancel()
        self._wake = self.loop.call_at(when, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.fill()

    def lost(self, link: Link, reason: str) -> None:
        """A connection ended: out of the pool; a run with none left cannot go on."""
        if link in self.open:
            self.open.remove(link)
            if link not in self.terminating:
                self.recorder.connection_ended(reason)
            if not self.open and self.on_all_lost is not None:
                self.on_all_lost()

    async def close(self, timeout: float) -> None:
        """Nothing more is sent; every connection ends with TERMINATE (``timeout`` for the
        answers)."""
        self.take = None
        if self._wake is not None:
            self._wake.cancel()
        await asyncio.gather(*(link.terminate(timeout) for link in list(self.open)))
        for link in self.links:
            if link.transport is not None:
                link.abort("closed")
