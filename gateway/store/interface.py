"""The durable record's interface: ``Store``, what the daemon programs against.

``gateway.store.sqlite.SqliteStore`` is the embedded default,
``gateway.store.postgres.PostgresStore`` the shared backend for several gateway instances.
Both implement every method here and the same API methods beyond it. The records that cross
it, its errors and its helpers are in ``records`` (``gateway.store`` offers them all).

Every write is durable before its awaitable resolves: callers queue operations, one worker
thread runs whatever has accumulated in one transaction (group commit), and only then are the
callers' futures resolved. Reads go through the same queue, so they see every write queued
before them.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from gateway.status import DeliveryStatus

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
from .records import (
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
    UserRow,
)


class Store(abc.ABC):
    """The daemon's durable state. Every method is safe to call from the event loop."""

    name: str = ""      # the store as messages name it: the file, or user@host:port/database
    shared = False      # several gateways may use it at once (PostgresStore; see join_cluster)

    def report_journal_directory(self) -> Path | None:
        """Where status reports may be journalled to be answered before their commit
        (``gateway.pipeline.journal``): only where a write to a local file is as durable as
        this store's commit. None here (a shared database: durable is what every gateway
        sees)."""
        return None

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

    async def release_claims_not_held(self, channel: str, held: list[int]) -> None:
        """Hand back every message of ``channel`` this gateway claims but does not hold
        (``held``: the ids it holds). A fetch that failed may have claimed messages whose
        ids never reached this gateway: the database took the COMMIT and its answer was lost.
        A store of one gateway claims nothing, and does nothing here."""

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
