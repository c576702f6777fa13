"""The asyncio connection against the simulator over loopback TCP, once per fault.

Each test checks the typed outcome the caller sees and that nothing is left pending: no task,
no unresolved future, the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

import cmpp
from cmpp import events as ev
from cmpp.session import SessionConfig
from cmpp.states import State
from gateway.channel import (
    ConnectFailed,
    Connection,
    ConnectionClosed,
    LoginRefused,
    LoginTimedOut,
    OutcomeUnknown,
    SubmitRejectedError,
    SubmitThrottledError,
)
from gateway.sim import Account, Faults, Simulator, SimulatorConfig
from tests.aio import run

ACCOUNT, SECRET = "900001", "secret"


def submit_pdu(text: str = "hello", registered_delivery: int = 1) -> cmpp.Submit:
    fmt, content = cmpp.encode_text(text)
    return cmpp.Submit(dest_terminal_ids=("13800138000",), msg_fmt=fmt, msg_content=content,
                       src_id="10690001", registered_delivery=registered_delivery)


@contextlib.asynccontextmanager
async def simulator(**settings):
    faults = settings.pop("faults", Faults())
    config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, settings.pop("max_connections", 4))],
                             faults=faults, **settings)
    async with Simulator(config) as sim:
        yield sim


async def connect(sim, secret=SECRET, **kwargs) -> Connection:
    host, port = sim.address
    return await Connection.open(host, port, ACCOUNT, secret, timeout=5, **kwargs)


def assert_finished(conn: Connection) -> None:
    assert conn.state is State.CLOSED
    assert conn._pending == {} and not conn._window_waiters
    assert conn._closed.done() and conn._login.done()


# ----------------------------------------------------------------------------- the good path

def test_submit_report_and_graceful_close():
    async def scenario():
        reports = []
        async with simulator(report_delay=0.01) as sim:
            conn = await connect(sim, on_deliver=lambda c, e: (reports.append(e), c.acknowledge_deliver(e.deliver)))
            response = await conn.submit(submit_pdu())
            for _ in range(100):
                if reports:
                    break
                await asyncio.sleep(0.01)
            assert [r.report.msg_id for r in reports] == [response.msg_id]
            assert reports[0].report.stat == "DELIVRD"
            await conn.close()
            assert_finished(conn)
            assert sim.counters["delivers_acknowledged"] == 1
            assert sim.submits[0].submit.msg_content == submit_pdu().msg_content
    run(scenario)


def test_without_a_deliver_handler_delivers_are_acknowledged_at_once():
    async def scenario():
        async with simulator() as sim:
            conn = await connect(sim)
            await conn.submit(submit_pdu())
            for _ in range(100):
                if sim.counters["delivers_acknowledged"]:
                    break
                await asyncio.sleep(0.01)
            assert sim.counters["delivers_acknowledged"] == 1
            await conn.close()
    run(scenario)


def test_the_window_is_never_exceeded_and_every_submit_is_answered():
    async def scenario():
        peak, done = 0, False

        async def watch(conn):
            nonlocal peak
            while not done:
                peak = max(peak, conn.in_window)
                await asyncio.sleep(0.001)
        async with simulator(faults=Faults(submit_resp_delay=0.02)) as sim:
            conn = await connect(sim, config=SessionConfig(window=4))
            watcher = asyncio.ensure_future(watch(conn))
            results = await asyncio.gather(*(conn.submit(submit_pdu(f"m{i}", 0)) for i in range(20)))
            done = True
            await watcher
            assert len({r.msg_id for r in results}) == 20
            assert peak == 4
            await conn.close()
            assert_finished(conn)
    run(scenario)


# ----------------------------------------------------------------------------- login outcomes

@pytest.mark.parametrize("secret,account_status,retryable", [("wrong", 3, False)])
def test_wrong_password_is_refused_with_status_3(secret, account_status, retryable):
    async def scenario():
        async with simulator() as sim:
            with pytest.raises(LoginRefused) as caught:
                await connect(sim, secret=secret)
            assert (caught.value.status, caught.value.retryable) == (account_status, retryable)
            assert sim.logins == [(ACCOUNT, account_status)]
    run(scenario)


def test_login_refused_with_a_chosen_status():
    async def scenario():
        async with simulator(faults=Faults(login_status=9)) as sim:
            with pytest.raises(LoginRefused) as caught:
                await connect(sim)
            assert caught.value.status == 9 and caught.value.retryable
    run(scenario)


def test_an_extra_login_beyond_the_account_limit_is_refused():
    async def scenario():
        async with simulator(max_connections=1) as sim:
            first = await connect(sim)
            with pytest.raises(LoginRefused) as caught:
                await connect(sim)
            assert caught.value.status == 5
            await first.close()
    run(scenario)


class OwnAuthenticatorIsmg(Simulator):
    """Logs every SP in, with an AuthenticatorISMG computed its own way (here: over another
    secret), as some real centers do."""

    def on_login(self, conn, event: ev.LoginRequested) -> None:
        conn.account = event.connect.source_addr
        conn.session.accept_login(0, "the center's own way", conn._loop.time())
        conn._after_session_call(flush_now=False)


def test_a_refused_authenticator_names_the_cause_and_the_setting_not_the_password():
    async def scenario():
        async with OwnAuthenticatorIsmg(SimulatorConfig()) as sim:
            with pytest.raises(LoginRefused) as caught:
                await connect(sim, config=SessionConfig(refuse_bad_authenticator=True))
            text = str(caught.value)
            assert text.startswith("login refused: the center's AuthenticatorISMG does not "
                                   "match the standard computation")
            assert 'verify_authenticator = "warn"' in text and "(all zero)" not in text
            assert "check the account and password" not in text
            assert caught.value.status is None and not caught.value.retryable
    run(scenario)


def test_a_tolerated_authenticator_mismatch_is_logged_with_the_setting(caplog):
    async def scenario():
        async with simulator(faults=Faults(zero_authenticator=True)) as sim:
            conn = await connect(sim)
            assert conn.is_open
            await conn.close()
    with caplog.at_level(logging.WARNING, logger="cmpp_gateway.connection"):
        run(scenario)
    assert "the center's AuthenticatorISMG (all zero) does not match the standard " \
           'computation, MD5(Status + AuthenticatorSource + secret); logged in all the same ' \
           '(verify_authenticator = "warn")' in caplog.text


def test_connection_refused_is_a_typed_error():
    async def scenario():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(ConnectFailed):
            await Connection.open("127.0.0.1", port, ACCOUNT, SECRET, timeout=2)
    run(scenario)


def test_login_times_out_when_the_ismg_never_answers():
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(LoginTimedOut):
            await Connection.open("127.0.0.1", port, ACCOUNT, SECRET, timeout=0.3)
        server.close()
        await server.wait_closed()
    run(scenario)


# ----------------------------------------------------------------------------- submit outcomes

def test_no_submit_resp_is_resent_then_outcome_unknown():
    async def scenario():
        async with simulator(faults=Faults(no_submit_resp=True)) as sim:
            conn = await connect(sim, config=SessionConfig(response_timeout=0.1, max_sends=3))
            with pytest.raises(OutcomeUnknown, match="no response after 3 sends"):
                await conn.submit(submit_pdu())
            await conn.wait_closed()
            assert len(sim.submits) == 3                  # N sends in all, same Sequence_Id
            assert len({s.submit.sequence_id for s in sim.submits}) == 1
            assert_finished(conn)
    run(scenario)


def test_slow_submit_resp_is_waited_for():
    async def scenario():
        async with simulator(faults=Faults(submit_resp_delay=0.3)) as sim:
            conn = await connect(sim)
            loop = asyncio.get_running_loop()
            start = loop.time()
            response = await conn.submit(submit_pdu(registered_delivery=0))
            assert loop.time() - start >= 0.29 and response.result == 0
            await conn.close()
    run(scenario)


def test_result_8_above_the_tps_is_a_throttled_error():
    async def scenario():
        async with simulator(faults=Faults(throttle_tps=3)) as sim:
            conn = await connect(sim)
            outcomes = await asyncio.gather(*(conn.submit(submit_pdu(registered_delivery=0))
                                              for _ in range(5)), return_exceptions=True)
            assert sum(isinstance(o, cmpp.SubmitResp) for o in outcomes) == 3
            assert sum(isinstance(o, SubmitThrottledError) for o in outcomes) == 2
            assert sim.counters["throttled"] == 2
            await conn.close()
    run(scenario)


def test_a_definitive_result_is_a_rejected_error():
    async def scenario():
        async with simulator(faults=Faults(submit_result=13)) as sim:
            conn = await connect(sim)
            with pytest.raises(SubmitRejectedError) as caught:
                await conn.submit(submit_pdu())
            assert caught.value.result == 13
            assert len(sim.submits) == 1
            await conn.close()
    run(scenario)


# ----------------------------------------------------------------------------- broken links

async def _submits_then_failure(sim, count: int = 3):
    conn = await connect(sim)
    outcomes = await asyncio.gather(*(conn.submit(submit_pdu()) for _ in range(count)),
                                    return_exceptions=True)
    await conn.wait_closed()
    assert_finished(conn)
    with pytest.raises(ConnectionClosed):
        await conn.submit(submit_pdu())
    return conn, outcomes


def test_disconnect_mid_window_fails_the_unanswered_as_outcome_unknown():
    async def scenario():
        async with simulator(faults=Faults(disconnect_after=3, no_submit_resp=True)) as sim:
            conn, outcomes = await _submits_then_failure(sim)
            assert all(isinstance(o, OutcomeUnknown) for o in outcomes), outcomes
            assert conn.last_error.startswith("connection")
    run(scenario)


@pytest.mark.parametrize("fault", ["garbage_after", "oversized_after"])
def test_garbage_from_the_ismg_ends_the_connection(fault):
    async def scenario():
        malformed = []
        async with simulator(faults=Faults(**{fault: 2}, no_submit_resp=True)) as sim:
            host, port = sim.address
            conn = await Connection.open(host, port, ACCOUNT, SECRET, timeout=5,
                                         on_event=lambda c, e: isinstance(e, ev.MalformedPduReceived) and malformed.append(e))
            with pytest.raises(OutcomeUnknown, match="protocol error"):
                await conn.submit(submit_pdu())
            await conn.wait_closed()
            assert malformed and malformed[0].error.fatal
            assert_finished(conn)
    run(scenario)


def test_a_twelve_byte_active_test_resp_keeps_the_link_alive():
    async def scenario():
        answered = []
        async with simulator(faults=Faults(short_active_test_resp=True)) as sim:
            conn = await connect(sim, config=SessionConfig(heartbeat_interval=0.05),
                                 on_event=lambda c, e: isinstance(e, ev.ActiveTestAnswered) and answered.append(e))
            await asyncio.sleep(0.3)
            assert len(answered) >= 2 and conn.is_open
            await conn.close()
    run(scenario)


def test_silence_to_active_test_declares_the_link_dead():
    async def scenario():
        async with simulator(faults=Faults(ignore_active_test=True)) as sim:
            conn = await connect(sim, config=SessionConfig(heartbeat_interval=0.05,
                                                           response_timeout=0.05, max_sends=2))
            await conn.wait_closed()
            assert conn.last_error == "no response to ACTIVE_TEST after 2 sends"
            assert_finished(conn)
    run(scenario)


def test_a_report_sent_before_its_submit_resp_still_arrives():
    async def scenario():
        order = []
        async with simulator(faults=Faults(report_before_resp=True)) as sim:
            conn = await connect(sim, on_deliver=lambda c, e: (order.append(("report", e.report.msg_id)), c.acknowledge_deliver(e.deliver)))
            response = await conn.submit(submit_pdu())
            order.append(("response", response.msg_id))
            assert order == [("report", response.msg_id), ("response", response.msg_id)]
            await conn.close()
    run(scenario)


def test_duplicate_delivers_arrive_twice():
    async def scenario():
        reports = []
        async with simulator(faults=Faults(duplicate_delivers=True)) as sim:
            conn = await connect(sim, on_deliver=lambda c, e: (reports.append(e.report.msg_id), c.acknowledge_deliver(e.deliver)))
            response = await conn.submit(submit_pdu())
            for _ in range(100):
                if len(reports) == 2:
                    break
                await asyncio.sleep(0.01)
            assert reports == [response.msg_id, response.msg_id]
            await conn.close()
    run(scenario)


def test_abort_drops_at_once_and_fails_what_waited():
    async def scenario():
        async with simulator(faults=Faults(no_submit_resp=True)) as sim:
            conn = await connect(sim)
            waiting = asyncio.ensure_future(conn.submit(submit_pdu()))
            await asyncio.sleep(0.05)
            conn.abort()
            with pytest.raises(OutcomeUnknown, match="aborted"):
                await waiting
            assert_finished(conn)
    run(scenario)


def test_long_mo_is_split_across_connections_and_reassembles():
    async def scenario():
        parts, reassembler = [], cmpp.Reassembler()

        def on_deliver(conn, event):
            parts.append((conn.name, event.deliver))
            conn.acknowledge_deliver(event.deliver)
        async with simulator() as sim:
            a = await connect(sim, name="a", on_deliver=on_deliver)
            b = await connect(sim, name="b", on_deliver=on_deliver)
            text = "上行长短信" * 40
            sim.send_mo(ACCOUNT, "13800138000", "10690001", text)
            for _ in range(200):
                if len(parts) == 3:
                    break
                await asyncio.sleep(0.01)
            assert {name for name, _ in parts} == {"a", "b"}
            done = [m for _, d in reversed(parts) for m in reassembler.feed(d, now=0)]
            assert [m.text for m in done] == [text]
            await a.close()
            await b.close()
    run(scenario)


def test_unacknowledged_delivers_go_out_again_on_another_connection():
    async def scenario():
        seen = []
        async with simulator() as sim:
            silent = await connect(sim, name="silent", on_deliver=lambda c, e: seen.append(c.name))
            sim.send_mo(ACCOUNT, "13800138000", "10690001", "hi")
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            silent.abort()
            good = await connect(sim, name="good", on_deliver=lambda c, e: (seen.append(c.name), c.acknowledge_deliver(e.deliver)))
            for _ in range(100):
                if "good" in seen:
                    break
                await asyncio.sleep(0.01)
            assert seen == ["silent", "good"]
            await good.close()
    run(scenario)


def test_four_hundred_submits_in_one_write_are_all_answered():
    """Answers given from inside event handling must not recurse: one read of 400 SUBMITs
    once ended in RecursionError with SUBMITs never answered."""
    async def scenario():
        async with simulator() as sim:
            host, port = sim.address
            reader, writer = await asyncio.open_connection(host, port)
            ts = 1122093000
            auth = cmpp.authenticator_source(ACCOUNT, SECRET, ts)
            writer.write(cmpp.encode(cmpp.Connect(1, ACCOUNT, auth, 0x20, ts)))
            decoder = cmpp.FrameDecoder()
            assert decoder.feed(await reader.readexactly(30))[0].status == 0
            writer.write(b"".join(cmpp.encode(submit_pdu(f"m{i}", 0).with_sequence(i + 2))
                                  for i in range(400)))
            answers = []
            while len(answers) < 400:
                answers += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
            assert sorted(a.sequence_id for a in answers) == list(range(2, 402))
            assert all(a.result == 0 for a in answers) and len(sim.submits) == 400
            writer.close()
            await writer.wait_closed()
    run(scenario)


def test_a_deliver_resp_read_together_with_terminate_loses_no_queued_report(caplog):
    async def scenario():
        async with simulator(report_delay=0.05) as sim:
            answered = asyncio.get_running_loop().create_future()

            def on_deliver(conn, event):      # answer the first report and TERMINATE at once
                if not answered.done():
                    conn.acknowledge_deliver(event.deliver)
                    conn.session.terminate(asyncio.get_running_loop().time())
                    conn._after_session_call()
                    answered.set_result(None)

            conn = await connect(sim, on_deliver=on_deliver)
            for i in range(20):
                await conn.submit(submit_pdu(f"m{i}"))
            await answered
            await conn.wait_closed()
            await asyncio.sleep(0.05)
            assert sim.counters["delivers_acknowledged"] == 1
            assert sim.pending_delivers == 19          # the rest wait for another connection
    run(scenario)
    assert "failed" not in caplog.text


def test_submit_soon_hands_each_outcome_to_its_callback_inside_the_read():
    async def scenario():
        async with simulator(faults=Faults(submit_result=None)) as sim:
            conn = await connect(sim)
            outcomes = []

            def broken(outcome):
                outcomes.append(outcome)
                raise RuntimeError("a bug in the caller")

            conn.submit_soon(submit_pdu("a"), outcomes.append)
            conn.submit_soon(submit_pdu("b"), broken)          # logged, the link goes on
            await asyncio.sleep(0.1)
            assert [type(o) for o in outcomes] == [cmpp.SubmitResp, cmpp.SubmitResp]
            sim.config.faults.submit_result = 10
            conn.submit_soon(submit_pdu("c"), outcomes.append)
            await asyncio.sleep(0.1)
            assert isinstance(outcomes[-1], SubmitRejectedError) and outcomes[-1].result == 10
            sim.config.faults.submit_result, sim.config.faults.no_submit_resp = None, True
            conn.submit_soon(submit_pdu("d"), outcomes.append)
            await asyncio.sleep(0.05)
            conn.abort()
            assert isinstance(outcomes[-1], OutcomeUnknown)
            assert_finished(conn)
    run(scenario)


def test_a_cancel_that_comes_as_the_login_succeeds_is_not_lost():
    async def scenario():
        async with simulator() as sim:
            opened: list[Connection] = []

            def cancel_on_login(conn, event):       # the CONNECT_RESP and the cancel together
                opened.append(conn)
                if isinstance(event, ev.LoginSucceeded):
                    opening.cancel()

            opening = asyncio.ensure_future(connect(sim, on_event=cancel_on_login))
            with pytest.raises(asyncio.CancelledError):
                await opening
            assert opened and opened[0].state is State.CLOSED
    run(scenario)
