"""What a session reports: events named as past facts (DESIGN rule 4).

``Session.next_event()`` returns them in the order they happened. Events that carry a request
(``request``) carry the PDU as it was sent, so the caller can match them to its own records.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CodecError
from .pdus import (
    Cancel,
    CancelResp,
    Connect,
    ConnectStatus,
    Deliver,
    DeliverResp,
    Pdu,
    Query,
    QueryResp,
    StatusReport,
    Submit,
    SubmitResp,
)


class Event:
    """Base class of every session event."""

    __slots__ = ()


# ----------------------------------------------------------------------------- login

@dataclass(frozen=True, slots=True)
class LoginSucceeded(Event):
    """CONNECT_RESP Status 0. ``authenticated`` is false when AuthenticatorISMG did not match
    and the session was told to tolerate that."""

    version: int
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class LoginRejected(Event):
    """CONNECT_RESP with a non-zero Status (or a refused authenticator, status None)."""

    status: int | None
    reason: str

    @property
    def retryable(self) -> bool:
        """False for refusals that will not heal by trying again: illegal source address,
        authentication error, version too high, a bad AuthenticatorISMG."""
        return self.status not in (None, ConnectStatus.ILLEGAL_SOURCE_ADDRESS,
                                   ConnectStatus.AUTHENTICATION_ERROR,
                                   ConnectStatus.VERSION_TOO_HIGH)


@dataclass(frozen=True, slots=True)
class AuthenticatorMismatch(Event):
    """AuthenticatorISMG is not MD5(Status + AuthenticatorSource + secret) (§6.2)."""

    expected: bytes
    received: bytes

    @property
    def all_zero(self) -> bool:
        return self.received == bytes(16)


@dataclass(frozen=True, slots=True)
class LoginRequested(Event):
    """Server role: a CONNECT arrived; answer it with ``Session.accept_login``."""

    connect: Connect


# ----------------------------------------------------------------------------- requests we sent

@dataclass(frozen=True, slots=True)
class SubmitAcknowledged(Event):
    """SUBMIT_RESP Result 0: ``response.msg_id`` is the ISMG's id for this segment."""

    request: Submit
    response: SubmitResp
    rtt: float = 0.0          # seconds from the first send to this response


@dataclass(frozen=True, slots=True)
class SubmitThrottled(Event):
    """SUBMIT_RESP Result 8 (flow control): back off and send it again."""

    request: Submit
    response: SubmitResp
    rtt: float = 0.0          # seconds from the first send to this response


@dataclass(frozen=True, slots=True)
class SubmitRejected(Event):
    """SUBMIT_RESP with any other non-zero Result: final, no report will follow."""

    request: Submit
    response: SubmitResp
    rtt: float = 0.0          # seconds from the first send to this response


@dataclass(frozen=True, slots=True)
class DeliverAcknowledged(Event):
    """Server role: the SP answered our DELIVER."""

    request: Deliver
    response: DeliverResp


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """The answer to a QUERY or CANCEL."""

    request: Query | Cancel
    response: QueryResp | CancelResp


@dataclass(frozen=True, slots=True)
class RequestResent(Event):
    """A request went unanswered for T and was sent again (``sends`` so far, this one included)."""

    request: Pdu
    sends: int


@dataclass(frozen=True, slots=True)
class RequestTimedOut(Event):
    """A request's last send went unanswered for T and the link is declared dead (a
    ``ConnectionTerminated`` follows): this request, or another that went unanswered at the
    same time, had all its N sends. Its window credit is back; ``sends`` went unanswered."""

    request: Pdu
    sends: int


# ----------------------------------------------------------------------------- requests we received

@dataclass(frozen=True, slots=True)
class ReportReceived(Event):
    """A DELIVER carrying a status report. Answer with ``acknowledge_deliver`` once it is safe."""

    deliver: Deliver
    report: StatusReport


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A DELIVER carrying an MO message. Answer with ``acknowledge_deliver`` once it is safe."""

    deliver: Deliver


@dataclass(frozen=True, slots=True)
class SubmitReceived(Event):
    """Server role: answer with ``respond(SubmitResp(...))``."""

    submit: Submit


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """Server role: a QUERY or CANCEL; answer with ``respond``."""

    request: Query | Cancel


# ----------------------------------------------------------------------------- link

@dataclass(frozen=True, slots=True)
class ActiveTestAnswered(Event):
    """Our ACTIVE_TEST got its response after ``rtt`` seconds."""

    rtt: float


@dataclass(frozen=True, slots=True)
class UnexpectedResponse(Event):
    """A response whose Sequence_Id matches no request of ours: reported, otherwise ignored."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class MalformedPduReceived(Event):
    """A frame that did not decode. ``frame`` holds its bytes when it was well framed, so that
    nothing the peer sent is lost; requests among them were answered "message structure error"."""

    error: CodecError
    frame: bytes | None


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The session is over; close the transport. ``unanswered`` holds the requests that were
    still waiting for a response, in deadline order, and ``sends`` how often each was sent on
    this link: all but its last send went unanswered for T, the last was cut short."""

    reason: str
    by_peer: bool = False
    unanswered: tuple = ()
    sends: tuple = ()
