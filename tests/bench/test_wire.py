"""The load tool's lean CMPP client (gateway.bench.wire) against a scripted center that
decodes everything it receives with the codec."""

from __future__ import annotations

import asyncio

import cmpp
from gateway.bench.options import channel_config
from gateway.bench.tally import Recorder, Tally
from gateway.bench.wire import Client, Outgoing
from gateway.channel import OutcomeUnknown
from gateway.status import provider_tables
from tests.aio import eventually, run

ACCOUNT, SECRET = "900001", "pw-Xy9!wire"


class Center(asyncio.Protocol):
    """One connection of the scripted center: logs in whoever knows SECRET, decodes every
    frame with the codec into ``received``, and hands each SUBMIT to ``server.on_submit``."""

    def __init__(self, server: Server) -> None:
        self.server, self.decoder, self.received = server, cmpp.FrameDecoder(), []
        self.outstanding = 0            # SUBMITs received and not answered yet
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.centers.append(self)

    def data_received(self, data: bytes) -> None:
        for pdu in self.decoder.feed(data):
            self.received.append(pdu)
            if isinstance(pdu, cmpp.Connect):
                self.send(cmpp.ConnectResp(pdu.sequence_id, 0, cmpp.authenticator_ismg(
                    0, pdu.authenticator_source, SECRET), pdu.version))
            elif isinstance(pdu, cmpp.Submit):
                self.outstanding += 1
                self.server.most = max(self.server.most, self.outstanding)
                self.server.on_submit(self, pdu)
            elif isinstance(pdu, cmpp.Terminate):
                self.send(cmpp.TerminateResp(pdu.sequence_id))

    def send(self, pdu: cmpp.Pdu) -> None:
        self.transport.write(cmpp.encode(pdu))

    def answer(self, submit: cmpp.Submit, result: int = 0) -> None:
        self.outstanding -= 1
        self.send(cmpp.SubmitResp(submit.sequence_id, submit.sequence_id * 1000 + 7, result))

    def submits(self) -> list[cmpp.Submit]:
        return [p for p in self.received if isinstance(p, cmpp.Submit)]


class Server:
    def __init__(self, on_submit) -> None:
        self.on_submit, self.centers, self.most = on_submit, [], 0

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Center(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for center in self.centers:
            center.transport.abort()
        self.server.close()
        await self.server.wait_closed()


def submits(count: int, report: bool = False) -> list[cmpp.Submit]:
    return [cmpp.Submit(msg_level=n % 3, registered_delivery=int(report), msg_src=ACCOUNT,
                        src_id="10690001", dest_terminal_ids=(f"138{n:08d}",),
                        msg_fmt=cmpp.MsgFmt.ASCII, msg_content=f"message {n}".encode())
            for n in range(count)]


class Load:
    """A client of ``connections`` x ``window`` sending ``pdus``; outcomes by index."""

    def __init__(self, port: int, pdus: list[cmpp.Submit], connections: int = 2,
                 window: int = 4) -> None:
        channel = channel_config("127.0.0.1", port, ACCOUNT, SECRET, connections=connections,
                                 window=window)
        self.tally = Tally()
        self.recorder = Recorder(self.tally, provider_tables().for_provider("default"),
                                 asyncio.get_running_loop().time)
        self.client = Client(channel, self.recorder)
        self.queue = [(Outgoing.of(pdu), self._outcome(n)) for n, pdu in enumerate(pdus)]
        self.queue.reverse()
        self.outcomes: dict[int, Exception | None] = {}

    def _outcome(self, n: int):
        return lambda outcome: self.outcomes.__setitem__(n, outcome)

    def take(self):
        return self.queue.pop() if self.queue else None

    async def start(self) -> None:
        for link in self.client.links:
            await self.client.log_in(link)
        self.client.take = self.take
        self.client.fill()


def test_the_submits_on_the_wire_are_the_messages_under_distinct_sequence_ids():
    async def scenario():
        async with Server(lambda center, pdu: center.answer(pdu)) as server:
            pdus = submits(50)
            load = Load(server.port, pdus)
            await load.start()
            await eventually(lambda: len(load.outcomes) == 50)
            received = [p for c in server.centers for p in c.submits()]
            expected = {p.msg_content: p for p in pdus}
            assert len(received) == 50 and {p.msg_content for p in received} == set(expected)
            for pdu in received:                # the codec's decoding of what was written
                assert pdu == expected[pdu.msg_content].with_sequence(pdu.sequence_id)
            for center in server.centers:     # CONNECT is 1, the SUBMITs follow in order
                assert [p.sequence_id for p in center.received] \
                    == list(range(1, len(center.received) + 1))
            assert all(len(c.submits()) > 0 for c in server.centers)
            assert set(load.outcomes.values()) == {None}
            assert load.tally.results_ok == 50 and load.tally.logins == 2
            assert {level: h.count for level, h in load.tally.latency_by_level.items()} \
                == {0: 17, 1: 17, 2: 16}
            await load.client.close(timeout=1.0)
            assert all(isinstance(c.received[-1], cmpp.Terminate) for c in server.centers)
    run(scenario)


def test_the_window_of_each_connection_is_never_exceeded():
    held: list = []

    async def scenario():
        async with Server(lambda center, pdu: held.append((center, pdu))) as server:
            load = Load(server.port, submits(60), connections=2, window=4)
            await load.start()
            while len(load.outcomes) < 60:
                await eventually(lambda: held or len(load.outcomes) == 60)
                await asyncio.sleep(0.01)       # time for a client that would send too many
                batch, held[:] = held[:3], held[3:]
                for center, pdu in batch:
                    center.answer(pdu)
            assert server.most == 4             # full, and never more than full
            await load.client.close(timeout=1.0)
    run(scenario)


def test_reports_mo_and_active_tests_are_answered_and_counted():
    async def scenario():
        def on_submit(center, pdu):
            center.answer(pdu)
            report = cmpp.StatusReport(pdu.sequence_id * 1000 + 7, "DELIVRD", "2601010000",
                                       "2601010001", pdu.dest_terminal_ids[0], 1)
            center.send(cmpp.Deliver(500 + pdu.sequence_id, msg_id=42 + pdu.sequence_id,
                                     report=report))
            center.send(cmpp.Deliver(600 + pdu.sequence_id, msg_id=9, src_terminal_id="139",
                                     msg_content=b"hi"))
            center.send(cmpp.ActiveTest(700 + pdu.sequence_id))

        async with Server(on_submit) as server:
            load = Load(server.port, submits(5, report=True), connections=1)
            await load.start()
            await eventually(lambda: load.tally.reports == 5 and load.tally.mo == 5)
            center = server.centers[0]
            await eventually(lambda: sum(isinstance(p, cmpp.ActiveTestResp)
                                         for p in center.received) == 5)
            answers = {p.sequence_id: p for p in center.received
                       if isinstance(p, (cmpp.DeliverResp, cmpp.ActiveTestResp))}
            for submit in center.submits():
                seq = submit.sequence_id
                assert answers[500 + seq] == cmpp.DeliverResp(500 + seq, 42 + seq, 0)
                assert answers[600 + seq] == cmpp.DeliverResp(600 + seq, 9, 0)
                assert answers[700 + seq] == cmpp.ActiveTestResp(700 + seq)
            tally = load.tally
            assert tally.reports_expected == 5 and tally.reports_unmatched == 0
            assert tally.report_stats == {"DELIVRD": 5}
            assert tally.report_statuses == {"delivered": 5}
            assert tally.report_latency.count == 5 and not load.recorder.awaiting
            await load.client.close(timeout=1.0)
    run(scenario)


def test_a_protocol_error_ends_one_connection_with_a_clear_message():
    async def scenario():
        broken = []

        def on_submit(center, pdu):
            if center is not broken[0]:
                center.answer(pdu)
            elif len(center.submits()) == 2:        # the first connection breaks the protocol
                center.transport.write(b"\x00\x00\x00\x0c\x00\x00\x00\x99\x00\x00\x00\x01")

        async with Server(on_submit) as server:
            server.centers = broken
            load = Load(server.port, submits(40), connections=2, window=4)
            await load.start()
            await eventually(lambda: len(load.outcomes) == 40)
            message = ("protocol error: Command_Id 0x00000099 of 12 bytes is not a PDU a "
                       "CMPP 2.0 client takes here")
            assert dict(load.tally.connection_errors) == {message: 1}
            lost = [o for o in load.outcomes.values() if o is not None]
            assert len(lost) == 4 and all(isinstance(o, OutcomeUnknown) and message in str(o)
                                          for o in lost)
            assert load.tally.results_ok == 36 == len(broken[1].submits())
            assert len(load.client.open) == 1
            await load.client.close(timeout=1.0)
    run(scenario)


def test_a_submit_resp_to_nothing_sent_ends_the_connection():
    async def scenario():
        def on_submit(center, pdu):
            center.send(cmpp.SubmitResp(pdu.sequence_id + 1000, 1, 0))

        async with Server(on_submit) as server:
            lost = []
            load = Load(server.port, submits(1), connections=1)
            load.client.on_all_lost = lambda: lost.append(True)
            await load.start()
            await eventually(lambda: lost)
            [error] = load.tally.connection_errors
            assert error.startswith("protocol error: SUBMIT_RESP to Sequence_Id 1002")
            assert isinstance(load.outcomes[0], OutcomeUnknown)
            await load.client.close(timeout=1.0)
    run(scenario)
