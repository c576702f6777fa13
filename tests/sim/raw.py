"""A CMPP client with no rules of its own, for tests that need to send what the gateway never
would (another Version, an old Timestamp, a DestUsr_tl of 0) and to see every PDU the
simulator sends (its ACTIVE_TESTs among them)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import cmpp
from gateway.channel import china_time


class RawClient:
    """PDUs or bytes out as given; PDUs in, one at a time, each a test can wait for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = cmpp.FrameDecoder()
        self.received: list[cmpp.Pdu] = []
        self.sequence = 0

    @classmethod
    async def open(cls, address: tuple[str, int]) -> RawClient:
        return cls(*await asyncio.open_connection(*address))

    async def login(self, account: str, secret: str, *, version: int = 0x20,
                    when: datetime | None = None, timestamp: int | None = None
                    ) -> cmpp.ConnectResp:
        """CONNECT with the Timestamp of ``when`` (China time now unless given) or the raw
        ``timestamp``; return the CONNECT_RESP."""
        stamp = timestamp if timestamp is not None else cmpp.timestamp(when or china_time())
        source = cmpp.authenticator_source(account, secret, stamp)
        return await self.request(cmpp.Connect(0, account, source, version, stamp))

    def send(self, pdu: cmpp.Pdu | bytes) -> int:
        """Write a PDU under the next Sequence_Id (or bytes as they are); the Sequence_Id."""
        self.sequence += 1
        data = pdu if isinstance(pdu, bytes) else cmpp.encode(pdu.with_sequence(self.sequence))
        self.writer.write(data)
        return self.sequence

    async def request(self, pdu: cmpp.Pdu | bytes, timeout: float = 10.0) -> cmpp.Pdu:
        """Send and wait for the response of the same Sequence_Id (bytes: their own)."""
        sequence = int.from_bytes(pdu[8:12], "big") if isinstance(pdu, bytes) else None
        sent = self.send(pdu)
        wanted = sequence if sequence is not None else sent
        return await self.wait_for(lambda p: p.is_response and p.sequence_id == wanted, timeout)

    async def wait_for(self, predicate, timeout: float = 10.0) -> cmpp.Pdu:
        """The first PDU received (already, or within ``timeout`` s) that ``predicate`` likes."""
        async def read() -> cmpp.Pdu:
            checked = 0
            while True:
                for pdu in self.received[checked:]:
                    if predicate(pdu):
                        return pdu
                checked = len(self.received)
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the simulator closed the connection")
                self.received.extend(self.decoder.feed(data))
        return await asyncio.wait_for(read(), timeout)

    async def submit(self, submit: cmpp.Submit) -> int:
        """Send a SUBMIT; the Result of its SUBMIT_RESP."""
        return (await self.request(submit)).result

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
