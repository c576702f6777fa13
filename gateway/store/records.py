"""The records that cross the store's interface (``gateway.store.interface``; ``gateway.store``
offers them all), with what goes with them: the review states, the messages' priorities, the store's two
errors, the helpers both stores use (Msg_Ids as signed 64-bit integers, verification-code
digests, userid prefixes), and why an API request was not kept.

Most records are NamedTuples, cheap to make on a message's path (see ``NewMessage``); the
others are frozen dataclasses.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.status import Classification, DeliveryStatus

# Review states of templates and signatures, as JSMS numbers them (0 is ours: waiting).
PENDING, APPROVED, REFUSED = 0, 1, 2


class StoreError(Exception):
    """The store cannot be used as it is (written by a newer version, not a database, a
    database that cannot be reached at start): the daemon prints the message and exits
    instead of touching it."""


class StoreUnavailable(Exception):
    """The store could not write an operation (disk full, I/O error, read-only, locked by
    another process, a database that cannot be reached): nothing of it was kept (except when
    a database's connection broke during COMMIT: then it may have been). The message says
    why; the store recovers by itself, try again later."""


# How urgent a message is: the store reads pending messages, and the dispatcher sends them,
# lowest number first, then oldest first. Verification codes, and messages their app marks
# urgent, go ahead of notifications, and notifications ahead of marketing.
URGENT, NOTIFICATION, MARKETING = 0, 1, 2
PRIORITIES = (URGENT, NOTIFICATION, MARKETING)
PRIORITY_NAMES = ("urgent", "notification", "marketing")      # by priority: metric labels


def priority_of(kind: str, urgent: bool = False) -> int:
    """The priority of a message from a template of ``kind`` ("code", "notification",
    "marketing"), marked ``urgent`` by its app or not."""
    if urgent or kind == "code":
        return URGENT
    return MARKETING if kind == "marketing" else NOTIFICATION


def code_digest(code: str, salt: str | None = None) -> str:
    """``salt$sha256(salt + code)``: a code is never stored as itself."""
    salt = salt or secrets.token_hex(8)
    return f"{salt}${hashlib.sha256((salt + code).encode()).hexdigest()}"


def to_signed(msg_id: int) -> int:
    """An unsigned 64-bit Msg_Id as SQLite's signed INTEGER (same 8 bytes)."""
    return msg_id - (1 << 64) if msg_id >= 1 << 63 else msg_id


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def prefix_end(prefix: str) -> str | None:
    """The least text after every text that begins with ``prefix`` in code point order (as
    both stores compare userids: SQLite's UTF-8 bytes, PostgreSQL's COLLATE "C"): its last
    character one code point on (past the surrogates, which UTF-8 cannot hold; a last
    character that is the greatest is dropped and the one before moves on); None when there
    is none ("")."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


class NewMessage(NamedTuple):
    """A message accepted from an application: one recipient, the final text (signature
    included), the 8-bit UDH reference its parts will carry if it is long, the URL its
    final status is called back to instead of its app's (``callback``, from the request), and
    whether its app marked it ``urgent``. A NamedTuple, as the other records here: the API
    makes one per recipient, a thousand a batch, and a frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` a field) cost three times as much."""

    app: str
    channel: str
    recipient: str
    text: str
    template_id: str | None = None
    kind: str = "notification"
    idempotency_key: str | None = None
    reference: int = 0
    callback: str | None = None
    urgent: bool = False

    @property
    def priority(self) -> int:
        return priority_of(self.kind, self.urgent)


class Accepted(NamedTuple):
    """``accept``'s answer for one message: its id, and whether it was already there (an
    ``Idempotency-Key`` seen before)."""

    id: int
    existing: bool = False


class PendingMessage(NamedTuple):
    """A message the dispatcher must (still) submit; ``done_parts`` already have a SUBMIT_RESP;
    ``attempts`` counts its deferrals; ``created_at`` is when it was accepted (the channel's
    ``retry_for`` runs from then; None: no limit); ``priority`` is URGENT, NOTIFICATION or
    MARKETING; ``taken_over``: claimed from a gateway that died (several gateways on one
    store), which may have sent its first part without a SUBMIT_RESP before it died."""

    id: int
    channel: str
    recipient: str
    text: str
    reference: int
    attempts: int
    done_parts: frozenset[int] = frozenset()
    created_at: float | None = None
    priority: int = NOTIFICATION
    taken_over: bool = False


class SegmentResult(NamedTuple):
    """What became of one SUBMIT: a Msg_Id (Result 0), or a final status for the segment."""

    message_id: int
    channel: str
    part: int
    parts: int
    result: int
    msg_id: int | None = None
    status: DeliveryStatus = DeliveryStatus.SUBMITTED
    connection: str = ""
    sends: int = 1
    at: float = 0.0
    temporary: bool = False
    stat: str = ""


class Receipt(NamedTuple):
    """A status report as received, with its classification by the channel's provider table."""

    channel: str
    connection: str
    deliver_msg_id: int
    msg_id: int
    classification: Classification
    submit_time: str = ""
    done_time: str = ""
    dest_terminal_id: str = ""
    smsc_sequence: int = 0
    received_at: float = 0.0


class ReceiptOutcome(NamedTuple):
    """What a receipt did: nothing (duplicate), wait unmatched, or settle a segment; and the
    message's status when that changed it, with the message's priority and acceptance time
    (``accepted_at``) when it matched one."""

    duplicate: bool = False
    matched: bool = False
    message_id: int | None = None
    message_status: DeliveryStatus | None = None
    latency: float | None = None
    priority: int = NOTIFICATION
    accepted_at: float | None = None


class MoPart(NamedTuple):
    """One received MO DELIVER, kept as received."""

    channel: str
    connection: str
    deliver_msg_id: int
    src_terminal_id: str
    dest_id: str
    service_id: str
    msg_fmt: int
    tp_udhi: int
    content: bytes
    received_at: float
    id: int = 0


@dataclass(frozen=True)
class MoMessage:
    """An MO message, reassembled from its parts (``complete`` false: parts never came)."""

    channel: str
    src_terminal_id: str
    dest_id: str
    text: str | None
    payload: bytes
    msg_fmt: int
    part_ids: tuple[int, ...]
    complete: bool
    received_at: float


@dataclass(frozen=True)
class OutboxEntry:
    """A callback to send: a final status (``kind`` "status", ``ref`` the message id) or an
    MO (``kind`` "mo", ``ref`` the MO id) for ``app``."""

    id: int
    app: str
    kind: str
    ref: int
    attempts: int
    created_at: float

    @property
    def event_id(self) -> str:
        """Names the event itself (one final status of a message, or one MO, for one app):
        the receiver de-duplicates on it."""
        return f"{self.kind}-{self.ref}-{self.app}"


@dataclass(frozen=True)
class SegmentView:
    part: int
    msg_id: int | None
    result: int
    status: str
    stat: str | None
    temporary: bool | None
    connection: str | None
    submitted_at: float
    done_at: float | None


def segment_on_row(msg_id: int, result: int, status: str, stat: str | None,
                   temporary: bool | None, connection: str | None, submitted_at: float,
                   status_at: float) -> SegmentView:
    """The one segment of a message of one part whose SUBMIT outcome is on its messages row
    (store layout 7: no segments row), from that row (``msg_id`` signed, as stored): part 1,
    the message's status; the report's Stat, temporary flag and time (``status_at``) once that
    status is final, and before that no Stat or time and not temporary, as a segments row of
    an accepted SUBMIT has them."""
    final = status != DeliveryStatus.SUBMITTED.value
    return SegmentView(1, to_unsigned(msg_id), result, status, stat if final else None,
                       temporary if final else False, connection, submitted_at,
                       status_at if final else None)


@dataclass(frozen=True)
class MessageView:
    """A message as operators and support see it, with its per-part detail."""

    id: int
    app: str
    channel: str
    recipient: str
    text: str
    template_id: str | None
    kind: str
    created_at: float
    status: str
    status_stat: str | None
    status_temporary: bool | None
    status_provider: str | None
    status_at: float | None
    parts: int | None
    segments: tuple[SegmentView, ...] = field(default_factory=tuple)
    callback: str | None = None              # the request's own status callback URL


@dataclass(frozen=True)
class ApiRequest:
    """What one API call stores, whole, in one transaction.

    ``messages`` go out; ``refused`` are (message, JSMS code) pairs kept as final ``rejected``
    records, never sent; ``code`` is (digest, expires_at) of the verification code carried by
    the single message. ``render(ids, refused_ids) -> (http status, JSON body)`` builds the
    answer, kept under ``idempotency_key`` with ``fingerprint`` (what the request was: its
    endpoint and body) so that a retry gets the same answer and another request under the
    same key gets none (``KEY_REUSED``). ``code_limits`` are (window in seconds, most codes)
    pairs: the code is not kept (``TOO_MANY_CODES``) when its number already got ``most``
    codes within ``window`` of now. The store decides both inside the transaction that
    stores the request, so they hold for requests arriving together, and for every gateway
    that shares the store. ``repeats`` are the repeat rule's keys of its messages (one per
    number and text), each held until ``repeat_until``: a store shared by several gateways
    keeps nothing (``REPEATED``, with the keys held already) when another request holds one of
    them; a store of one gateway leaves them to the API's memory, which sees every request.
    ``app_second_limit`` is the most messages the app may send in one second (the second of
    ``now``): a store shared by several gateways counts each app's messages per second, for
    all of them together, and keeps nothing (``TOO_FAST``) of a request that would take the
    count past it; a store of one gateway leaves it to the API's memory, as the repeats.
    """

    app: str
    messages: tuple[NewMessage, ...] = ()
    refused: tuple[tuple[NewMessage, int], ...] = ()
    code: tuple[str, float] | None = None
    idempotency_key: str | None = None
    render: object = None
    fingerprint: str | None = None
    code_limits: tuple[tuple[float, int], ...] = ()
    repeats: tuple[str, ...] = ()
    repeat_until: float = 0.0
    app_second_limit: float = 0.0


# Why a store kept nothing of an ApiRequest (AcceptedRequest.refusal).
KEY_REUSED = "key reused"            # the Idempotency-Key was given with another request
TOO_MANY_CODES = "too many codes"    # the number got its code_limits' worth already
REPEATED = "repeated"                # another request holds some of its repeats (shared store)
TOO_FAST = "too fast"                # the app's messages this second would pass its limit (shared)


@dataclass(frozen=True)
class AcceptedRequest:
    """What became of an ApiRequest: stored (``ids``, ``refused_ids``, the answer kept), the
    answer kept for its key before (``replayed``), or nothing kept (``refusal``)."""

    ids: tuple[int, ...]
    refused_ids: tuple[int, ...]
    response: tuple[int, str] | None
    replayed: bool = False
    refusal: str | None = None
    repeated: tuple[str, ...] = ()       # REPEATED: the repeats held already


class Pruned(NamedTuple):
    """One batch of a retention pass: the rows it removed (or keys it cleared), by table,
    and where the next batch starts (None: the pass is done)."""

    rows: dict[str, int]
    after: int | None


@dataclass(frozen=True)
class MoView:
    """A stored MO message, as its callback reports it."""

    id: int
    channel: str
    src_terminal_id: str
    dest_id: str
    text: str | None
    payload: bytes
    msg_fmt: int
    parts: int
    complete: bool
    received_at: float


@dataclass(frozen=True)
class UserRow:
    """One of an app's users: its numbers by channel or "default", and when they last
    changed."""

    userid: str
    phones: dict[str, str]
    updated_at: float
