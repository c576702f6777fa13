"""The durable record: messages, segments, receipts, MO and the callback outbox.

``Store`` is the interface the daemon uses; ``gateway.store.sqlite.SqliteStore`` is the
embedded default, ``gateway.store.postgres.PostgresStore`` the shared backend for several
gateway instances. Both implement every method here and the same API methods beyond it.

Every write is durable before its awaitable resolves: callers queue operations, one worker
(a thread for SQLite, a task for PostgreSQL) runs whatever has accumulated in one transaction
(group commit), and only then are the callers' futures resolved. Reads go through the same
queue, so they see every write queued before them.
"""

from __future__ import annotations

import abc
import hashlib
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.status import Classification, DeliveryStatus

from .console import (
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
    StoredApp,
)

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


class Store(abc.ABC):
    """The daemon's durable state. Every method is safe to call from the event loop."""

    name: str = ""      # the store as messages name it: the file, or user@host:port/database
    shared = False      # several gateways may use it at once (PostgresStore; see join_cluster)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def queue_status_callbacks_for(self, apps) -> None:
        """From now on, queue final statuses only for the messages of ``apps`` (those with a
        status callback URL); None queues them for every app."""

    @abc.abstractmethod
    async def accept(self, messages: list[NewMessage], now: float) -> list[Accepted]:
        """Store new messages (status accepted). A repeated (app, idempotency key) returns the
        first message's id with ``existing`` set, storing nothing. Urgent messages are stored
        ahead of work queued for the store before them."""

    @abc.abstractmethod
    async def fetch_pending(self, channel: str, after: Mapping[int, int], limit: int,
                            now: float) -> list[PendingMessage]:
        """Up to ``limit`` messages of ``channel`` still to submit and due by ``now``, the most
        urgent first: by priority, then by id. ``after`` maps each priority to read to the
        last id its caller has of it (0: from the start); priorities it leaves out are not
        read. A fetch of urgent messages alone goes ahead of work queued before it. A store
        shared by several gateways claims what it returns for this gateway (release_claims
        hands them back), and never returns a message another live gateway has claimed."""

    @abc.abstractmethod
    async def defer(self, message_id: int, until: float) -> None:
        """Try this message again no earlier than ``until``."""

    async def release_claims(self, message_ids: list[int]) -> None:
        """This gateway will not submit these messages it fetched (it stops, or holds no
        connection of their channel now): a store shared by several gateways lets any of them
        claim them again. A store of one gateway claims nothing, and does nothing here."""

    @abc.abstractmethod
    async def record_submits(self, results: list[SegmentResult],
                             provider: str) -> list[DeliveryStatus | None]:
        """Record SUBMIT outcomes; match receipts that were waiting for these Msg_Ids. Returns,
        for each result, the final status it gave its message (or None)."""

    @abc.abstractmethod
    async def record_receipts(self, receipts: list[Receipt]) -> list[ReceiptOutcome]:
        """Store status reports and settle the segments they name."""

    @abc.abstractmethod
    async def record_mo_parts(self, parts: list[MoPart]) -> list[MoPart | None]:
        """Store MO parts; returns each with its id, or None for a duplicate."""

    @abc.abstractmethod
    async def record_mo_message(self, message: MoMessage,
                                apps: tuple[str, ...] = ()) -> int | None:
        """Store a reassembled MO message and queue its callback for each of ``apps``;
        returns its id. None when one of its parts is in a message already (several
        gateways on one store: another one assembled it first); nothing is stored then."""

    @abc.abstractmethod
    async def unassembled_mo_parts(self) -> list[MoPart]:
        """MO parts stored but not yet part of a message (after a restart)."""

    async def loose_mo_parts(self, channel: str, src_terminal_id: str) -> list[MoPart]:
        """The parts from ``src_terminal_id`` on ``channel`` not yet part of a message,
        whichever gateway received them (several gateways on one store). A store of one
        gateway is never asked: that gateway received every part itself."""
        raise NotImplementedError

    @abc.abstractmethod
    async def expire_reports(self, now: float, timeout: float) -> list[int]:
        """Messages submitted more than ``timeout`` ago with no final report: they end
        ``unknown``. Returns their ids."""

    # Retention: each call is one small batch (``limit`` rows), so that other operations go
    # on between batches; a pass calls again with ``after`` until it is None.

    @abc.abstractmethod
    async def expire_unmatched_receipts(self, before: float, after: int, limit: int) -> Pruned:
        """Remove reports that matched no segment and came before ``before``."""

    @abc.abstractmethod
    async def prune_messages(self, before: float, after: int, limit: int) -> Pruned:
        """Remove messages final before ``before`` (never one that is not final) whose status
        callback is not pending, with their segments, receipts, outbox rows and codes."""

    @abc.abstractmethod
    async def prune_mo(self, before: float, after: int, limit: int) -> Pruned:
        """Remove MO messages received before ``before`` whose callbacks are not pending,
        with their parts and outbox rows."""

    @abc.abstractmethod
    async def forget_idempotency_keys(self, before: float, after: int, limit: int) -> Pruned:
        """Forget idempotency keys (stored API answers, messages' keys) given before
        ``before``: a repeat after that is a new request."""

    @abc.abstractmethod
    async def message(self, message_id: int) -> MessageView | None: ...

    @abc.abstractmethod
    async def mo_view(self, mo_id: int) -> MoView | None: ...

    @abc.abstractmethod
    async def status_counts(self) -> dict[str, int]:
        """Messages by status."""

    @abc.abstractmethod
    async def unmatched_receipts(self) -> int: ...

    @abc.abstractmethod
    async def due_callbacks(self, now: float, limit: int) -> list[OutboxEntry]: ...

    @abc.abstractmethod
    async def callback_done(self, entry_id: int, delivered: bool, now: float,
                            next_attempt_at: float | None, error: str | None) -> None:
        """Mark a callback sent (or dropped), or schedule its next attempt."""

    @abc.abstractmethod
    async def hold_callback(self, entry_id: int, until: float, reason: str) -> None:
        """Keep a callback back until ``until`` without counting an attempt: nothing was
        sent (its URL has not passed verification); ``reason`` is kept as its last error."""

    @abc.abstractmethod
    async def pending_callbacks(self) -> int:
        """Callbacks still to send."""

    @abc.abstractmethod
    def counts_snapshot(self) -> Counter:
        """Messages by status, as of the last commit, without a query (metrics scrapes)."""

    @abc.abstractmethod
    def unmatched_snapshot(self) -> int:
        """Receipts waiting for their segment, as of the last commit, without a query."""

    @abc.abstractmethod
    def writable_snapshot(self) -> tuple[bool, str]:
        """(True, "") while the store can write; else (False, why not), without a query
        (readiness, metrics). The store finds out by itself when it can write again."""

    @abc.abstractmethod
    def size_snapshot(self) -> int:
        """The store's bytes on disk, as last measured, without a query (metrics)."""

    @abc.abstractmethod
    def commit_snapshot(self) -> tuple[tuple[float, ...], list[int], float]:
        """Transactions by duration: (bucket bounds, count per bucket and +Inf, seconds)."""

    @abc.abstractmethod
    async def query(self, statement: str, parameters: tuple = ()) -> list[tuple]:
        """Rows of an SQL statement (``?`` parameters), run in turn with every other
        operation: for tests and tools that look inside the store."""

    @abc.abstractmethod
    async def layout(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """The store's tables as the database describes them: name -> (columns in order,
        primary-key columns). For copy-store, and for the test that keeps both stores'
        layouts the same."""

    @abc.abstractmethod
    async def insert_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Rows written into ``table`` as they are, ids included, in one transaction (for
        copy-store; the daemon never calls it)."""

    @abc.abstractmethod
    async def continue_ids(self) -> None:
        """Make every generated id continue after the highest one stored (after copy-store
        wrote rows with their ids)."""

    # The API's records.

    @abc.abstractmethod
    async def accept_request(self, request: ApiRequest, now: float) -> AcceptedRequest:
        """Store an API request whole (see ApiRequest); a repeated Idempotency-Key replays
        the first answer and stores nothing."""

    @abc.abstractmethod
    async def verify_code(self, app: str, message_id: int, code: str, now: float,
                          max_attempts: int = 5) -> str:
        """"ok", or "unknown", "verified", "expired", "spent" (``max_attempts`` wrong codes
        were tried), "invalid" (attempts are counted)."""

    @abc.abstractmethod
    async def unsubscribe(self, mobile: str, now: float, channel: str) -> None: ...

    @abc.abstractmethod
    async def unsubscribed(self) -> set[str]: ...

    @abc.abstractmethod
    async def create_template(self, values: dict, first_id: int, now: float) -> int:
        """A new template's id: above every id given before, and at least ``first_id``."""

    @abc.abstractmethod
    async def update_template(self, template_id: int, values: dict, now: float) -> bool: ...

    @abc.abstractmethod
    async def delete_template(self, template_id: int) -> bool: ...

    @abc.abstractmethod
    async def templates(self) -> list[dict]: ...

    @abc.abstractmethod
    async def create_signature(self, app: str, sign: str, images: list, status: int,
                               now: float, type: int | None = None,
                               remark: str | None = None) -> int: ...

    @abc.abstractmethod
    async def update_signature(self, sign_id: int, sign: str, images: list, status: int,
                               now: float, type: int | None = None,
                               remark: str | None = None) -> bool:
        """Change the signature's text and status; its images, type and remark only when
        new ones are given (None and [] keep them)."""

    @abc.abstractmethod
    async def set_signature_status(self, sign_id: int, status: int, now: float) -> bool: ...

    @abc.abstractmethod
    async def delete_signature(self, sign_id: int) -> bool: ...

    @abc.abstractmethod
    async def signatures(self) -> list[dict]: ...

    # The apps' users: numbers bound per channel, and a default ("default"), kept per app.

    @abc.abstractmethod
    async def save_users(self, app: str, users: list[tuple[str, dict[str, str]]], replace: bool,
                         max_users: int, now: float) -> list[bool]:
        """Store each (userid, numbers by channel or "default") of ``app``, in order: merged
        into the user's numbers, or instead of them with ``replace``. A user new to the app is
        refused (False) once the app holds ``max_users``; True: stored."""

    @abc.abstractmethod
    async def user(self, app: str, userid: str) -> dict[str, str] | None:
        """The user's numbers by channel or "default"; None when ``app`` has no such user."""

    @abc.abstractmethod
    async def delete_user(self, app: str, userid: str, note=None, now: float = 0.0) -> bool:
        """Forget the user; False when ``app`` had no such user. With ``note`` (an
        AuditNote: the console), the audit entry is written in the same transaction, at
        ``now``, when a user was forgotten."""

    @abc.abstractmethod
    async def user_numbers(self, app: str, userids: list[str],
                           channel: str) -> dict[str, str | None]:
        """For each of ``userids`` that ``app`` holds, the number to send to on ``channel``:
        the one bound to it, else the user's default, else None. Unknown users are left out."""

    @abc.abstractmethod
    async def find_users(self, app: str, prefix: str, after: str | None,
                         limit: int) -> list[UserRow]:
        """Up to ``limit`` of ``app``'s users whose userid begins with ``prefix`` (all for
        ""), by userid, from the first after ``after`` (a page's last userid; None: from the
        start). Found through the (app, userid) key: an app of a million users costs a page,
        not a scan."""

    @abc.abstractmethod
    async def user_count(self, app: str) -> int:
        """How many users ``app`` holds."""

    # The operator's console (records in gateway.store.console): each change is written with
    # its AuditNote in the same transaction.

    @abc.abstractmethod
    async def apps(self) -> list[StoredApp]:
        """The apps made in the console, by name."""

    @abc.abstractmethod
    async def create_app(self, app: StoredApp, note: AuditNote) -> bool:
        """False when the name or the key is taken."""

    @abc.abstractmethod
    async def update_app_settings(self, name: str, settings: dict, note: AuditNote,
                                  now: float) -> bool:
        """False when there is no such app."""

    @abc.abstractmethod
    async def rotate_app_secret(self, name: str, secret: str, previous_until: float,
                                note: AuditNote, now: float) -> bool:
        """The new secret in place; the one it replaces stays valid until ``previous_until``
        (and one replaced before that is no longer valid). False when there is no such app."""

    @abc.abstractmethod
    async def console_user(self, name: str) -> ConsoleUser | None: ...

    @abc.abstractmethod
    async def console_users(self) -> list[ConsoleUser]:
        """Every operator account, by name."""

    @abc.abstractmethod
    async def put_console_user(self, user: ConsoleUser, note: AuditNote, now: float) -> bool:
        """Add the account, or replace its role and password (ending its sessions); True when
        it is new."""

    @abc.abstractmethod
    async def remove_console_user(self, name: str, note: AuditNote, now: float) -> bool:
        """Remove the account and end its sessions; False when there is none."""

    @abc.abstractmethod
    async def create_session(self, session_id: str, user: str, note: AuditNote, now: float,
                             idle: float, lifetime: float) -> None:
        """A new session (``session_id``: the hash of its token); expired sessions go, and an
        operator keeps the newest 20."""

    @abc.abstractmethod
    async def session(self, session_id: str) -> ConsoleSession | None:
        """The session and its operator's current role; None once it or the account is gone."""

    @abc.abstractmethod
    async def touch_session(self, session_id: str, now: float) -> None: ...

    @abc.abstractmethod
    async def end_session(self, session_id: str, note: AuditNote | None, now: float) -> bool:
        """End the session (audited when ``note`` is given); False when there was none."""

    @abc.abstractmethod
    async def console_key(self, name: str, candidate: str) -> str:
        """The key stored under ``name``; ``candidate`` becomes it when there is none yet (the
        first instance to ask decides for all)."""

    @abc.abstractmethod
    async def review(self, kind: str, item: int, status: int, reason: str, note: AuditNote,
                     now: float) -> bool:
        """Set a template's (``kind`` "template") or signature's ("sign") review status and
        keep the decision; False when there is no such item. ValueError for a status that is
        not PENDING, APPROVED or REFUSED."""

    @abc.abstractmethod
    async def last_reviews(self) -> list[Review]:
        """The latest decision on each reviewed item."""

    @abc.abstractmethod
    async def signature_images(self, sign_id: int) -> list[tuple[int, str]]:
        """(slot, content type) of each image sent with a signature."""

    @abc.abstractmethod
    async def signature_image(self, sign_id: int, slot: int) -> tuple[bytes, str] | None: ...

    @abc.abstractmethod
    async def audit(self, note: AuditNote, now: float) -> None:
        """An audit entry on its own (a sign-in refused, a reveal)."""

    @abc.abstractmethod
    async def audit_page(self, before_id: int | None, limit: int) -> list[AuditEntry]:
        """Audit entries newest first, before ``before_id`` (None: from the newest)."""

    # The console's searches: on a connection of their own, never holding up the writer, and
    # bounded (SearchTooBroad when one would read too much). They see what was committed.

    @abc.abstractmethod
    async def find_messages(self, query: MessageQuery) -> list[MessageRow]:
        """Messages matching ``query``, newest first, at most ``query.limit``."""

    @abc.abstractmethod
    async def message_receipts(self, view: MessageView) -> list[ReceiptRow]:
        """The status reports received for the message's segments."""

    @abc.abstractmethod
    async def message_callbacks(self, view: MessageView) -> list[CallbackRow]:
        """The status callbacks queued for the message."""

    @abc.abstractmethod
    async def waiting_callbacks(self) -> list[PendingCallbacks]:
        """Per app, the callbacks still waiting."""
