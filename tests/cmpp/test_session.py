"""Client and server sessions paired in memory with a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cmpp
from cmpp import events as ev
from cmpp.session import Session, SessionConfig, SessionError, WindowFull
from cmpp.states import Role, State

SECRET = "s3cret"
ACCOUNT = "900001"
TIMESTAMP = 1122093000


class Pair:
    """A client and a server session wired back to back; ``now`` is the fake clock."""

    def __init__(self, client_config=None, server_config=None, first_sequence=1):
        self.now = 0.0
        self.client = Session(Role.CLIENT, client_config, first_sequence=first_sequence)
        self.server = Session(Role.SERVER, server_config, now=self.now)
        self.client_events: list = []
        self.server_events: list = []

    def pump(self) -> None:
        """Move bytes both ways until both sides are quiet; collect events."""
        while True:
            to_server, to_client = self.client.data_to_send(), self.server.data_to_send()
            if not to_server and not to_client:
                break
            if to_server:
                self.server.receive_data(to_server, self.now)
            if to_client:
                self.client.receive_data(to_client, self.now)
        self._drain()

    def _drain(self):
        for session, sink in ((self.client, self.client_events), (self.server, self.server_events)):
            while (event := session.next_event()) is not None:
                sink.append(event)

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing timers on both sides in order, then pump."""
        end = self.now + seconds
        while True:
            due = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
        self.now = end
        self.pump()

    def login(self, status=0, secret=SECRET) -> None:
        self.client.login(ACCOUNT, SECRET, TIMESTAMP, self.now)
        self.pump()
        request = self.take(self.server_events, ev.LoginRequested)
        assert request.connect.source_addr == ACCOUNT
        self.server.accept_login(status, secret, self.now)
        self.pump()

    @staticmethod
    def take(events, kind):
        found = [e for e in events if isinstance(e, kind)]
        assert found, f"no {kind.__name__} in {events}"
        events.remove(found[0])
        return found[0]

    def kinds(self, events):
        return [type(e).__name__ for e in events]


def submit_pdu(text="hi"):
    return cmpp.Submit(dest_terminal_ids=("13800138000",), msg_content=text.encode())


@pytest.fixture
def pair():
    p = Pair()
    p.login()
    p.client_events.clear()
    p.server_events.clear()
    return p


# ----------------------------------------------------------------------------- login

def test_login_succeeds_and_the_ismg_authenticator_is_verified():
    p = Pair()
    p.login()
    assert p.client.state is State.ESTABLISHED and p.server.state is State.ESTABLISHED
    assert p.client_events == [ev.LoginSucceeded(version=0x20, authenticated=True)]


@pytest.mark.parametrize("status,retryable", [(2, False), (3, False), (4, False), (1, True), (9, True)])
def test_login_rejected_with_status(status, retryable):
    p = Pair()
    p.login(status=status)
    rejected = p.take(p.client_events, ev.LoginRejected)
    assert rejected.status == status and rejected.retryable is retryable
    assert p.take(p.client_events, ev.ConnectionTerminated).reason.startswith("login rejected")
    assert p.client.state is State.CLOSED and p.server.state is State.CLOSED


def test_authenticator_mismatch_is_reported_and_tolerated_by_default():
    p = Pair()
    p.login(secret="wrong")
    mismatch = p.take(p.client_events, ev.AuthenticatorMismatch)
    assert not mismatch.all_zero
    assert p.take(p.client_events, ev.LoginSucceeded).authenticated is False
    assert p.client.state is State.ESTABLISHED


def test_all_zero_authenticator_is_reported_as_such():
    p = Pair()
    p.login(secret=None)                 # the server sends 16 zero bytes
    assert p.take(p.client_events, ev.AuthenticatorMismatch).all_zero


def test_authenticator_mismatch_refused_by_setting():
    p = Pair(client_config=SessionConfig(refuse_bad_authenticator=True))
    p.login(secret="wrong")
    assert p.take(p.client_events, ev.LoginRejected).status is None
    assert p.client.state is State.CLOSED
    assert p.take(p.server_events, ev.ConnectionTerminated).by_peer


def test_login_times_out_without_connect_resp():
    p = Pair(client_config=SessionConfig(login_timeout=10))
    p.client.login(ACCOUNT, SECRET, TIMESTAMP, p.now)
    p.client.data_to_send()              # lost on the way
    assert p.client.get_timer() == 10
    p.advance(9.9)
    assert p.client.state is State.LOGGING_IN
    p.advance(0.1)
    assert p.take(p.client_events, ev.ConnectionTerminated).reason == "login timed out"


def test_server_closes_a_connection_that_never_logs_in():
    p = Pair(server_config=SessionConfig(login_timeout=5))
    p.advance(5)
    assert p.server.state is State.CLOSED
    assert p.take(p.server_events, ev.ConnectionTerminated).reason == "login timed out"


# ----------------------------------------------------------------------------- submit

def test_submit_is_acknowledged_with_the_ismg_msg_id(pair):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.pump()
    received = pair.take(pair.server_events, ev.SubmitReceived).submit
    assert received == sent and sent.sequence_id == 2       # the CONNECT took 1
    pair.server.respond(cmpp.SubmitResp(received.sequence_id, msg_id=777, result=0))
    pair.pump()
    acked = pair.take(pair.client_events, ev.SubmitAcknowledged)
    assert acked.request == sent and acked.response.msg_id == 777
    assert pair.client.in_window == 0


@pytest.mark.parametrize("result,kind", [(8, ev.SubmitThrottled), (1, ev.SubmitRejected),
                                         (13, ev.SubmitRejected), (200, ev.SubmitRejected)])
def test_submit_results_become_their_own_events(pair, result, kind):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.pump()
    pair.server.respond(cmpp.SubmitResp(sent.sequence_id, 0, result))
    pair.pump()
    assert pair.take(pair.client_events, kind).response.result == result
    assert pair.client.window_free == 16


def test_window_of_16_refuses_the_17th_until_a_response(pair):
    sent = [pair.client.submit(submit_pdu(), pair.now) for _ in range(16)]
    with pytest.raises(WindowFull):
        pair.client.submit(submit_pdu(), pair.now)
    pair.pump()
    pair.server.respond(cmpp.SubmitResp(sent[3].sequence_id, 1, 0))
    pair.pump()
    assert pair.client.window_free == 1
    pair.client.submit(submit_pdu(), pair.now)
    assert pair.client.window_free == 0


def test_window_size_is_configurable():
    p = Pair(client_config=SessionConfig(window=2))
    p.login()
    p.client.submit(submit_pdu(), p.now)
    p.client.submit(submit_pdu(), p.now)
    with pytest.raises(WindowFull):
        p.client.submit(submit_pdu(), p.now)


def test_sequence_ids_wrap_and_skip_zero():
    p = Pair(first_sequence=0xFFFFFFFE)
    p.login()                                      # CONNECT takes 0xFFFFFFFE
    a = p.client.submit(submit_pdu(), p.now)
    b = p.client.submit(submit_pdu(), p.now)
    assert (a.sequence_id, b.sequence_id) == (0xFFFFFFFF, 1)


def test_sequence_in_use_is_skipped_after_wrapping():
    p = Pair(first_sequence=5)
    p.login()
    held = p.client.submit(submit_pdu(), p.now)    # 6 stays unanswered
    p.client._sequence = 6                          # as if 2**32 ids went by
    assert p.client.submit(submit_pdu(), p.now).sequence_id == 7 and held.sequence_id == 6


def test_submit_outside_established_is_a_caller_error():
    session = Session(Role.CLIENT)
    with pytest.raises(SessionError, match="needs state established"):
        session.submit(submit_pdu(), 0)
    with pytest.raises(SessionError, match="server role"):
        session.deliver(cmpp.Deliver(), 0)


def test_a_submit_that_does_not_encode_sends_nothing(pair):
    with pytest.raises(ValueError, match="src_id"):
        pair.client.submit(cmpp.Submit(dest_terminal_ids=("1",), src_id="x" * 30), pair.now)
    assert pair.client.data_to_send() == b"" and pair.client.in_window == 0


# ----------------------------------------------------------------------------- T and N

def test_unanswered_submit_is_resent_after_t_and_the_link_dies_after_n_sends():
    client = established_client()
    first = client.submit(submit_pdu(), 0)
    second = client.submit(submit_pdu("second"), 1)
    client.data_to_send()
    timeline = []
    for now in (59.9, 60, 61, 120, 121, 179.9, 180):
        client.handle_timer(now)
        resent = cmpp.FrameDecoder().feed(client.data_to_send())
        timeline.append((now, [p.sequence_id for p in resent],
                         [(type(e).__name__, getattr(e, "sends", None)) for e in _events(client)]))
    assert timeline[:6] == [
        (59.9, [], []),
        (60, [first.sequence_id], [("RequestResent", 2)]),
        (61, [second.sequence_id], [("RequestResent", 2)]),
        (120, [first.sequence_id], [("RequestResent", 3)]),
        (121, [second.sequence_id], [("RequestResent", 3)]),
        (179.9, [], []),
    ]
    # The second SUBMIT is cut short with the link: sent 3 times, its last send not yet due.
    assert timeline[6][2] == [("RequestTimedOut", 3), ("ConnectionTerminated", (3,))]
    assert client.state is State.CLOSED and client.in_window == 0


def test_the_link_death_names_the_request_and_lists_the_rest_unanswered():
    client = established_client(SessionConfig(max_sends=1))
    first = client.submit(submit_pdu(), 0)
    second = client.submit(submit_pdu("second"), 1)
    client.handle_timer(60)
    timed_out, terminated = _events(client)
    assert timed_out.request == first
    assert terminated.reason == "no response to SUBMIT after 1 sends"
    assert terminated.unanswered == (second,)


def test_requests_whose_t_ran_out_time_out_with_the_link_and_the_rest_are_cut_short():
    client = established_client(SessionConfig(max_sends=2))
    first = client.submit(submit_pdu("first"), 0)
    client.handle_timer(60)                                   # first: its second send
    second = client.submit(submit_pdu("second"), 60)
    third = client.submit(submit_pdu("third"), 100)
    _events(client)
    client.data_to_send()
    client.handle_timer(121)                  # first has had its 2 sends; second's T ran out
    events = _events(client)
    assert [(type(e).__name__, e.request) for e in events[:2]] == [
        ("RequestTimedOut", first), ("RequestTimedOut", second)]
    assert [e.sends for e in events[:2]] == [2, 1]
    assert client.data_to_send() == b""       # second is not sent again on a dead link
    terminated = events[2]
    assert terminated.reason == "no response to SUBMIT after 2 sends"
    assert (terminated.unanswered, terminated.sends) == ((third,), (1,))


def test_a_submit_may_be_given_fewer_sends_than_n_on_this_link():
    client = established_client(SessionConfig(max_sends=3))
    sent = client.submit(submit_pdu(), 0, max_sends=1)
    client.handle_timer(60)
    timed_out, terminated = _events(client)
    assert (timed_out.request, timed_out.sends) == (sent, 1)
    assert terminated.reason == "no response to SUBMIT after 1 sends"
    with pytest.raises(ValueError, match="max_sends must be 1..3"):
        established_client(SessionConfig(max_sends=3)).submit(submit_pdu(), 0, max_sends=4)


def test_t_and_n_are_configurable():
    p = Pair(client_config=SessionConfig(response_timeout=5, max_sends=1))
    p.login()
    p.client.submit(submit_pdu(), p.now)
    p.advance(5)
    assert p.take(p.client_events, ev.RequestTimedOut).sends == 1


def test_a_late_response_to_a_resent_submit_is_matched_once(pair):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.advance(60)                                 # resent: the server saw it twice
    pair.server.respond(cmpp.SubmitResp(sent.sequence_id, 5, 0))
    pair.server.respond(cmpp.SubmitResp(sent.sequence_id, 5, 0))
    pair.pump()
    assert pair.take(pair.client_events, ev.SubmitAcknowledged).request == sent
    assert pair.take(pair.client_events, ev.UnexpectedResponse).pdu.sequence_id == sent.sequence_id
    assert pair.client.state is State.ESTABLISHED


# ----------------------------------------------------------------------------- heartbeat

def test_idle_for_c_sends_an_active_test_that_the_peer_answers(pair):
    assert pair.client.get_timer() == 180
    pair.advance(180)
    answered = pair.take(pair.client_events, ev.ActiveTestAnswered)
    assert answered.rtt == 0
    assert pair.client.state is State.ESTABLISHED


def test_traffic_postpones_the_heartbeat(pair):
    pair.advance(100)
    pair.server.active_test(pair.now)               # the client receives something at 100
    pair.pump()
    pair.client_events.clear()
    assert pair.client.get_timer() == 280


def test_unanswered_heartbeats_declare_the_link_dead():
    client = established_client(SessionConfig(heartbeat_interval=30, response_timeout=10))
    sends = []
    for now in (29.9, 30, 40, 50, 60):
        client.handle_timer(now)
        probes = cmpp.FrameDecoder().feed(client.data_to_send())
        sends.append((now, [type(p).__name__ for p in probes], [type(e).__name__ for e in _events(client)]))
    assert sends == [
        (29.9, [], []),
        (30, ["ActiveTest"], []),
        (40, ["ActiveTest"], ["RequestResent"]),
        (50, ["ActiveTest"], ["RequestResent"]),
        (60, [], ["RequestTimedOut", "ConnectionTerminated"]),
    ]
    assert client.state is State.CLOSED


def established_client(config=None) -> Session:
    """A client logged in at time 0 whose peer then goes silent."""
    p = Pair(client_config=config)
    p.login()
    _events(p.client)
    return p.client


def _events(session):
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def test_inbound_active_test_is_answered_even_mid_login():
    p = Pair()
    p.client.login(ACCOUNT, SECRET, TIMESTAMP, 0)
    p.client.receive_data(cmpp.encode(cmpp.ActiveTest(sequence_id=99)), 0)
    assert cmpp.FrameDecoder().feed(p.client.data_to_send())[-1] == cmpp.ActiveTestResp(99)


def test_twelve_byte_active_test_resp_answers_the_heartbeat(pair):
    pair.advance(180)
    pair.client_events.clear()
    pair.now += 180
    pair.client.handle_timer(pair.now)
    [probe] = cmpp.FrameDecoder().feed(pair.client.data_to_send())
    pair.client.receive_data(struct.pack(">III", 12, 0x80000008, probe.sequence_id), pair.now + 1)
    assert isinstance(pair.client.next_event(), ev.ActiveTestAnswered)


# ----------------------------------------------------------------------------- deliver

def test_report_is_surfaced_and_answered_only_when_acknowledged(pair):
    report = cmpp.StatusReport(msg_id=777, stat="DELIVRD", dest_terminal_id="13800138000")
    sent = pair.server.deliver(cmpp.Deliver(msg_id=4242, report=report), pair.now)
    pair.pump()
    received = pair.take(pair.client_events, ev.ReportReceived)
    assert received.report == report and received.deliver == sent
    assert pair.server.in_window == 1                 # not answered yet
    assert pair.client.acknowledge_deliver(received.deliver)
    pair.pump()
    acked = pair.take(pair.server_events, ev.DeliverAcknowledged)
    assert acked.response.msg_id == 4242 and acked.response.result == 0
    assert pair.server.in_window == 0


def test_mo_is_surfaced_as_a_message(pair):
    pair.server.deliver(cmpp.Deliver(src_terminal_id="13800138000", msg_content=b"TD"), pair.now)
    pair.pump()
    assert pair.take(pair.client_events, ev.MessageReceived).deliver.msg_content == b"TD"


def test_acknowledging_after_close_reports_false(pair):
    pair.client.terminate(pair.now)
    pair.pump()
    assert pair.client.acknowledge_deliver(cmpp.Deliver(sequence_id=1)) is False


def test_malformed_deliver_is_kept_and_answered_structure_error(pair):
    body = bytearray(cmpp.encode(cmpp.Deliver(msg_id=31337, src_terminal_id="13800138000",
                                              msg_content=b"x"))[12:])
    body[42] = 0xB9                                    # non-ASCII in Src_terminal_Id
    frame = struct.pack(">III", 12 + len(body), 5, 44) + bytes(body)
    pair.client.receive_data(frame, pair.now)
    malformed = pair.client.next_event()
    assert isinstance(malformed, ev.MalformedPduReceived) and malformed.frame == frame
    assert malformed.error.field == "src_terminal_id"
    [answer] = cmpp.FrameDecoder().feed(pair.client.data_to_send())
    assert answer == cmpp.DeliverResp(44, 31337, 1)
    assert pair.client.state is State.ESTABLISHED


# ----------------------------------------------------------------------------- terminate

def test_client_terminates_gracefully(pair):
    waiting = pair.client.submit(submit_pdu(), pair.now)
    pair.client.terminate(pair.now)
    assert pair.client.state is State.TERMINATING
    pair.pump()
    assert pair.client.state is State.CLOSED and pair.server.state is State.CLOSED
    ours = pair.take(pair.client_events, ev.ConnectionTerminated)
    assert ours.reason == "terminated" and not ours.by_peer and ours.unanswered == (waiting,)
    assert pair.take(pair.server_events, ev.ConnectionTerminated).by_peer


def test_server_terminates_and_the_client_answers(pair):
    pair.server.terminate(pair.now)
    pair.pump()
    assert pair.take(pair.client_events, ev.ConnectionTerminated).reason == "terminated by peer"
    assert pair.take(pair.server_events, ev.ConnectionTerminated).reason == "terminated"


def test_terminate_without_response_closes_after_t(pair):
    pair.client.terminate(pair.now)
    pair.client.data_to_send()                        # lost
    pair.advance(60)
    assert pair.take(pair.client_events, ev.ConnectionTerminated).reason == "no TERMINATE_RESP"


def test_responses_still_arrive_while_terminating(pair):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.pump()
    pair.client.terminate(pair.now)
    pair.server.respond(cmpp.SubmitResp(sent.sequence_id, 9, 0))
    pair.client.receive_data(pair.server.data_to_send(), pair.now)
    assert isinstance(pair.client.next_event(), ev.SubmitAcknowledged)


# ----------------------------------------------------------------------------- misbehaving peers

def test_a_request_the_role_never_receives_is_a_protocol_error(pair):
    pair.client.receive_data(cmpp.encode(cmpp.Submit(sequence_id=3, dest_terminal_ids=("1",))),
                             pair.now)
    terminated = pair.client.next_event()
    assert terminated.reason == "protocol error: SUBMIT is not allowed while established as client"
    assert cmpp.FrameDecoder().feed(pair.client.data_to_send())[-1].command_id == 2  # TERMINATE


def test_deliver_before_login_is_a_protocol_error():
    session = Session(Role.CLIENT)
    session.login(ACCOUNT, SECRET, TIMESTAMP, 0)
    session.receive_data(cmpp.encode(cmpp.Deliver(sequence_id=1)), 0)
    assert session.state is State.CLOSED
    assert "DELIVER is not allowed while logging in" in session.next_event().reason


def test_a_response_nobody_asked_for_is_reported_not_fatal(pair):
    stray = cmpp.SubmitResp(sequence_id=999, msg_id=1)
    pair.client.receive_data(cmpp.encode(stray) + cmpp.encode(cmpp.ConnectResp(sequence_id=5)),
                             pair.now)
    assert [pair.client.next_event().pdu for _ in range(2)] == [stray, cmpp.ConnectResp(sequence_id=5)]
    assert pair.client.state is State.ESTABLISHED


def test_a_response_of_the_wrong_kind_is_unexpected(pair):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.client.receive_data(cmpp.encode(cmpp.DeliverResp(sent.sequence_id)), pair.now)
    assert isinstance(pair.client.next_event(), ev.UnexpectedResponse)
    assert pair.client.in_window == 1


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x05garbage", struct.pack(">I", 1 << 20),
                                     struct.pack(">III", 12, 0x00000003, 1)])
def test_garbage_ends_the_connection_with_terminate(pair, garbage):
    pair.client.receive_data(garbage, pair.now)
    events = _events(pair.client)
    assert isinstance(events[0], ev.MalformedPduReceived)
    assert events[-1].reason.startswith("protocol error")
    assert pair.client.state is State.CLOSED


@given(st.binary(max_size=300), st.integers(0, 3))
@settings(max_examples=400)
def test_no_input_makes_a_session_raise(data, role_and_state):
    role = Role.CLIENT if role_and_state < 2 else Role.SERVER
    p = Pair()
    if role_and_state % 2:
        p.login()
    session = p.client if role is Role.CLIENT else p.server
    session.receive_data(data, 1.0)
    session.handle_timer(1000.0)
    _events(session)
    session.data_to_send()


def test_losing_the_transport_lists_what_was_unanswered(pair):
    sent = pair.client.submit(submit_pdu(), pair.now)
    pair.client.connection_lost("reset by peer")
    terminated = pair.client.next_event()
    assert terminated == ev.ConnectionTerminated("reset by peer", False, (sent,), (1,))
    pair.client.connection_lost("again")
    assert pair.client.next_event() is None
