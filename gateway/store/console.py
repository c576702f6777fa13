"""The records of the operator's console: apps made there, operator accounts and sessions,
the audit trail, review decisions, and what message searches return.

Every change an operator makes is written with its ``AuditNote`` in one transaction, so the
audit trail holds exactly the changes that happened. Audit entries never hold a secret or a
full phone number: callers write what was done, to what, and masked numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

ROLES = ("viewer", "admin")


class SearchTooBroad(Exception):
    """A console search would read more of the store than one search may: narrow it (a time
    range, an app, a status)."""


class AuditNote(NamedTuple):
    """Who did what to what, written with the change it describes."""

    operator: str
    action: str
    target: str
    detail: str = ""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    operator: str
    action: str
    target: str
    detail: str


@dataclass(frozen=True)
class StoredApp:
    """An app made in the console. ``settings`` holds the AppConfig fields an operator sets
    (gateway.config.APP_SETTINGS), as checked and stored; ``previous_secret`` stays valid
    until ``previous_until`` after a rotation."""

    name: str
    app_key: str
    master_secret: str = field(repr=False)
    settings: dict
    created_at: float
    updated_at: float
    previous_secret: str | None = field(default=None, repr=False)
    previous_until: float | None = None


@dataclass(frozen=True)
class ConsoleUser:
    """An operator account; ``password`` is the scrypt record, never the password."""

    name: str
    role: str
    password: str = field(repr=False)
    created_at: float = 0.0


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in operator, found by the hash of the session token."""

    user: str
    role: str
    created_at: float
    seen_at: float


@dataclass(frozen=True)
class Review:
    """A decision on a template (``kind`` "template") or signature ("sign")."""

    kind: str
    item: int
    status: int
    reason: str
    operator: str
    at: float


@dataclass(frozen=True)
class MessageQuery:
    """A console search: every given criterion must hold. ``recipients`` are the forms of
    one number (with and without 86); ``before_id`` pages back from there, newest first."""

    message_id: int | None = None
    app: str | None = None
    recipients: tuple[str, ...] = ()
    status: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class MessageRow:
    id: int
    app: str
    channel: str
    recipient: str
    status: str
    status_stat: str | None
    kind: str
    template_id: str | None
    created_at: float
    parts: int | None


@dataclass(frozen=True)
class ReceiptRow:
    """A status report as received for one of a message's segments."""

    part: int | None
    msg_id: int
    stat: str
    status: str | None
    temporary: bool
    provider: str
    connection: str | None
    submit_time: str | None
    done_time: str | None
    received_at: float


@dataclass(frozen=True)
class CallbackRow:
    """A callback of the outbox and how far it got."""

    id: int
    app: str
    kind: str
    attempts: int
    state: str
    last_error: str | None
    created_at: float
    next_attempt_at: float
    done_at: float | None


@dataclass(frozen=True)
class PendingCallbacks:
    """An app's callbacks still waiting: how many, how many have failed at least once, and
    since when the oldest waits."""

    app: str
    pending: int
    failing: int
    oldest: float
