"""What the console's pages share: the daemon's services, the sessions, the login limiter,
the per-minute figures, the secrets waiting to be shown once, the uploads being read, writing
the audit trail, and ``Refused`` (an answer other than the page asked for)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from gateway.ops import mask_phone_numbers
from gateway.store import AuditNote

from .auth import LoginLimiter, Signer
from .rates import Rates
from .services import Services
from .sessions import Operator, Sessions, session_id

SHOW_ONCE_FOR = 600.0           # seconds a new secret waits for its one showing
SHOW_ONCE_MAX = 256             # secrets waiting at once; the oldest go first
UPLOADS = 2                     # files read at once: each is held whole until it is stored


class Refused(Exception):
    """An answer other than the page asked for: ``status`` and what to tell the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ShownOnce:
    """A secret made for an operator's session, kept in memory until the page that shows it
    is opened once, for SHOW_ONCE_FOR seconds at most. Never written to the store or a log."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self._waiting: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def put(self, operator: Operator, app_key: str, secret: str) -> None:
        self._waiting[(session_id(operator.token), app_key)] = (secret, self.clock())
        while len(self._waiting) > SHOW_ONCE_MAX:
            self._waiting.popitem(last=False)

    def take(self, operator: Operator, app_key: str) -> str | None:
        """The secret, once; None when it was shown already, expired or is another's."""
        entry = self._waiting.pop((session_id(operator.token), app_key), None)
        if entry is None or self.clock() - entry[1] > SHOW_ONCE_FOR:
            return None
        return entry[0]


class Console:
    def __init__(self, services: Services, key: bytes) -> None:
        self.services = services
        self.config = services.config
        self.settings = services.config.console
        self.store, self.apps, self.clock = services.store, services.apps, services.clock
        self.signer = Signer(key)
        self.sessions = Sessions(self.store, self.settings, self.signer, self.clock)
        self.limiter = LoginLimiter(self.settings.login_failures_per_account,
                                    self.settings.login_failures_per_source)
        self.rates = Rates(services.metrics.totals, self.clock)
        self.shown_once = ShownOnce(self.clock)
        self.uploads = asyncio.Semaphore(UPLOADS)

    async def audit(self, operator: Operator, action: str, target: str, detail: str = "") -> None:
        """An entry of the audit trail for something that changed nothing in the store (a
        reveal), or many things (an upload); changes write theirs with the change. Phone
        numbers are masked (a userid may be one)."""
        await self.store.audit(self.note(operator, action, target, detail), self.clock())

    def note(self, operator: Operator, action: str, target: str, detail: str = "") -> AuditNote:
        return AuditNote(operator.name, action, mask_phone_numbers(target),
                         mask_phone_numbers(detail))


def when(at: float | None) -> str:
    """A time as the console shows it (the server's local time)."""
    if at is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def zone() -> str:
    """The server's UTC offset, for the footer: "UTC+08:00"."""
    offset = time.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"
