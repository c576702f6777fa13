"""An ISMG (SMS center) that speaks CMPP 2.0 over real TCP, with faults to inject.

It logs accounts in (checking the authenticator, the version and a per-account connection
limit), answers SUBMITs with Msg_Ids laid out per the spec (mass send: Msg_Id+k), sends status
reports after a delay with a configurable mix of Stat values on any connection of the account,
sends MO messages (long ones split across connections), and records what it received so tests
can assert on it. DELIVERs left unanswered when a connection dies go out again on another one,
as a real ISMG does.

In strict mode (``SimulatorConfig.strict``) it also refuses what a strict center refuses,
with the spec's codes (``strict``: the Version, the Timestamp against its clock, and every
field of a SUBMIT). It sends ACTIVE_TEST after ``session.heartbeat_interval`` seconds of
silence, or (``heartbeat`` False) never.

Use it in-process (``async with Simulator(config) as sim``) or as ``cmpp-gateway simulate``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections import defaultdict, deque

import cmpp
from cmpp import events as ev
from cmpp.pdus import ConnectStatus
from cmpp.session import SessionConfig
from cmpp.states import State
from gateway.channel import china_time

from . import strict
from .config import Account, ReceivedSubmit, SentReport, SimulatorConfig
from .connection import IsmgConnection
from .held import HeldDelivers

log = logging.getLogger("cmpp_gateway.simulator")


class Simulator:
    """The ISMG. ``start()`` listens (port 0: any free port), ``stop()`` ends everything."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.accounts = {a.account: a for a in self.config.accounts}
        self.random = random.Random(self.config.seed)
        self._getrandbits = self.random.getrandbits
        # Each event type's on_... method, bound once (a subclass's own included).
        self._actions = {kind: getattr(self, name) for kind, name in self._ACTIONS.items()}
        self.received: list[tuple[int, cmpp.Pdu]] = []       # (connection id, PDU)
        self.submits: list[ReceivedSubmit] = []
        self.reports: list[SentReport] = []
        self.logins: list[tuple[str, int]] = []              # (account, Status)
        self.counters: dict[str, int] = defaultdict(int)
        self._connections: set[IsmgConnection] = set()
        self._outbox: dict[str, deque[cmpp.Deliver]] = defaultdict(deque)
        self._timers: set[asyncio.TimerHandle] = set()
        # Reports to queue, in the order they fall due (the delay is the same for all): one
        # timer for the earliest, not one per SUBMIT.
        self._due: deque[tuple[float, str, cmpp.Submit, int]] = deque()
        self._due_timer: asyncio.TimerHandle | None = None
        self._stamp_second, self._stamp = -1, ""
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._sequence = 0
        self._clock_second = -1
        self._time_bits = 0
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if self.config.held is not None:
            for account, delivers in self.config.held.take().items():
                self._outbox[account].extend(delivers)
        self._server = await loop.create_server(lambda: IsmgConnection(self), host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    async def stop(self) -> None:
        """Drop every connection and stop listening. With ``config.held``, the DELIVERs not
        yet acknowledged go there, for the next simulator."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if conn._transport is not None:
                conn._transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(100):                  # their connection_lost requeues what was unanswered
            if not self._connections:
                break
            await asyncio.sleep(0)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        if self.config.held is not None:
            self._hold(self.config.held)
        self._due.clear()

    def _hold(self, held: HeldDelivers) -> None:
        """Keep what is owed: queued DELIVERs, then the reports not yet due."""
        for account, queue in self._outbox.items():
            held.add(account, list(queue))
        for _, account, submit, msg_id in self._due:
            held.add(account, self._reports(submit, msg_id))
        self._outbox.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def session_config(self) -> SessionConfig:
        """Its connections' session settings: ``config.session``, without a heartbeat unless
        ``config.heartbeat`` (an interval of infinity never falls due)."""
        if self.config.heartbeat:
            return self.config.session
        return dataclasses.replace(self.config.session, heartbeat_interval=math.inf)

    # ------------------------------------------------------------------------- queries

    def connections(self, account: str | None = None) -> list[IsmgConnection]:
        """Logged-in connections (of one account, or all)."""
        return [c for c in self._connections if c.session.state is State.ESTABLISHED
                and (account is None or c.account == account)]

    def kill(self, connection: IsmgConnection) -> None:
        """Drop a connection abruptly, as a network failure would."""
        if connection._transport is not None:
            connection._transport.abort()

    @property
    def pending_delivers(self) -> int:
        return sum(len(q) for q in self._outbox.values())

    # ------------------------------------------------------------------------- MO

    def send_mo(self, account: str, src_terminal_id: str, dest_id: str, text: str,
                msg_fmt: int | None = None) -> list[cmpp.Deliver]:
        """Queue an MO message; a long one is split and its parts go out on different
        connections of the account, round robin."""
        reference = self.random.randrange(256)
        delivers = [cmpp.Deliver(msg_id=self._next_msg_id(), dest_id=dest_id,
                                 src_terminal_id=src_terminal_id, msg_fmt=s.msg_fmt,
                                 tp_udhi=s.tp_udhi, msg_content=s.msg_content)
                    for s in cmpp.split_text(text, msg_fmt, reference=reference)]
        conns = sorted(self.connections(account), key=lambda c: c.id)
        for i, deliver in enumerate(delivers):
            if conns and len(delivers) > 1:
                target = conns[i % len(conns)]
                if target.session.window_free > 0:
                    self._send_deliver(target, account, deliver)
                    continue
            self._outbox[account].append(deliver)
        self._pump(account)
        return delivers

    def send_report(self, account: str, msg_id: int, stat: str = "DELIVRD",
                    dest_terminal_id: str = "13800138000") -> None:
        """Queue a status report for any Msg_Id (one the SP never got, for instance)."""
        stamp = china_time().strftime("%y%m%d%H%M")
        report = cmpp.StatusReport(msg_id, stat, stamp, stamp, dest_terminal_id, 0)
        self._outbox[account].append(cmpp.Deliver(msg_id=self._next_msg_id(),
                                                  src_terminal_id=dest_terminal_id, report=report))
        self._pump(account)

    # ------------------------------------------------------------------------- events

    # Each session event goes to the method of that name: a subclass overrides any of them
    # (calling super() for the usual behaviour) to script an ISMG of its own.
    _ACTIONS = {
        ev.LoginRequested: "on_login",
        ev.SubmitReceived: "on_submit",
        ev.DeliverAcknowledged: "on_deliver_acknowledged",
        ev.RequestReceived: "on_request",
        ev.MalformedPduReceived: "on_malformed",
        ev.RequestTimedOut: "on_timed_out",
        ev.ConnectionTerminated: "on_terminated",
    }

    def on_event(self, conn: IsmgConnection, event: ev.Event) -> None:
        """Every event of every connection: to its ``on_...`` method, if it has one."""
        action = self._actions.get(type(event))
        if action is not None:
            action(conn, event)

    def on_login(self, conn: IsmgConnection, event: ev.LoginRequested) -> None:
        """A CONNECT: check it, answer it, and send what the account is owed."""
        connect = event.connect
        account = self.accounts.get(connect.source_addr)
        status = self._login_status(connect, account)
        self.logins.append((connect.source_addr, status))
        if status == ConnectStatus.OK:
            conn.account = connect.source_addr
        secret = account.secret if account and not self.config.faults.zero_authenticator else None
        conn.session.accept_login(status, secret, conn._loop.time())
        conn._after_session_call(flush_now=False)
        if status == ConnectStatus.OK:
            self._pump(conn.account)

    def _login_status(self, connect: cmpp.Connect, account: Account | None) -> int:
        if self.config.faults.login_status is not None:
            return self.config.faults.login_status
        if account is None:
            return ConnectStatus.ILLEGAL_SOURCE_ADDRESS
        if self.config.strict:
            refusal = strict.check_connect(connect, self.config.clock(),
                                           self.config.timestamp_tolerance)
            if refusal is not None:
                self.counters[f"strict_status_{refusal.code}"] += 1
                log.warning("strict: CONNECT of %s refused with Status %d: %s",
                            account.account, refusal.code, refusal.reason)
                return refusal.code
        expected = cmpp.authenticator_source(account.account, account.secret, connect.timestamp)
        if connect.authenticator_source != expected:
            return ConnectStatus.AUTHENTICATION_ERROR
        if connect.version > 0x21:
            return ConnectStatus.VERSION_TOO_HIGH
        if len(self.connections(account.account)) >= account.max_connections:
            return self.config.too_many_connections_status
        return ConnectStatus.OK

    def on_submit(self, conn: IsmgConnection, event: ev.SubmitReceived) -> None:
        """A SUBMIT: record it, answer it (faults permitting), and schedule its reports."""
        submit, faults, now = event.submit, self.config.faults, conn._loop.time()
        self.counters["submits"] += 1
        if self.config.record:
            self.received.append((conn.id, submit))
        refusal = self._strict_refusal(conn.account, submit)
        result = refusal.code if refusal else self._submit_result(conn.account, now)
        msg_id = self._next_msg_id(len(submit.dest_terminal_ids)) if result == 0 else None
        if self.config.record:
            self.submits.append(ReceivedSubmit(conn.account, conn.id, submit, msg_id, result, now,
                                               refusal.reason if refusal else None))
        if faults.no_submit_resp:
            return
        response = cmpp.SubmitResp(submit.sequence_id, msg_id or 0, result)
        if result == 0 and submit.registered_delivery == 1:
            if faults.report_before_resp:     # on this connection, ahead of the response
                for report in self._reports(submit, msg_id):
                    if conn.session.window_free > 0:
                        self._send_deliver(conn, conn.account, report)
                    else:
                        self._outbox[conn.account].append(report)
            else:
                self._report_later(now + self.config.report_delay, conn.account, submit, msg_id)
        if faults.submit_resp_delay > 0:
            self._later(faults.submit_resp_delay, conn.respond, response)
        else:
            conn.respond(response)

    def _strict_refusal(self, account: str, submit: cmpp.Submit) -> strict.Refusal | None:
        """In strict mode, why a strict center would refuse this SUBMIT (a Result fault, the
        tester's own choice, goes first); None otherwise."""
        if not self.config.strict or self.config.faults.submit_result is not None:
            return None
        refusal = strict.check_submit(submit, self.accounts[account])
        if refusal is not None:
            self.counters[f"strict_result_{refusal.code}"] += 1
            log.warning("strict: SUBMIT of %s refused with Result %d: %s", account, refusal.code,
                        refusal.reason)
        return refusal

    def _submit_result(self, account: str, now: float) -> int:
        faults = self.config.faults
        if faults.submit_result is not None:
            return faults.submit_result
        if faults.throttle_tps is not None:
            recent = self._recent[account]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= faults.throttle_tps:
                self.counters["throttled"] += 1
                return cmpp.SubmitResult.FLOW_CONTROL
            recent.append(now)
        return 0

    def on_deliver_acknowledged(self, conn: IsmgConnection,
                                event: ev.DeliverAcknowledged) -> None:
        """A DELIVER_RESP: the window it freed takes the next queued DELIVER at once."""
        self.counters["delivers_acknowledged"] += 1
        queue = self._outbox.get(conn.account)
        if conn.session.state is not State.ESTABLISHED:   # a TERMINATE came in the same read
            return
        while queue and conn.session.window_free > 0:   # the window it freed, at once
            self._send_deliver(conn, conn.account, queue.popleft())

    def on_request(self, conn: IsmgConnection, event: ev.RequestReceived) -> None:
        """A QUERY or CANCEL: answered from what was recorded."""
        request = event.request
        if isinstance(request, cmpp.Query):
            accepted = sum(1 for s in self.submits if s.result == 0)
            conn.respond(cmpp.QueryResp(request.sequence_id, request.time, request.query_type,
                                        request.query_code, mt_tlmsg=len(self.submits),
                                        mt_scs=accepted))
        else:
            conn.respond(cmpp.CancelResp(request.sequence_id, success_id=1))

    def on_malformed(self, conn: IsmgConnection, event: ev.MalformedPduReceived) -> None:
        self.counters["malformed"] += 1

    def on_timed_out(self, conn: IsmgConnection, event: ev.RequestTimedOut) -> None:
        """A request had all its sends unanswered and its link is declared dead: a DELIVER
        among them goes out again on another connection, as the link's other unanswered
        ones do (a report is the ISMG's to keep until the SP acknowledges it)."""
        if isinstance(event.request, cmpp.Deliver):
            self._send_again(conn, [event.request])

    def on_terminated(self, conn: IsmgConnection, event: ev.ConnectionTerminated) -> None:
        """A connection ended: its unanswered DELIVERs go out again on another one."""
        self._send_again(conn, [p for p in event.unanswered if isinstance(p, cmpp.Deliver)])

    def _send_again(self, conn: IsmgConnection, delivers: list[cmpp.Deliver]) -> None:
        """``delivers``, sent on ``conn`` and never answered, first in its account's queue."""
        if conn.account and delivers:
            self._outbox[conn.account].extendleft(reversed([d.with_sequence(0) for d in delivers]))
            self._later(0, self._pump, conn.account)

    # ------------------------------------------------------------------------- reports

    def _reports(self, submit: cmpp.Submit, msg_id: int) -> list[cmpp.Deliver]:
        stamp, stats = self._report_stamp(), self.config.stats
        out = []
        for k, dest in enumerate(submit.dest_terminal_ids):
            if self.config.stat_for:
                stat = self.config.stat_for(submit)
            elif len(stats) == 1:
                stat = next(iter(stats))
            else:
                stat = self.random.choices(list(stats), list(stats.values()))[0]
            report = cmpp.StatusReport(cmpp.nth_of_mass_send(msg_id, k), stat, stamp, stamp,
                                       dest, self._smsc_sequence())
            out.append(cmpp.report_deliver(self._next_msg_id(), report, dest_id=submit.src_id,
                                           service_id=submit.service_id, src_terminal_id=dest))
        return out

    def _smsc_sequence(self) -> int:
        """``random.randrange(1 << 32)``, drawn as it draws it (the same numbers from the same
        seed), in C calls only: 33 random bits until they make a number below 2**32."""
        number = self._getrandbits(33)
        while number >> 32:
            number = self._getrandbits(33)
        return number

    def _report_later(self, due: float, account: str, submit: cmpp.Submit, msg_id: int) -> None:
        self._due.append((due, account, submit, msg_id))
        if self._due_timer is None:
            self._due_timer = asyncio.get_running_loop().call_at(due, self._reports_due)

    def after_read(self) -> None:
        """A connection handled what one read brought and is about to write its answers: the
        reports due by now go out at once, after those answers and in the same write on that
        connection, rather than from their timer in a later loop iteration."""
        if self._due and self._due[0][0] <= asyncio.get_running_loop().time():
            self._reports_due()

    def _reports_due(self) -> None:
        """Queue every report whose time has come, then wait for the next one."""
        if self._due_timer is not None:
            self._due_timer.cancel()        # (called early, by after_read)
            self._due_timer = None
        loop = asyncio.get_running_loop()
        now, due, accounts = loop.time(), self._due, set()
        while due and due[0][0] <= now:
            _, account, submit, msg_id = due.popleft()
            self._outbox[account].extend(self._reports(submit, msg_id))
            accounts.add(account)
        for account in accounts:
            self._pump(account)
        if due:
            self._due_timer = loop.call_at(due[0][0], self._reports_due)

    def _report_stamp(self) -> str:
        """Submit_time and Done_time: YYMMDDHHMM in China time, worked out once a second."""
        second = int(time.time())
        if second != self._stamp_second:
            self._stamp_second, self._stamp = second, china_time().strftime("%y%m%d%H%M")
        return self._stamp

    def _pump(self, account: str | None) -> None:
        """Send queued DELIVERs, one per connection with window to spare in each round."""
        queue = self._outbox.get(account)
        while queue:
            ready = [c for c in self.connections(account) if c.session.window_free > 0]
            if not ready:
                return
            self.random.shuffle(ready)
            for conn in ready:
                if not queue:
                    return
                self._send_deliver(conn, account, queue.popleft())

    def _send_deliver(self, conn: IsmgConnection, account: str, deliver: cmpp.Deliver) -> None:
        sent = conn.send(deliver)
        if sent.report is not None and self.config.record:
            self.reports.append(SentReport(account, sent, conn._loop.time()))
        self.counters["delivers_sent"] += 1
        if self.config.faults.duplicate_delivers and conn.session.window_free > 0:
            conn.send(deliver)
            self.counters["delivers_sent"] += 1

    # ------------------------------------------------------------------------- helpers

    def _next_msg_id(self, count: int = 1) -> int:
        """A Msg_Id per the spec: now (China time), the gateway code, a 16-bit sequence; a
        mass send reserves ``count`` consecutive sequences (Msg_Id .. Msg_Id+count-1)."""
        second = int(time.time())
        if second != self._clock_second:          # the time bits change once a second
            now = china_time()
            self._clock_second = second
            self._time_bits = cmpp.MsgId(now.month, now.day, now.hour, now.minute, now.second,
                                         self.config.gateway_code, 0).pack()
        msg_id = self._time_bits | self._sequence
        self._sequence = (self._sequence + count) & 0xFFFF
        return msg_id

    def _later(self, delay: float, callback, *args) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

