"""The store: the durable record of messages, segments, Msg_Id correlation, receipts, MO, the
callback outbox, and the API's own records (codes, idempotent answers, templates, signatures).

``Store`` (in ``interface``) is what the rest of the daemon programs against, with the records
that cross it (``NewMessage``, ``SegmentResult``, ``Receipt``, ``MessageView``, ...). A write is
durable before its awaitable resolves. ``SqliteStore`` (``sqlite/``) is the embedded default:
one SQLite file in WAL mode, written by one thread with group commit.

Offers: Store, SqliteStore, StoreError, StoreUnavailable (a write the store could not make),
the records, Pruned (a retention batch), to_signed and to_unsigned (Msg_Ids as signed 64-bit
integers), code_digest, and the review states PENDING, APPROVED, REFUSED.
"""

from .interface import (
    APPROVED,
    PENDING,
    REFUSED,
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
    code_digest,
    to_signed,
    to_unsigned,
)
from .sqlite import SqliteStore

__all__ = [
    "APPROVED", "PENDING", "REFUSED", "Accepted", "AcceptedRequest", "ApiRequest",
    "MessageView", "MoMessage", "MoPart", "MoView", "NewMessage", "OutboxEntry",
    "PendingMessage", "Pruned", "Receipt", "ReceiptOutcome", "SegmentResult", "SegmentView",
    "SqliteStore", "Store", "StoreError", "StoreUnavailable", "code_digest", "to_signed",
    "to_unsigned",
]
