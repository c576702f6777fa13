"""The store: the durable record of messages, segments, Msg_Id correlation, receipts, MO, the
callback outbox, and the API's own records (codes, idempotent answers, templates, signatures,
the apps' users and their numbers by channel).

``Store`` (in ``interface``) is what the rest of the daemon programs against, with the records
that cross it (``NewMessage``, ``SegmentResult``, ``Receipt``, ``MessageView``, ...). A write is
durable before its awaitable resolves. ``SqliteStore`` (``sqlite/``) is the embedded default:
one SQLite file in WAL mode, written by one thread with group commit.

The operator's console keeps its records here too (``console``: apps made there, operator
accounts and sessions, review decisions, the audit trail, and what searches return), and
``AppDirectory`` (``apps``) is the live list of apps that the API, the callbacks and the
console share: the configuration's and the store's.

Offers: Store, SqliteStore, StoreError, StoreUnavailable (a write the store could not make),
the records (UserRow: an app's user), Pruned (a retention batch), to_signed and to_unsigned
(Msg_Ids as signed 64-bit integers), code_digest, the review states PENDING, APPROVED,
REFUSED, why an API request was not kept (KEY_REUSED, TOO_MANY_CODES), and the messages'
priorities (URGENT, NOTIFICATION, MARKETING: PRIORITIES in the order they go, PRIORITY_NAMES,
priority_of); for the console:
AppDirectory, AuditNote, AuditEntry, StoredApp, ConsoleUser, ConsoleSession, Review,
MessageQuery, MessageRow, ReceiptRow, CallbackRow, PendingCallbacks, SearchTooBroad, ROLES.
"""

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
from .interface import (
    APPROVED,
    KEY_REUSED,
    MARKETING,
    NOTIFICATION,
    PENDING,
    PRIORITIES,
    PRIORITY_NAMES,
    REFUSED,
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
    Store,
    StoreError,
    StoreUnavailable,
    UserRow,
    code_digest,
    priority_of,
    to_signed,
    to_unsigned,
)
from .sqlite import SqliteStore

__all__ = [
    "APPROVED", "KEY_REUSED", "MARKETING", "NOTIFICATION", "PENDING", "PRIORITIES",
    "PRIORITY_NAMES", "REFUSED", "ROLES", "TOO_MANY_CODES", "URGENT", "Accepted",
    "AcceptedRequest", "ApiRequest",
    "AppDirectory", "AuditEntry", "AuditNote", "CallbackRow", "ConsoleSession", "ConsoleUser",
    "MessageQuery", "MessageRow", "PendingCallbacks", "ReceiptRow", "Review", "SearchTooBroad",
    "StoredApp",
    "MessageView", "MoMessage", "MoPart", "MoView", "NewMessage", "OutboxEntry",
    "PendingMessage", "Pruned", "Receipt", "ReceiptOutcome", "SegmentResult", "SegmentView",
    "SqliteStore", "Store", "StoreError", "StoreUnavailable", "UserRow", "code_digest",
    "priority_of", "to_signed",
    "to_unsigned",
]
