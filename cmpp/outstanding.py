"""The requests a CMPP session has sent and still waits on: sequence numbers, the window, and
the spec's T/N/C timers.

The spec's timers (reference §16): a request unanswered after T is sent again, N sends in all,
then the link is declared dead. After C without receiving anything, an ACTIVE_TEST is sent,
and it follows the same T/N rule. At most ``window`` SUBMIT, DELIVER, QUERY and CANCEL requests
wait for responses at once; credit comes back on the response or on the final timeout.

``Outstanding`` is the part of ``session.Session`` that keeps this record (a base class of it,
with no state of its own: it works on the session's ``_waiting``, ``window_free``, ``_probes``
and ``_sequence``). Sending a request into a full window raises ``WindowFull``; a response
that answers no request waiting becomes an ``UnexpectedResponse`` event; a request that had
all its sends ends the session (``ConnectionTerminated``). Time is passed in; nothing here
reads a clock.
"""

from __future__ import annotations

from . import events as ev
from .codec import encode
from .errors import WindowFull
from .pdus import (
    ActiveTest,
    ActiveTestResp,
    Cancel,
    CommandId,
    Deliver,
    DeliverResp,
    Pdu,
    Query,
    Submit,
    SubmitResp,
    SubmitResult,
)
from .states import State


class Waiting:
    """A request sent and not answered yet: its sends so far on this link, and how many it may
    have here (N, or fewer for a SUBMIT that went unanswered on another link before)."""

    __slots__ = ("pdu", "frame", "sends", "limit", "deadline", "first_sent", "windowed")

    def __init__(self, pdu: Pdu, frame: bytes, now: float, timeout: float, windowed: bool,
                 limit: int):
        self.pdu, self.frame, self.sends, self.limit = pdu, frame, 1, limit
        self.first_sent, self.deadline, self.windowed = now, now + timeout, windowed


# Read for every PDU: a module global is read several times faster than an enum class's
# attribute (Python 3.11 reads a member through a descriptor).
_ESTABLISHED = State.ESTABLISHED
_OK, _FLOW_CONTROL = SubmitResult.OK, SubmitResult.FLOW_CONTROL
# Responses to requests we sent, by the request class they answer.
_ANSWERS = {SubmitResp: Submit, DeliverResp: Deliver, ActiveTestResp: ActiveTest}


class Outstanding:
    """The requests a ``Session`` waits on; see the module docstring."""

    def _next_sequence(self) -> int:
        seq = self._sequence
        while True:
            self._sequence = seq + 1 if seq < 0xFFFFFFFF else 1
            if seq not in self._waiting:
                return seq
            seq = self._sequence

    def _send_request(self, pdu: Pdu, now: float, windowed: bool = True,
                      limit: int | None = None) -> Pdu:
        if windowed and self.window_free <= 0:
            raise WindowFull(f"{self.in_window} requests wait for responses")
        seq = self._next_sequence()
        pdu = pdu.with_sequence(seq)
        frame = encode(pdu)
        self._waiting[seq] = Waiting(pdu, frame, now, self.config.response_timeout, windowed,
                                     limit or self.config.max_sends)
        self.window_free -= windowed
        self._probes += not windowed
        self._out.append(frame)
        return pdu

    def _heartbeat_due_at(self) -> float | None:
        if self.state is not _ESTABLISHED or self._probes:
            return None           # not logged in, or an ACTIVE_TEST is already on its way
        return self._last_received + self.config.heartbeat_interval

    def _expire_requests(self, now: float) -> None:
        """Requests unanswered for T are sent again; once one has had all its sends, the link
        is declared dead, and every request whose T has run out times out with it (each gets
        its ``RequestTimedOut``); the others are listed as unanswered in the termination."""
        waiting = self._waiting
        due = []
        for seq, request in waiting.items():          # in deadline order
            if request.deadline > now:
                break
            due.append(seq)
        if not due:
            return
        spent = next((waiting[seq] for seq in due if waiting[seq].sends >= waiting[seq].limit),
                     None)
        for seq in due:
            request = waiting.pop(seq)
            if spent is None:
                request.sends += 1
                request.deadline = now + self.config.response_timeout
                waiting[seq] = request                 # to the back: deadline order
                self._out.append(request.frame)
                self._events.append(ev.RequestResent(request.pdu, request.sends))
                continue
            self.window_free += request.windowed
            self._probes -= not request.windowed
            self._events.append(ev.RequestTimedOut(request.pdu, request.sends))
        if spent is not None:
            name = CommandId(spent.pdu.command_id).name
            self._close(f"no response to {name} after {spent.sends} sends")

    def _on_response(self, pdu: Pdu, now: float) -> None:
        waiting = self._waiting.get(pdu.sequence_id)
        expected = _ANSWERS.get(type(pdu))
        if waiting is None or (expected is not None and type(waiting.pdu) is not expected) \
                or (expected is None and not isinstance(waiting.pdu, (Query, Cancel))):
            self._events.append(ev.UnexpectedResponse(pdu))
            return
        del self._waiting[pdu.sequence_id]
        self.window_free += waiting.windowed
        self._probes -= not waiting.windowed
        request = waiting.pdu
        if isinstance(pdu, SubmitResp):
            rtt = now - waiting.first_sent
            if pdu.result == _OK:
                self._events.append(ev.SubmitAcknowledged(request, pdu, rtt))
            elif pdu.result == _FLOW_CONTROL:
                self._events.append(ev.SubmitThrottled(request, pdu, rtt))
            else:
                self._events.append(ev.SubmitRejected(request, pdu, rtt))
        elif isinstance(pdu, DeliverResp):
            self._events.append(ev.DeliverAcknowledged(request, pdu))
        elif isinstance(pdu, ActiveTestResp):
            self._events.append(ev.ActiveTestAnswered(now - waiting.first_sent))
        else:
            self._events.append(ev.ResponseReceived(request, pdu))
