"""One CMPP connection as a sans-IO state machine, in the client (SP) or server (ISMG) role.

Bytes come in through ``receive_data(data, now)``, commands through ``login``, ``submit``,
``acknowledge_deliver``, ``active_test``, ``terminate`` (and, as a server, ``accept_login``,
``deliver``, ``respond``); time passes through ``handle_timer(now)``. The session answers with
``data_to_send()``, ``next_event()`` and ``get_timer()``. Time is seconds on any monotonic clock
the caller likes; nothing here reads a clock.

This module holds ``Session`` (its states, commands, input and PDU handlers) and
``SessionConfig``. The requests it waits on, the window and the spec's T/N/C timers are kept
by ``outstanding.Outstanding``, a base class of ``Session``. ``SessionError`` and
``WindowFull`` come from ``errors`` and are offered here too.

A peer that breaks the rules ends this session (TERMINATE, then ``ConnectionTerminated``); no
exception escapes from ``receive_data`` or ``handle_timer``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from . import events as ev
from .auth import authenticator_ismg, authenticator_source
from .codec import FrameDecoder, encode, encode_deliver_resp, encode_submit_resp
from .errors import CodecError, SessionError, WindowFull
from .pdus import (
    ActiveTest,
    ActiveTestResp,
    Cancel,
    CancelResp,
    CommandId,
    Connect,
    ConnectResp,
    ConnectStatus,
    Deliver,
    DeliverResp,
    Pdu,
    Query,
    QueryResp,
    Submit,
    SubmitResp,
    SubmitResult,
    Terminate,
    TerminateResp,
    VERSION_2_0,
)
from .outstanding import Outstanding, Waiting
from .states import ACCEPTS, TRANSITIONS, Role, State

__all__ = ["Role", "Session", "SessionConfig", "SessionError", "State", "WindowFull"]


@dataclass(frozen=True)
class SessionConfig:
    """The spec's parameters (§16) and the tolerances of this implementation."""

    window: int = 16                  # W: requests waiting for responses at once
    response_timeout: float = 60.0    # T
    max_sends: int = 3                # N: sends of one request in all
    heartbeat_interval: float = 180.0  # C: idle time before an ACTIVE_TEST
    login_timeout: float = 60.0       # CONNECT -> CONNECT_RESP (client), TCP -> CONNECT (server)
    max_length: int = 4096            # largest Total_Length accepted
    refuse_bad_authenticator: bool = False   # else a mismatch is reported and tolerated
    version: int = VERSION_2_0

    def __post_init__(self) -> None:
        if self.window < 1 or self.max_sends < 1:
            raise ValueError("window and max_sends must be at least 1")
        if min(self.response_timeout, self.heartbeat_interval, self.login_timeout) <= 0:
            raise ValueError("timeouts must be positive")


# Enum members read for every PDU: a module global is read several times faster than an
# enum class's attribute (Python 3.11 reads a member through a descriptor).
_ESTABLISHED, _CLOSED, _TERMINATING = State.ESTABLISHED, State.CLOSED, State.TERMINATING
_CLIENT, _SERVER = Role.CLIENT, Role.SERVER
_STRUCTURE_ERROR = 1


class Session(Outstanding):
    """The CMPP 2.0 protocol for one connection; see the module docstring."""

    def __init__(self, role: Role = Role.CLIENT, config: SessionConfig | None = None,
                 first_sequence: int = 1, now: float = 0.0) -> None:
        self.role = role
        self.config = config or SessionConfig()
        self.state = State.IDLE
        self._decoder = FrameDecoder(self.config.max_length)
        self._out: list[bytes] = []
        self._events: deque[ev.Event] = deque()
        self._sequence = first_sequence
        self._waiting: dict[int, Waiting] = {}     # in deadline order
        # How many more requests may be sent before the window is full (an attribute, not a
        # property: a pool reads it for every connection at every SUBMIT).
        self.window_free = self.config.window
        self._probes = 0          # requests waiting outside the window (ACTIVE_TEST)
        self._last_received = now
        self._login_deadline: float | None = now + self.config.login_timeout \
            if role is Role.SERVER else None
        self._terminate_deadline: float | None = None
        self._login: tuple[int, bytes, bytes] | None = None  # seq, AuthenticatorSource, secret
        self._pending_connect: Connect | None = None
        self._accepts = ACCEPTS[(role, self.state)]
        self.pdus_received = 0        # whole PDUs decoded from the peer, good or bad

    # ------------------------------------------------------------------------- outputs

    def data_to_send(self) -> bytes:
        """The bytes to write to the transport now (b"" when there are none)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def next_event(self) -> ev.Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The time at which ``handle_timer`` must be called next, or None."""
        if self.state is _CLOSED:
            return None
        due = next(iter(self._waiting.values())).deadline if self._waiting else None
        for other in (self._login_deadline, self._terminate_deadline, self._heartbeat_due_at()):
            if other is not None and (due is None or other < due):
                due = other
        return due

    @property
    def in_window(self) -> int:
        """Requests sent and waiting for a response."""
        return self.config.window - self.window_free

    # ------------------------------------------------------------------------- commands

    def login(self, source_addr: str, secret: str | bytes, timestamp: int, now: float) -> None:
        """Client: send CONNECT with the AuthenticatorSource for ``timestamp`` (MMDDHHMMSS).

        Raises SessionError unless the session is new, ValueError for a bad Source_Addr."""
        self._require(Role.CLIENT, State.IDLE, "login")
        source = authenticator_source(source_addr, secret, timestamp)
        seq = self._next_sequence()
        self._write(Connect(seq, source_addr, source, self.config.version, timestamp))
        self._login = (seq, source, secret if isinstance(secret, bytes) else secret.encode())
        self._login_deadline = now + self.config.login_timeout
        self._move("send CONNECT")

    def submit(self, submit: Submit, now: float, max_sends: int | None = None) -> Submit:
        """Client: send a SUBMIT under the next Sequence_Id; returns it as sent.

        ``max_sends`` (1..N) caps its sends on this link below N, for a SUBMIT whose earlier
        sends on other links went unanswered: N stays the bound across links. Raises
        WindowFull when ``window`` requests are waiting, SessionError outside the established
        state, ValueError when a field does not fit or ``max_sends`` is out of range (nothing
        is sent then)."""
        if self.state is not _ESTABLISHED or self.role is not _CLIENT:
            self._require(Role.CLIENT, State.ESTABLISHED, "submit")
        limit = self.config.max_sends
        if max_sends is not None:
            if not 1 <= max_sends <= limit:
                raise ValueError(f"max_sends must be 1..{limit}, not {max_sends}")
            limit = max_sends
        return self._send_request(submit, now, limit=limit)

    def request(self, request: Query | Cancel, now: float) -> Query | Cancel:
        """Client: send a QUERY or CANCEL (windowed like a SUBMIT); returns it as sent."""
        self._require(Role.CLIENT, State.ESTABLISHED, "request")
        return self._send_request(request, now)

    def deliver(self, deliver: Deliver, now: float) -> Deliver:
        """Server: send a DELIVER (MO or status report); returns it as sent."""
        if self.state is not _ESTABLISHED or self.role is not _SERVER:
            self._require(Role.SERVER, State.ESTABLISHED, "deliver")
        return self._send_request(deliver, now)

    def acknowledge_deliver(self, deliver: Deliver, result: int = 0) -> bool:
        """Client: answer a DELIVER (echoing its own Msg_Id). Call it once what the DELIVER
        carried is safe. False when the session is already closed: the ISMG will send the
        DELIVER again on another connection."""
        if self.state is _CLOSED:
            return False
        self._out.append(encode_deliver_resp(deliver.sequence_id, deliver.msg_id, result))
        return True

    def active_test(self, now: float) -> None:
        """Send an ACTIVE_TEST now (it follows the T/N rule like any request)."""
        if self.state is not State.ESTABLISHED:
            raise SessionError(f"active_test needs an established session, not {self.state.value}")
        self._send_request(ActiveTest(), now, windowed=False)

    def terminate(self, now: float) -> None:
        """Send TERMINATE; the session closes on TERMINATE_RESP or after T without one.
        Requests still waiting may be answered meanwhile. Before login, it just closes."""
        if self.state in (State.IDLE, State.LOGGING_IN):
            self._close("closed before login")
        elif self.state is State.ESTABLISHED:
            self._write(Terminate(self._next_sequence()))
            self._terminate_deadline = now + self.config.response_timeout
            self._move("send TERMINATE")

    def accept_login(self, status: int, secret: str | bytes | None, now: float) -> None:
        """Server: answer the CONNECT reported by ``LoginRequested``. Status 0 with the
        account's secret logs the client in; any other status refuses it and closes."""
        self._require(Role.SERVER, State.LOGGING_IN, "accept_login")
        connect = self._pending_connect
        authenticator = bytes(16)
        if status == ConnectStatus.OK and secret is not None:
            authenticator = authenticator_ismg(status, connect.authenticator_source, secret)
        self._write(ConnectResp(connect.sequence_id, status, authenticator, self.config.version))
        self._login_deadline = None
        self._last_received = now
        if status == ConnectStatus.OK:
            self._move("login accepted")
            self._events.append(ev.LoginSucceeded(connect.version))
        else:
            self._close(f"login refused with status {status}", transition="login refused")

    def respond(self, response: Pdu) -> None:
        """Server: send the response to a request that a peer sent (SUBMIT_RESP, ...)."""
        if self.role is not _SERVER or (self.state is not _ESTABLISHED
                                        and self.state is not _TERMINATING):
            raise SessionError(f"respond needs an established server session, not {self.state.value}")
        if type(response) is SubmitResp:      # the answer to every SUBMIT: one struct call
            values = response.__dict__
            self._out.append(encode_submit_resp(values["sequence_id"], values["msg_id"],
                                                values["result"]))
        else:
            self._write(response)

    def connection_lost(self, reason: str = "connection lost") -> None:
        """The transport is gone: end the session. The ``ConnectionTerminated`` event lists
        the requests that were still waiting for a response."""
        if self.state is not State.CLOSED:
            self._close(reason)

    # ------------------------------------------------------------------------- input

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes from the transport. Never raises; problems become events."""
        if self.state is _CLOSED:
            return
        self._last_received = now
        while self.state is not _CLOSED:
            try:
                pdus = self._decoder.feed(data)
            except CodecError as error:
                self.pdus_received += 1
                self._on_codec_error(error)
                data = b""
                continue
            if not pdus:
                return
            self.pdus_received += len(pdus)
            for pdu in pdus:
                self._dispatch(pdu, now)
                if self.state is _CLOSED:
                    return
            data = b""

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed by ``now``. Never raises."""
        if self.state is State.CLOSED:
            return
        if self._login_deadline is not None and now >= self._login_deadline:
            self._close("login timed out")
            return
        if self._terminate_deadline is not None and now >= self._terminate_deadline:
            self._close("no TERMINATE_RESP", transition="link lost")
            return
        self._expire_requests(now)
        due = self._heartbeat_due_at()
        if due is not None and now >= due:
            self._send_request(ActiveTest(), now, windowed=False)

    # ------------------------------------------------------------------------- internals

    def _require(self, role: Role, state: State, command: str) -> None:
        if self.role is not role:
            raise SessionError(f"{command} is for the {role.value} role")
        if self.state is not state:
            raise SessionError(f"{command} needs state {state.value}, not {self.state.value}")

    def _move(self, trigger: str) -> None:
        next_state = TRANSITIONS.get((self.role, self.state, trigger))
        if next_state is None:
            raise SessionError(f"no transition for {trigger!r} in state {self.state.value}")
        self.state = next_state
        self._accepts = ACCEPTS.get((self.role, next_state), frozenset())

    def _write(self, pdu: Pdu) -> None:
        self._out.append(encode(pdu))

    def _close(self, reason: str, by_peer: bool = False, transition: str = "link lost") -> None:
        if (self.role, self.state, transition) in TRANSITIONS:
            self._move(transition)
        else:
            self.state = State.CLOSED
            self._accepts = frozenset()
        unanswered = [w for w in self._waiting.values() if w.windowed]
        self._waiting.clear()
        self.window_free, self._probes = self.config.window, 0
        self._login_deadline = self._terminate_deadline = None
        self._events.append(ev.ConnectionTerminated(reason, by_peer,
                                                    tuple(w.pdu for w in unanswered),
                                                    tuple(w.sends for w in unanswered)))

    def _protocol_error(self, reason: str) -> None:
        self._out.append(encode(Terminate(self._next_sequence())))
        self._close(f"protocol error: {reason}")

    def _on_codec_error(self, error: CodecError) -> None:
        self._events.append(ev.MalformedPduReceived(error, error.frame))
        command = error.command_id
        if error.fatal or command is None or error.frame is None:
            self._protocol_error(f"undecodable bytes ({error.reason})")
        elif command & 0x80000000:
            return           # a bad response: its request stays waiting and follows T/N
        elif command == CommandId.DELIVER and self.role is Role.CLIENT:
            frame = error.frame
            msg_id = int.from_bytes(frame[12:20], "big") if len(frame) >= 20 else 0
            self._write(DeliverResp(error.sequence_id, msg_id, _STRUCTURE_ERROR))
        elif command == CommandId.SUBMIT and self.role is Role.SERVER:
            self._write(SubmitResp(error.sequence_id, 0, SubmitResult.MESSAGE_STRUCTURE_ERROR))
        else:
            self._protocol_error(error.reason)

    def _dispatch(self, pdu: Pdu, now: float) -> None:
        kind = type(pdu)
        if kind not in self._accepts:
            if pdu.is_response:
                self._events.append(ev.UnexpectedResponse(pdu))
            else:
                self._protocol_error(f"{CommandId(pdu.command_id).name} is not allowed "
                                     f"while {self.state.value} as {self.role.value}")
            return
        _HANDLERS[kind](self, pdu, now)

    # Handlers of PDUs a peer may send (see states.ACCEPTS).

    def _on_connect(self, pdu: Connect, now: float) -> None:
        self._pending_connect = pdu
        self._move("receive CONNECT")
        self._events.append(ev.LoginRequested(pdu))

    def _on_connect_resp(self, pdu: ConnectResp, now: float) -> None:
        seq, source, secret = self._login
        if pdu.sequence_id != seq:
            self._events.append(ev.UnexpectedResponse(pdu))
            return
        self._login_deadline = None
        if pdu.status != ConnectStatus.OK:
            reason = _connect_status_name(pdu.status)
            self._events.append(ev.LoginRejected(pdu.status, reason))
            self._close(f"login rejected: {reason}", transition="login refused")
            return
        expected = authenticator_ismg(pdu.status, source, secret)
        authentic = pdu.authenticator_ismg == expected
        if not authentic:
            self._events.append(ev.AuthenticatorMismatch(expected, pdu.authenticator_ismg))
            if self.config.refuse_bad_authenticator:
                self._events.append(ev.LoginRejected(None, "AuthenticatorISMG mismatch"))
                self._out.append(encode(Terminate(self._next_sequence())))
                self._close("login refused: AuthenticatorISMG mismatch", transition="login refused")
                return
        self._move("login accepted")
        self._last_received = now
        self._events.append(ev.LoginSucceeded(pdu.version, authentic))

    def _on_deliver(self, pdu: Deliver, now: float) -> None:
        if pdu.report is not None:
            self._events.append(ev.ReportReceived(pdu, pdu.report))
        else:
            self._events.append(ev.MessageReceived(pdu))

    def _on_submit(self, pdu: Submit, now: float) -> None:
        self._events.append(ev.SubmitReceived(pdu))

    def _on_request(self, pdu: Query | Cancel, now: float) -> None:
        self._events.append(ev.RequestReceived(pdu))

    def _on_active_test(self, pdu: ActiveTest, now: float) -> None:
        self._write(ActiveTestResp(pdu.sequence_id))

    def _on_terminate(self, pdu: Terminate, now: float) -> None:
        self._write(TerminateResp(pdu.sequence_id))
        self._close("terminated by peer", by_peer=True, transition="receive TERMINATE")

    def _on_terminate_resp(self, pdu: TerminateResp, now: float) -> None:
        self._close("terminated", transition="receive TERMINATE_RESP")


def _connect_status_name(status: int) -> str:
    try:
        return f"status {status} ({ConnectStatus(status).name.lower().replace('_', ' ')})"
    except ValueError:
        return f"status {status} (other error)"


_HANDLERS = {
    Connect: Session._on_connect,
    ConnectResp: Session._on_connect_resp,
    SubmitResp: Session._on_response,
    DeliverResp: Session._on_response,
    ActiveTestResp: Session._on_response,
    QueryResp: Session._on_response,
    CancelResp: Session._on_response,
    Deliver: Session._on_deliver,
    Submit: Session._on_submit,
    Query: Session._on_request,
    Cancel: Session._on_request,
    ActiveTest: Session._on_active_test,
    Terminate: Session._on_terminate,
    TerminateResp: Session._on_terminate_resp,
}
