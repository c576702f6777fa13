"""The simulator's side of one TCP connection: a server session over asyncio, the faults that
act on its bytes (garbage, an oversized frame, a dropped connection, ACTIVE_TEST_RESP cut or
left out), and every session event handed to its ``Simulator``."""

from __future__ import annotations

import asyncio
import itertools
import struct

import cmpp
from cmpp import events as ev
from cmpp.pdus import CommandId
from cmpp.session import Session
from cmpp.states import Role, State
from gateway.channel import SessionProtocol


# Read for every SUBMIT answered: a module global is read faster than an enum member.
_ESTABLISHED, _TERMINATING = State.ESTABLISHED, State.TERMINATING


class IsmgConnection(SessionProtocol):
    """The server side of one TCP connection: the session, the faults that act on the bytes,
    and every session event handed to the simulator (``Simulator.on_event``)."""

    ids = itertools.count(1)

    def __init__(self, sim) -> None:
        super().__init__(Session(Role.SERVER, sim.session_config(),
                                 now=asyncio.get_running_loop().time()),
                         name=f"ismg-{next(self.ids)}")
        self.sim = sim
        self.id = int(self.name.split("-")[1])
        self.account: str | None = None
        self._faulted = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self.sim._connections.add(self)
        self._rearm_timer()

    def data_received(self, data: bytes) -> None:
        if self._drops_now(data):
            return
        self.session.receive_data(data, self._loop.time())
        self._process_events()
        self.sim.after_read()           # reports due at once join this read's answers
        self._flush()
        self._inject_after_pdus()

    def _drops_now(self, data: bytes) -> bool:
        """``disconnect_after``: a center that fails as it reads, so the PDUs of the read that
        brought the Nth are taken in (and recorded) but never answered: a peer always has
        something in flight when the connection goes, however sparsely it sends."""
        after = self.sim.config.faults.disconnect_after
        if after is None or self._faulted or self._transport is None:
            return False
        self.session.receive_data(data, self._loop.time())
        self._process_events()
        if self.session.pdus_received >= after:
            self._faulted = True
            self._transport.abort()
        else:
            self._flush()
            self._inject_after_pdus()
        return True

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.sim._connections.discard(self)

    def _flush(self) -> None:
        faults = self.sim.config.faults
        if faults.short_active_test_resp or faults.ignore_active_test:
            self._flush_scheduled = False
            data = _tap_active_test_resp(self.session.data_to_send(), faults)
            if data and self._transport is not None and not self._transport.is_closing():
                self._transport.write(data)
            if self.session.state is State.CLOSED and self._transport is not None:
                self._transport.close()
            return
        super()._flush()

    def _inject_after_pdus(self) -> None:
        faults, count = self.sim.config.faults, self.session.pdus_received
        if self._transport is None or self._transport.is_closing() or self._faulted:
            return
        if faults.garbage_after is not None and count >= faults.garbage_after:
            self._faulted = True
            self._transport.write(b"GARBAGE!" * 4)
        elif faults.oversized_after is not None and count >= faults.oversized_after:
            self._faulted = True
            self._transport.write(struct.pack(">III", 1 << 20, CommandId.SUBMIT_RESP, 1))

    def send(self, deliver: cmpp.Deliver) -> cmpp.Deliver:
        sent = self.session.deliver(deliver, self._loop.time())
        self._after_session_call(flush_now=False)
        return sent

    def respond(self, response: cmpp.Pdu) -> None:
        state = self.session.state
        if state is _ESTABLISHED or state is _TERMINATING:
            self.session.respond(response)
            self._after_session_call(flush_now=False)

    def _handle_event(self, event: ev.Event) -> None:
        self.sim.on_event(self, event)


def _tap_active_test_resp(data: bytes, faults) -> bytes:
    """Rewrite outgoing ACTIVE_TEST_RESPs: drop them, or cut them to the 12-byte header."""
    out, at = [], 0
    while at + 12 <= len(data):
        length, command_id, sequence_id = struct.unpack_from(">III", data, at)
        frame = data[at:at + length]
        at += length
        if command_id == CommandId.ACTIVE_TEST_RESP:
            if faults.ignore_active_test:
                continue
            frame = struct.pack(">III", 12, command_id, sequence_id)
        out.append(frame)
    return b"".join(out) + data[at:]
