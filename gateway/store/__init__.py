"""The store: the durable record of messages, segments, Msg_Id correlation, receipts, MO, the
callback outbox, and the API's own records (codes, idempotent answers, templates, signatures,
the apps' users and their numbers by channel).

``Store`` (in ``interface``) is what the rest of the daemon programs against, with the records
that cross it (in ``records``: ``NewMessage``, ``SegmentResult``, ``Receipt``, ``MessageView``,
..., with the errors and helpers that go with them). A write is durable before its awaitable
resolves. ``SqliteStore`` (``sqlite/``) is the embedded default: one SQLite file in WAL mode,
written by one thread with group commit. ``PostgresStore`` (``postgres/``) is the shared one: a
PostgreSQL database, written by one thread per gateway with group commit. Both put the same
operations on their writers (``QueuedStore``, in ``queued``: each backend names its SQL
modules). ``create_store(setting)`` makes the one the configuration names.

The operator's console keeps its records here too (``console``: apps made there, operator
accounts and sessions, review decisions, the audit trail, and what searches return), and
``AppDirectory`` (``apps``) is the live list of apps that the API, the callbacks and the
console share: the configuration's and the store's.

Offers: Store, SqliteStore, PostgresStore, create_store, is_database_url, StoreError,
StoreUnavailable (a write the store could not make), the records (UserRow: an app's user),
Pruned (a retention batch), to_signed and to_unsigned (Msg_Ids as signed 64-bit integers),
code_digest, the review states PENDING, APPROVED, REFUSED, why an API request was not kept
(KEY_REUSED, TOO_MANY_CODES, REPEATED, TOO_FAST), and the messages' priorities (URGENT, NOTIFICATION,
MARKETING: PRIORITIES in the order they go, PRIORITY_NAMES, priority_of); for the console:
AppDirectory, AuditNote, AuditEntry, StoredApp, ConsoleUser, ConsoleSession, Review,
MessageQuery, MessageRow, ReceiptRow, CallbackRow, PendingCallbacks, SearchTooBroad, ROLES.
"""

from gateway.config import is_database_url

from .apps import AppDirectory
from .console import (
    ROLES,
    AuditEntry,
    AuditNote,
    CallbackRow,
    ConsoleSession,
    ConsoleUser,
    MessageQuery,
    MessageRow,
    PendingCallbacks,
    ReceiptRow,
    Review,
    SearchTooBroad,
    StoredApp,
)
from .interface import Store
from .postgres import PostgresStore
from .records import (
    APPROVED,
    KEY_REUSED,
    MARKETING,
    NOTIFICATION,
    PENDING,
    PRIORITIES,
    PRIORITY_NAMES,
    REFUSED,
    REPEATED,
    TOO_FAST,
    TOO_MANY_CODES,
    URGENT,
    Accepted,
    AcceptedRequest,
    ApiRequest,
    MessageView,
    MoMessage,
    MoPart,
    MoView,
    NewMessage,
    OutboxEntry,
    PendingMessage,
    Pruned,
    Receipt,
    ReceiptOutcome,
    SegmentResult,
    SegmentView,
    StoreError,
    StoreUnavailable,
    UserRow,
    code_digest,
    priority_of,
    to_signed,
    to_unsigned,
)
from .sqlite import SqliteStore


def create_store(setting: str, password: str | None = None, *,
                 max_pages: int | None = None) -> Store:
    """The store the ``[gateway] store`` setting names, not yet open: PostgresStore for a
    ``postgresql://`` URL (``password`` from the configuration's store_password_env),
    SqliteStore for a file path (or ":memory:"; ``max_pages``: the file may grow no larger,
    for tests of a full store)."""
    if is_database_url(setting):
        return PostgresStore(setting, password=password)
    return SqliteStore(setting, max_pages=max_pages)


__all__ = [
    "APPROVED", "KEY_REUSED", "MARKETING", "NOTIFICATION", "PENDING", "PRIORITIES",
    "PRIORITY_NAMES", "REFUSED", "REPEATED", "ROLES", "TOO_FAST", "TOO_MANY_CODES", "URGENT", "Accepted",
    "AcceptedRequest", "ApiRequest",
    "AppDirectory", "AuditEntry", "AuditNote", "CallbackRow", "ConsoleSession", "ConsoleUser",
    "MessageQuery", "MessageRow", "PendingCallbacks", "ReceiptRow", "Review", "SearchTooBroad",
    "StoredApp",
    "MessageView", "MoMessage", "MoPart", "MoView", "NewMessage", "OutboxEntry",
    "PendingMessage", "PostgresStore", "Pruned", "Receipt", "ReceiptOutcome", "SegmentResult",
    "SegmentView", "SqliteStore", "Store", "StoreError", "StoreUnavailable", "UserRow",
    "code_digest", "create_store", "is_database_url", "priority_of", "to_signed",
    "to_unsigned",
]
