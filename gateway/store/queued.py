"""The store's operations put on a backend's writer: ``QueuedStore``, the part of
``SqliteStore`` and ``PostgresStore`` that is the same in both.

Each operation of the interface is one SQL function of the backend's modules, queued for its
writer (``_submit``: a read sees every write queued before it) or, for the console's searches,
run off the writer (``read``). A backend names its modules (``_messages``, ``_receipts``,
``_api``, ``_users``, ``_console``, ``_retention``, ``_search``: function for function the
same in both, see gateway.store.postgres) and provides ``_submit``, ``read`` and ``_state``
(its counts as of the last commit).
"""

from __future__ import annotations

import abc
import asyncio
from collections import Counter
from collections.abc import Mapping
from types import ModuleType

from .interface import Store
from .lanes import BULK, PIPELINE
from .records import URGENT, MoMessage, MoPart, NewMessage, Receipt, SegmentResult


class QueuedStore(Store):
    """``Store``'s operations on a writer's queue (see the module)."""

    _messages: ModuleType
    _receipts: ModuleType
    _api: ModuleType
    _users: ModuleType
    _console: ModuleType
    _retention: ModuleType
    _search: ModuleType

    @abc.abstractmethod
    def _submit(self, fn, *args, urgent: bool = False, lane: int = BULK,
                rows: int = 1) -> asyncio.Future:
        """``fn(state, *args)`` queued for the writer; its future. ``urgent``: in the lane
        that goes ahead of everything; otherwise in ``lane`` (gateway.store.lanes), ``rows``
        the bulk work it is."""

    @abc.abstractmethod
    def read(self, fn, *args) -> asyncio.Future:
        """``fn(connection, *args)`` off the writer, on what was committed."""

    # ------------------------------------------------------------------------- operations
    # Each returns the queued operation's future: await it, or add a done callback (cheaper
    # than a task per call on the receipt and submit paths).

    def accept(self, messages: list[NewMessage], now: float) -> asyncio.Future:
        return self._submit(self._messages.accept, messages, now, urgent=_urgent(messages),
                            rows=len(messages))

    def fetch_pending(self, channel: str, after: Mapping[int, int], limit: int,
                      now: float) -> asyncio.Future:
        return self._submit(self._messages.fetch_pending, channel, after, limit, now,
                            urgent=set(after) == {URGENT}, lane=PIPELINE)

    def defer(self, message_id: int, until: float) -> asyncio.Future:
        return self._submit(self._messages.defer, message_id, until, lane=PIPELINE)

    def record_submits(self, results: list[SegmentResult], provider: str) -> asyncio.Future:
        return self._submit(self._messages.record_submits, results, provider, lane=PIPELINE)

    def record_receipts(self, receipts: list[Receipt]) -> asyncio.Future:
        return self._submit(self._receipts.record_receipts, receipts, lane=PIPELINE)

    def record_mo_parts(self, parts: list[MoPart]) -> asyncio.Future:
        return self._submit(self._receipts.record_mo_parts, parts, lane=PIPELINE)

    def record_mo_message(self, message: MoMessage, apps: tuple[str, ...] = ()) -> asyncio.Future:
        return self._submit(self._receipts.record_mo_message, message, apps)

    def unassembled_mo_parts(self) -> asyncio.Future:
        return self._submit(self._receipts.unassembled_mo_parts)

    def expire_reports(self, now: float, timeout: float) -> asyncio.Future:
        return self._submit(self._receipts.expire_reports, now, timeout)

    def expire_unmatched_receipts(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(self._retention.expire_unmatched, before, after, limit)

    def prune_messages(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(self._retention.prune_messages, before, after, limit)

    def prune_mo(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(self._retention.prune_mo, before, after, limit)

    def forget_idempotency_keys(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(self._retention.forget_idempotency_keys, before, after, limit)

    def message(self, message_id: int) -> asyncio.Future:
        return self._submit(self._messages.message_view, message_id)

    def mo_view(self, mo_id: int) -> asyncio.Future:
        return self._submit(self._messages.mo_view, mo_id)

    async def status_counts(self) -> dict[str, int]:
        return dict(self._state.counts)

    async def unmatched_receipts(self) -> int:
        return self._state.unmatched

    def due_callbacks(self, now: float, limit: int) -> asyncio.Future:
        return self._submit(self._messages.due_callbacks, now, limit)

    def callback_done(self, entry_id: int, delivered: bool, now: float,
                      next_attempt_at: float | None, error: str | None) -> asyncio.Future:
        return self._submit(self._messages.callback_done, entry_id, delivered, now,
                            next_attempt_at, error)

    def hold_callback(self, entry_id: int, until: float, reason: str) -> asyncio.Future:
        return self._submit(self._messages.hold_callback, entry_id, until, reason)

    def pending_callbacks(self) -> asyncio.Future:
        return self._submit(self._messages.pending_callbacks)

    def queue_status_callbacks_for(self, apps) -> None:
        if self._state is None:
            raise RuntimeError("the store is not open")
        self._state.status_callbacks = None if apps is None else frozenset(apps)

    # The API's records (api).

    def accept_request(self, request, now: float) -> asyncio.Future:
        return self._submit(self._api.accept_request, request, now,
                            urgent=_urgent(request.messages),
                            rows=len(request.messages) + len(request.refused))

    def verify_code(self, app: str, message_id: int, code: str, now: float,
                    max_attempts: int = 5) -> asyncio.Future:
        return self._submit(self._api.verify_code, app, message_id, code, now, max_attempts)

    def unsubscribe(self, mobile: str, now: float, channel: str) -> asyncio.Future:
        return self._submit(self._api.unsubscribe, mobile, now, channel)

    def unsubscribed(self) -> asyncio.Future:
        return self._submit(self._api.unsubscribed)

    def create_template(self, values: dict, first_id: int, now: float) -> asyncio.Future:
        return self._submit(self._api.create_template, values, first_id, now)

    def update_template(self, template_id: int, values: dict, now: float) -> asyncio.Future:
        return self._submit(self._api.update_template, template_id, values, now)

    def delete_template(self, template_id: int) -> asyncio.Future:
        return self._submit(self._api.delete_template, template_id)

    def templates(self) -> asyncio.Future:
        return self._submit(self._api.templates)

    def create_signature(self, app: str, sign: str, images: list, status: int, now: float,
                         type: int | None = None, remark: str | None = None) -> asyncio.Future:
        return self._submit(self._api.create_signature, app, sign, images, status, now, type,
                            remark)

    def update_signature(self, sign_id: int, sign: str, images: list, status: int, now: float,
                         type: int | None = None, remark: str | None = None) -> asyncio.Future:
        return self._submit(self._api.update_signature, sign_id, sign, images, status, now, type,
                            remark)

    def set_signature_status(self, sign_id: int, status: int, now: float) -> asyncio.Future:
        return self._submit(self._api.set_signature_status, sign_id, status, now)

    def delete_signature(self, sign_id: int) -> asyncio.Future:
        return self._submit(self._api.delete_signature, sign_id)

    def signatures(self) -> asyncio.Future:
        return self._submit(self._api.signatures)

    # The apps' users (users).

    def save_users(self, app: str, users: list[tuple[str, dict[str, str]]], replace: bool,
                   max_users: int, now: float) -> asyncio.Future:
        return self._submit(self._users.save_users, app, users, replace, max_users, now)

    def user(self, app: str, userid: str) -> asyncio.Future:
        return self._submit(self._users.user, app, userid)

    def delete_user(self, app: str, userid: str, note=None, now: float = 0.0) -> asyncio.Future:
        return self._submit(self._users.delete_user, app, userid, note, now)

    def user_numbers(self, app: str, userids: list[str], channel: str) -> asyncio.Future:
        return self._submit(self._users.user_numbers, app, userids, channel)

    def find_users(self, app: str, prefix: str, after: str | None,
                   limit: int) -> asyncio.Future:
        return self.read(self._users.find_users, app, prefix, after, limit)

    def user_count(self, app: str) -> asyncio.Future:
        return self._submit(self._users.user_count, app)

    # The operator's console (console): each change with its audit note.

    def apps(self) -> asyncio.Future:
        return self._submit(self._console.apps)

    def create_app(self, app, note) -> asyncio.Future:
        return self._submit(self._console.create_app, app, note)

    def update_app_settings(self, name: str, settings: dict, note, now: float) -> asyncio.Future:
        return self._submit(self._console.update_app_settings, name, settings, note, now)

    def rotate_app_secret(self, name: str, secret: str, previous_until: float, note,
                          now: float) -> asyncio.Future:
        return self._submit(self._console.rotate_app_secret, name, secret, previous_until, note,
                            now)

    def console_user(self, name: str) -> asyncio.Future:
        return self._submit(self._console.console_user, name)

    def console_users(self) -> asyncio.Future:
        return self._submit(self._console.console_users)

    def put_console_user(self, user, note, now: float) -> asyncio.Future:
        return self._submit(self._console.put_console_user, user, note, now)

    def remove_console_user(self, name: str, note, now: float) -> asyncio.Future:
        return self._submit(self._console.remove_console_user, name, note, now)

    def create_session(self, session_id: str, user: str, note, now: float, idle: float,
                       lifetime: float) -> asyncio.Future:
        return self._submit(self._console.create_session, session_id, user, note, now, idle,
                            lifetime)

    def session(self, session_id: str) -> asyncio.Future:
        return self._submit(self._console.session, session_id)

    def touch_session(self, session_id: str, now: float) -> asyncio.Future:
        return self._submit(self._console.touch_session, session_id, now)

    def end_session(self, session_id: str, note, now: float) -> asyncio.Future:
        return self._submit(self._console.end_session, session_id, note, now)

    def console_key(self, name: str, candidate: str) -> asyncio.Future:
        return self._submit(self._console.console_key, name, candidate)

    def review(self, kind: str, item: int, status: int, reason: str, note,
               now: float) -> asyncio.Future:
        return self._submit(self._console.review, kind, item, status, reason, note, now)

    def last_reviews(self) -> asyncio.Future:
        return self._submit(self._console.last_reviews)

    def signature_images(self, sign_id: int) -> asyncio.Future:
        return self._submit(self._console.signature_images, sign_id)

    def signature_image(self, sign_id: int, slot: int) -> asyncio.Future:
        return self._submit(self._console.signature_image, sign_id, slot)

    def audit(self, note, now: float) -> asyncio.Future:
        return self._submit(self._console.audit, note, now)

    def audit_page(self, before_id: int | None, limit: int) -> asyncio.Future:
        return self._submit(self._console.audit_page, before_id, limit)

    # The console's searches (search), off the writer (``read``).

    def find_messages(self, query) -> asyncio.Future:
        return self.read(self._search.find_messages, query)

    def message_receipts(self, view) -> asyncio.Future:
        return self.read(self._search.message_receipts, view)

    def message_callbacks(self, view) -> asyncio.Future:
        return self.read(self._search.message_callbacks, view)

    def waiting_callbacks(self) -> asyncio.Future:
        return self.read(self._search.pending_callbacks)

    def counts_snapshot(self) -> Counter:
        """Messages by status, as of the last commit (no query; for metrics scrapes)."""
        return Counter(self._state.counts) if self._state else Counter()

    def unmatched_snapshot(self) -> int:
        """Receipts waiting for a segment, as of the last commit (no query)."""
        return self._state.unmatched if self._state else 0

    def commit_snapshot(self) -> tuple[tuple[float, ...], list[int], float]:
        """Transactions by duration: (bucket bounds, count per bucket and +Inf, seconds)."""
        return self.commit_times.snapshot()


def _urgent(messages) -> bool:
    """Whether storing ``messages`` takes the urgent lane: one of them is urgent."""
    return any(m.priority == URGENT for m in messages)
