"""The session's states and transitions, as data (DESIGN rule 3).

``TRANSITIONS`` maps (role, state, trigger) to the next state; ``ACCEPTS`` lists, for each role
and state, the PDUs a peer may send. A request outside ``ACCEPTS`` is a protocol error (the
session sends TERMINATE and ends); a response outside it, or one whose Sequence_Id matches no
request, is reported as ``UnexpectedResponse`` and otherwise ignored.
"""

from __future__ import annotations

from enum import Enum

from .pdus import (
    ActiveTest,
    ActiveTestResp,
    Cancel,
    CancelResp,
    Connect,
    ConnectResp,
    Deliver,
    DeliverResp,
    Query,
    QueryResp,
    Submit,
    SubmitResp,
    Terminate,
    TerminateResp,
)


class Role(Enum):
    CLIENT = "client"   # the SP: logs in, submits, receives DELIVERs
    SERVER = "server"   # the ISMG: accepts logins, answers submits, sends DELIVERs


class State(Enum):
    IDLE = "idle"                  # client: not logged in; server: waiting for CONNECT
    LOGGING_IN = "logging in"      # client: CONNECT sent; server: CONNECT not answered yet
    ESTABLISHED = "established"
    TERMINATING = "terminating"    # our TERMINATE sent, waiting for TERMINATE_RESP
    CLOSED = "closed"              # over: close the transport


CLIENT, SERVER = Role.CLIENT, Role.SERVER
IDLE, LOGGING_IN, ESTABLISHED = State.IDLE, State.LOGGING_IN, State.ESTABLISHED
TERMINATING, CLOSED = State.TERMINATING, State.CLOSED
_OPEN = (IDLE, LOGGING_IN, ESTABLISHED, TERMINATING)

TRANSITIONS: dict[tuple[Role, State, str], State] = {
    (CLIENT, IDLE, "send CONNECT"): LOGGING_IN,
    (CLIENT, LOGGING_IN, "login accepted"): ESTABLISHED,
    (CLIENT, LOGGING_IN, "login refused"): CLOSED,
    (SERVER, IDLE, "receive CONNECT"): LOGGING_IN,
    (SERVER, LOGGING_IN, "login accepted"): ESTABLISHED,
    (SERVER, LOGGING_IN, "login refused"): CLOSED,
    **{(role, ESTABLISHED, "send TERMINATE"): TERMINATING for role in Role},
    **{(role, TERMINATING, "receive TERMINATE_RESP"): CLOSED for role in Role},
    **{(role, state, "receive TERMINATE"): CLOSED for role in Role
       for state in (LOGGING_IN, ESTABLISHED, TERMINATING)},
    # The link ends without a handshake: T/N exhausted, a protocol error, a timeout.
    **{(role, state, "link lost"): CLOSED for role in Role for state in _OPEN},
}

_CLIENT_ESTABLISHED = frozenset({SubmitResp, QueryResp, CancelResp, Deliver, ActiveTest,
                                 ActiveTestResp, Terminate})
_SERVER_ESTABLISHED = frozenset({Submit, Query, Cancel, DeliverResp, ActiveTest, ActiveTestResp,
                                 Terminate})

ACCEPTS: dict[tuple[Role, State], frozenset[type]] = {
    (CLIENT, IDLE): frozenset(),
    (CLIENT, LOGGING_IN): frozenset({ConnectResp, ActiveTest, Terminate}),
    (CLIENT, ESTABLISHED): _CLIENT_ESTABLISHED,
    (CLIENT, TERMINATING): _CLIENT_ESTABLISHED | {TerminateResp},
    (SERVER, IDLE): frozenset({Connect}),
    (SERVER, LOGGING_IN): frozenset(),
    (SERVER, ESTABLISHED): _SERVER_ESTABLISHED,
    (SERVER, TERMINATING): _SERVER_ESTABLISHED | {TerminateResp},
}
