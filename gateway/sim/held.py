"""DELIVERs a simulated ISMG still owes its SPs, kept across the simulator's own restart.

A real center keeps the status reports and MO it could not deliver, and sends them once the
SP logs in again, after its own restart too. Hand one ``HeldDelivers`` to a simulator
(``SimulatorConfig.held``) and the same object, or one loaded from the file it was saved to,
to the next: what the first had not got acknowledged, the second sends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cmpp


class HeldDelivers:
    """DELIVERs (status reports and MO) by account, in the order they are to go out."""

    def __init__(self) -> None:
        self._by_account: dict[str, list[cmpp.Deliver]] = {}

    def add(self, account: str, delivers: list[cmpp.Deliver]) -> None:
        if delivers:
            self._by_account.setdefault(account, []).extend(delivers)

    def take(self) -> dict[str, list[cmpp.Deliver]]:
        """Everything held, by account; nothing is held after."""
        held, self._by_account = self._by_account, {}
        return held

    def __len__(self) -> int:
        return sum(len(delivers) for delivers in self._by_account.values())

    def save(self, path: str | os.PathLike) -> None:
        """Write what is held to ``path`` (JSON: the DELIVERs' bytes in hex, by account)."""
        document = {account: [cmpp.encode(d).hex() for d in delivers]
                    for account, delivers in self._by_account.items()}
        Path(path).write_text(json.dumps(document), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeldDelivers:
        """What ``save`` wrote (nothing when the file does not exist). ValueError (or
        cmpp.CodecError) when the file is not such a document."""
        held = cls()
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return held
        for account, frames in document.items():
            held.add(account, [_deliver(bytes.fromhex(frame)) for frame in frames])
        return held


def _deliver(frame: bytes) -> cmpp.Deliver:
    pdu = cmpp.decode(frame)
    if not isinstance(pdu, cmpp.Deliver):
        raise ValueError(f"not a DELIVER: {type(pdu).__name__}")
    return pdu
