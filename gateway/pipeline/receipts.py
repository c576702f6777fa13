"""Status reports and MO messages, from whichever connection of a channel they arrive on.

Every DELIVER is acknowledged (DELIVER_RESP) only once what it carried is durable: a status
report once it is in the channel's report journal (``journal``: an SQLite store's mapped file,
one copy a loop iteration) or, without one, once the store has committed it; an MO part once it
is committed. If the gateway dies before that, the ISMG sends the DELIVER again and the store
recognises the duplicate; reports journalled and not yet committed are stored at the next start
(``replay``). A report is matched by its inner Msg_Id, whatever connection carried it and
whether or not its SUBMIT_RESP has been recorded yet (the store holds it until then). MO parts
are stored as they come and reassembled across connections; a long MO still incomplete after the
reassembly timeout is delivered with the parts that came, not dropped.
With several gateways on one store, the parts of a long MO may reach different gateways: after
storing a part, a gateway reads the parts from the same sender that no message holds yet,
whichever gateway stored them, and reassembles with them too. The gateway whose part was stored
last sees them all; if two assemble the message, the store keeps the first one only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import cmpp
from cmpp import events as ev
from gateway.channel import Connection
from gateway.ops import ChannelMetrics
from gateway.status import ReceiptCodes
from gateway.store import PRIORITY_NAMES, MoMessage, MoPart, Receipt, Store

from .journal import Record, ReportJournal

log = logging.getLogger("cmpp_gateway.receipts")


class ReceiptHandler:
    """One per channel: hand ``on_deliver`` to the channel's pool."""

    def __init__(self, channel: str, store: Store, codes: ReceiptCodes, metrics: ChannelMetrics,
                 mo_apps: Callable[[], tuple[str, ...]] = tuple,
                 on_mo: Callable[[MoMessage, int], None] | None = None,
                 reassembly_timeout: float = 7200.0, clock: Callable[[], float] = time.time,
                 journal: ReportJournal | None = None):
        self.channel = channel
        self.journal = journal
        self.store = store
        self.codes = codes
        self.metrics = metrics
        self.mo_apps = mo_apps
        self.on_mo = on_mo
        self.clock = clock
        self.reassembler = cmpp.Reassembler(reassembly_timeout)
        self._reports: list[tuple] = []        # reports of this loop iteration, not yet sent
        self._part_ids: dict[tuple, int] = {}
        self._assembling: set[int] = set()     # parts of messages being stored
        self._expiry: asyncio.Task | None = None
        self._closed = False

    async def replay(self) -> int:
        """Store the reports a previous run journalled and may not have committed (before the
        pool connects); returns how many. Never raises: a journal that cannot be read, or a
        store that cannot take them (a full disk), is logged, and the files stay for the next
        start, so that the gateway starts as it would without them."""
        if self.journal is None:
            return 0
        count = 0
        try:
            for path, records in self.journal.left_behind():
                for start in range(0, len(records), 1000):
                    receipts = [self._receipt(r) for r in records[start:start + 1000]]
                    outcomes = await self.store.record_receipts(receipts)
                    self._count([(r.connection, r) for r in receipts], outcomes)
                self.journal.replayed(path)
                count += len(records)
        except Exception as error:  # noqa: BLE001 - the files stay; the gateway goes on
            log.error("%s: reports of the report journal in %s not stored (%s: %s); kept for "
                      "the next start", self.channel, self.journal.directory,
                      type(error).__name__, error)
        if count:
            log.info("%s: %d report(s) from the report journal stored", self.channel, count)
        return count

    def _receipt(self, r: Record) -> Receipt:
        return Receipt(self.channel, r.connection, r.deliver_msg_id, r.msg_id,
                       self.codes.classify(r.stat), r.submit_time, r.done_time,
                       r.dest_terminal_id, r.smsc_sequence, r.received_at)

    async def start(self, parts: list[MoPart]) -> None:
        """Pick up MO parts stored before a restart, and start the reassembly expiry."""
        for part in parts:
            if part.channel == self.channel:
                self._reassemble(part, _deliver_of(part))
        self._expiry = asyncio.get_running_loop().create_task(
            self._expire_loop(), name=f"mo-expiry-{self.channel}")

    async def close(self) -> None:
        self._closed = True                # batches still failing stay in the journal
        if self.journal is not None:
            self.journal.close()
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)

    def on_deliver(self, conn: Connection, event: ev.ReportReceived | ev.MessageReceived) -> None:
        """The pool's DELIVER handler: acknowledged once durable (see the module's doc)."""
        if isinstance(event, ev.ReportReceived):
            self._report(conn, event)
        else:
            self._mo_part(conn, event.deliver)

    # ------------------------------------------------------------------------- reports

    def _report(self, conn: Connection, event: ev.ReportReceived) -> None:
        """Queue the report; every report of this loop iteration goes to the store together."""
        report, classification = event.report, self.codes.classify(event.report.stat)
        receipt = Receipt(self.channel, conn.name, event.deliver.msg_id, report.msg_id,
                          classification, report.submit_time, report.done_time,
                          report.dest_terminal_id, report.smsc_sequence, self.clock())
        if not self._reports:
            asyncio.get_running_loop().call_soon(self._store_reports)
        self._reports.append((conn, event, receipt))

    def _store_reports(self) -> None:
        reports, self._reports = self._reports, []
        journalled = None if self.journal is None else self.journal.write(
            [(r.connection, r.deliver_msg_id, r.msg_id, r.classification.stat, r.submit_time,
              r.done_time, r.dest_terminal_id, r.smsc_sequence, r.received_at)
             for _, _, r in reports])
        if journalled is not None:                 # durable now: answered before the commit
            _acknowledge(reports)
        self._store(reports, journalled, 1.0)

    def _store(self, reports: list[tuple], journalled: int | None, wait: float) -> None:
        """Hand the reports to the store; a journalled batch it fails is tried again after
        ``wait`` seconds (doubling to a minute), as the ISMG would resend one not answered."""
        try:
            future = self.store.record_receipts([receipt for _, _, receipt in reports])
        except Exception as error:  # noqa: BLE001 - a closed store: as a failed commit
            future = asyncio.get_running_loop().create_future()
            future.set_exception(error)
        future.add_done_callback(lambda f: self._reports_stored(f, reports, journalled, wait))

    def _reports_stored(self, future, reports: list[tuple], journalled: int | None,
                        wait: float) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("%s: %d receipt(s) not stored (%s); %s", self.channel, len(reports),
                      future.exception() if not future.cancelled() else "cancelled",
                      "the ISMG will send them again" if journalled is None else
                      f"kept in the report journal, tried again in {wait:g} s")
            if journalled is not None and not self._closed:
                asyncio.get_running_loop().call_later(
                    wait, lambda: self._closed or self._store(reports, journalled,
                                                              min(wait * 2, 60.0)))
            return
        if journalled is None:
            _acknowledge(reports)                  # DELIVER_RESPs out at once
        else:
            self.journal.committed(journalled, len(reports))
        self._count([(conn.name, receipt) for conn, _, receipt in reports], future.result())

    def _count(self, receipts: list[tuple[str, Receipt]], outcomes: list) -> None:
        """Metrics (and debug lines) of stored (connection name, receipt) pairs."""
        debug = log.isEnabledFor(logging.DEBUG)
        for (name, receipt), outcome in zip(receipts, outcomes):
            classification = receipt.classification
            if debug:
                log.debug("%s: report for Msg_Id %d: Stat %r -> %s%s", name,
                          receipt.msg_id, classification.stat,
                          classification.status.value if classification.status else "pending",
                          " (duplicate)" if outcome.duplicate else "")
            self.metrics.receipt(classification, outcome.duplicate, outcome.latency)
            if outcome.message_status is not None and outcome.message_status.final:
                self.metrics.final(outcome.message_status.value)
                if outcome.accepted_at is not None:
                    self.metrics.final_after(PRIORITY_NAMES[outcome.priority],
                                             receipt.received_at - outcome.accepted_at)

    # ------------------------------------------------------------------------- MO

    def _mo_part(self, conn: Connection, deliver: cmpp.Deliver) -> None:
        part = MoPart(self.channel, conn.name, deliver.msg_id, deliver.src_terminal_id,
                      deliver.dest_id, deliver.service_id, deliver.msg_fmt, deliver.tp_udhi,
                      deliver.msg_content, self.clock())
        future = self.store.record_mo_parts([part])
        future.add_done_callback(lambda f: self._mo_part_stored(f, conn, deliver))

    def _mo_part_stored(self, future, conn: Connection, deliver: cmpp.Deliver) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("%s: MO not stored; the ISMG will send it again", conn.name)
            return
        [stored] = future.result()
        conn.acknowledge_deliver(deliver)
        if stored is None:                              # a duplicate, already kept
            return
        self._reassemble(stored, deliver)
        if stored.tp_udhi and self.store.shared:
            siblings = self.store.loose_mo_parts(self.channel, stored.src_terminal_id)
            siblings.add_done_callback(self._siblings_read)

    def _siblings_read(self, future) -> None:
        """Parts of long MO from the same sender that other gateways stored."""
        if future.cancelled() or future.exception() is not None:
            log.warning("%s: could not read the MO parts other gateways received (%s); the "
                        "message is assembled by the gateway that gets its last part",
                        self.channel, future.exception() if not future.cancelled() else "")
            return
        for part in future.result():
            deliver = _deliver_of(part)
            if _key(deliver) not in self._part_ids and part.id not in self._assembling:
                self._reassemble(part, deliver)

    def _reassemble(self, part: MoPart, deliver: cmpp.Deliver) -> None:
        self._part_ids[_key(deliver)] = part.id
        for message in self.reassembler.feed(deliver, now=part.received_at):
            self._complete(message)

    def _complete(self, message: cmpp.Message) -> None:
        part_ids = tuple(self._part_ids.pop(_key(p)) for p in message.parts)
        self._assembling.update(part_ids)
        first = message.parts[0]
        mo = MoMessage(self.channel, message.source, message.destination, message.text,
                       message.payload, first.msg_fmt, part_ids, message.complete,
                       message.first_seen)
        future = self.store.record_mo_message(mo, self.mo_apps())
        future.add_done_callback(lambda f: self._mo_stored(f, mo))

    def _mo_stored(self, future, mo: MoMessage) -> None:
        self._assembling.difference_update(mo.part_ids)
        if future.cancelled() or future.exception() is not None:
            log.error("%s: reassembled MO not stored; its parts stay and are retried on restart",
                      self.channel)
            return
        if future.result() is None:                    # another gateway stored it first
            return
        self.metrics.mo(mo.complete)
        log.debug("%s: MO from %s to %s, %d part(s)", self.channel, mo.src_terminal_id, mo.dest_id,
                  len(mo.part_ids))
        if not mo.complete:
            log.warning("%s: MO from %s incomplete after the reassembly timeout (%d parts came)",
                        self.channel, mo.src_terminal_id, len(mo.part_ids))
        if self.on_mo is not None:
            self.on_mo(mo, future.result())

    async def _expire_loop(self) -> None:
        while True:
            due = self.reassembler.next_expiry()
            await asyncio.sleep(60.0 if due is None else max(1.0, min(60.0, due - self.clock())))
            for message in self.reassembler.expire(self.clock()):
                self._complete(message)


def _acknowledge(reports: list[tuple]) -> None:
    """DELIVER_RESP the reports' DELIVERs, in one write per connection."""
    answers: dict[Connection, list[cmpp.Deliver]] = {}
    for conn, event, _ in reports:
        answers.setdefault(conn, []).append(event.deliver)
    for conn, delivers in answers.items():
        conn.acknowledge_delivers(delivers)


def _key(deliver: cmpp.Deliver) -> tuple:
    return deliver.msg_id, deliver.src_terminal_id, deliver.msg_content


def _deliver_of(part: MoPart) -> cmpp.Deliver:
    return cmpp.Deliver(msg_id=part.deliver_msg_id, dest_id=part.dest_id,
                        service_id=part.service_id or "", msg_fmt=part.msg_fmt,
                        tp_udhi=part.tp_udhi, src_terminal_id=part.src_terminal_id,
                        msg_content=part.content)
