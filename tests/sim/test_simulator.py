"""The simulator as a test bench, over loopback TCP: a subclass scripts its own ISMG through
the event methods, the DELIVERs it owes survive its restart and go out after the SP logs
in again, and its heartbeat is a setting."""

from __future__ import annotations

import asyncio
import math

import pytest

import cmpp
from cmpp import events as ev
from cmpp.session import SessionConfig
from gateway.channel import Connection, SubmitRejectedError, china_time
from gateway.sim import Account, HeldDelivers, IsmgConnection, Simulator, SimulatorConfig
from tests.aio import eventually, run
from tests.sim.raw import RawClient

ACCOUNT, SECRET = "900001", "secret"


def submit_pdu(dest: str, text: str = "hi") -> cmpp.Submit:
    return cmpp.Submit(dest_terminal_ids=(dest,), msg_content=text.encode(), src_id="10690001",
                       registered_delivery=1)


async def connect(sim: Simulator, **kwargs) -> Connection:
    host, port = sim.address
    return await Connection.open(host, port, ACCOUNT, SECRET, timeout=5, **kwargs)


class BarringIsmg(Simulator):
    """Refuses SUBMITs to one barred number with Result 10; the rest as usual."""

    BARRED = "13900000000"

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.barred = 0

    def on_submit(self, conn, event: ev.SubmitReceived) -> None:
        if event.submit.dest_terminal_ids == (self.BARRED,):
            self.barred += 1
            conn.respond(cmpp.SubmitResp(event.submit.sequence_id, 0, 10))
            return
        super().on_submit(conn, event)


def test_a_subclass_scripts_its_own_ismg_by_overriding_an_event_method():
    async def scenario():
        async with BarringIsmg(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)])) as sim:
            conn = await connect(sim)
            try:
                await conn.submit(submit_pdu(BarringIsmg.BARRED))
                raise AssertionError("the barred number was accepted")
            except SubmitRejectedError as error:
                assert error.result == 10
            assert (await conn.submit(submit_pdu("13800138000"))).result == 0
            assert sim.barred == 1 and len(sim.submits) == 1      # the usual path recorded one
            await conn.close()
    run(scenario)


def test_reports_not_acknowledged_survive_the_simulators_restart_and_go_out_after_login():
    async def scenario():
        held = HeldDelivers()
        config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)], held=held)
        first = Simulator(config)
        await first.start()
        seen: list[cmpp.Deliver] = []
        unanswered = await connect(first, on_deliver=lambda conn, event: seen.append(event))
        sent = [(await unanswered.submit(submit_pdu("13800138000", f"m{i}"))).msg_id
                for i in range(3)]
        await eventually(lambda: len(seen) == 3)          # sent, never acknowledged
        first.config.report_delay = 3600.0                # the next one is not due yet
        sent.append((await unanswered.submit(submit_pdu("13800138000", "late"))).msg_id)
        await first.stop()
        unanswered.abort()
        assert len(held) == 4

        second = Simulator(config)
        await second.start()
        reports = []
        conn = await connect(second, on_event=lambda c, event: reports.append(event.report.msg_id)
                             if isinstance(event, ev.ReportReceived) else None)
        await eventually(lambda: len(reports) == 4)
        assert sorted(reports) == sorted(sent)
        await eventually(lambda: second.counters["delivers_acknowledged"] == 4)
        await conn.close()
        await second.stop()
        assert len(held) == 0                            # all acknowledged: nothing owed
    run(scenario)


def test_a_report_whose_sends_all_went_unanswered_goes_out_again_on_the_next_connection():
    """The SP never answers a DELIVER: after N sends of T each the simulator declares the link
    dead (that DELIVER times out rather than being left unanswered) and still owes the
    report, which the next connection gets."""
    async def scenario():
        config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                                 session=SessionConfig(response_timeout=0.2, max_sends=2))
        async with Simulator(config) as sim:
            seen: list = []
            silent = await connect(sim, on_deliver=lambda conn, event: seen.append(event))
            msg_id = (await silent.submit(submit_pdu("13800138000"))).msg_id
            await eventually(lambda: len(seen) == 2 and not silent.is_open, timeout=10)
            reports = []
            conn = await connect(sim, on_event=lambda c, event: reports.append(
                event.report.msg_id) if isinstance(event, ev.ReportReceived) else None)
            await eventually(lambda: reports == [msg_id], timeout=10)
            await eventually(lambda: sim.counters["delivers_acknowledged"] == 1)
            await conn.close()
    run(scenario)


def test_held_delivers_go_through_a_file(tmp_path):
    report = cmpp.StatusReport(1234, "DELIVRD", "2612011200", "2612011201", "13800138000", 7)
    held = HeldDelivers()
    held.add(ACCOUNT, [cmpp.Deliver(msg_id=99, src_terminal_id="13800138000", report=report),
                       cmpp.Deliver(msg_id=100, src_terminal_id="13800138000",
                                    msg_content=b"T")])
    held.save(tmp_path / "held.json")
    loaded = HeldDelivers.load(tmp_path / "held.json")
    assert loaded.take() == held.take()
    assert len(HeldDelivers.load(tmp_path / "none.json")) == 0


# ----------------------------------------------------------------------------- heartbeat

def test_it_sends_active_test_after_the_sessions_heartbeat_interval():
    async def scenario():
        config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)],
                                 session=SessionConfig(heartbeat_interval=0.05))
        async with Simulator(config) as sim:
            client = await RawClient.open(sim.address)
            assert (await client.login(ACCOUNT, SECRET)).status == 0
            probe = await client.wait_for(lambda pdu: isinstance(pdu, cmpp.ActiveTest))
            client.send(cmpp.encode(cmpp.ActiveTestResp(probe.sequence_id)))
            again = await client.wait_for(lambda pdu: isinstance(pdu, cmpp.ActiveTest)
                                          and pdu.sequence_id != probe.sequence_id)
            assert again.sequence_id > probe.sequence_id        # answered, and idle again
            await client.close()
    run(scenario)


def test_without_heartbeat_it_sends_no_active_test_and_still_answers_them():
    async def scenario():
        config = SimulatorConfig(accounts=[Account(ACCOUNT, SECRET)], heartbeat=False,
                                 session=SessionConfig(heartbeat_interval=0.05))
        async with Simulator(config) as sim:
            client = await RawClient.open(sim.address)
            assert (await client.login(ACCOUNT, SECRET)).status == 0
            [server] = sim.connections(ACCOUNT)
            assert math.isinf(server.session.get_timer())       # no deadline at all
            answer = await client.request(cmpp.ActiveTest())
            assert isinstance(answer, cmpp.ActiveTestResp)
            with pytest.raises(asyncio.TimeoutError):           # 10 intervals of 0.05 s
                await client.wait_for(lambda pdu: isinstance(pdu, cmpp.ActiveTest), timeout=0.5)
            await client.close()
    run(scenario)


class RecordingTransport(asyncio.Transport):
    """Keeps every write, so that a test sees how the bytes were grouped into writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close


def test_a_report_due_at_once_goes_out_right_after_its_submit_resp_in_the_same_write():
    async def main() -> None:
        sim = Simulator(SimulatorConfig(record=False))
        conn, transport = IsmgConnection(sim), RecordingTransport()
        conn.connection_made(transport)
        stamp = cmpp.timestamp(china_time())
        conn.data_received(cmpp.encode(cmpp.Connect(
            1, "900001", cmpp.authenticator_source("900001", "secret", stamp), 0x20, stamp)))
        transport.writes.clear()
        conn.data_received(cmpp.encode(cmpp.Submit(
            sequence_id=2, src_id="106900001", dest_terminal_ids=("13800138000",),
            msg_content=b"hi")))
        [write] = transport.writes            # no timer, no later write of its own
        resp, report = cmpp.FrameDecoder().feed(write)
        assert isinstance(resp, cmpp.SubmitResp) and isinstance(report, cmpp.Deliver)
        assert report.report.msg_id == resp.msg_id and report.dest_id == "106900001"
        conn.connection_lost(None)

    asyncio.run(main())
