"""The embedded store: SQLite in WAL mode, driven by one worker thread with group commit.

Operations queue up; the worker runs every queued operation in one transaction and resolves
their futures after COMMIT. If that transaction fails, each operation is retried in a
transaction of its own, so one bad operation fails alone. ``synchronous=NORMAL`` (the default)
survives a crash of the process; ``FULL`` also survives a power cut, at an fsync per commit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from . import store_api_sql as api_sql
from . import store_receipts_sql as receipts_sql
from . import store_sql as sql
from .store import (
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    Store,
)


class _Op:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn, args, future):
        self.fn, self.args, self.future = fn, args, future


class SqliteStore(Store):
    """``Store`` on one SQLite file (``":memory:"`` for tests that need no file)."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", batch_limit: int = 4000,
                 commit_window: float = 0.0) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = path
        self.synchronous = synchronous
        self.batch_limit = batch_limit
        self.commit_window = commit_window   # seconds to let a batch grow before running it
        self._executor: ThreadPoolExecutor | None = None
        self._state: sql.State | None = None
        self._queue: list[_Op] = []
        self._wakeup: asyncio.Event | None = None
        self._committer: asyncio.Task | None = None
        self._committing = False
        self.commits = 0              # transactions run, for metrics and tests

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Open the file and start committing. Raises StoreError when the file is not a store
        this version can use."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            self._state = await loop.run_in_executor(self._executor, sql.open_database,
                                                     self.path, self.synchronous)
            await loop.run_in_executor(self._executor, api_sql.create_schema, self._state)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._wakeup = asyncio.Event()
        self._committer = loop.create_task(self._commit_loop(), name="store-commit")

    async def close(self) -> None:
        """Finish every queued operation (and the batch being committed), then close."""
        if self._committer is None:
            return
        while self._queue or self._committing:
            self._wakeup.set()
            await asyncio.sleep(0.001)
        self._committer.cancel()
        await asyncio.gather(self._committer, return_exceptions=True)
        self._committer = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._state.db.close)
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------- the engine

    def _submit(self, fn, *args) -> asyncio.Future:
        if self._committer is None:
            raise RuntimeError("the store is not open")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(fn, args, future))
        self._wakeup.set()
        return future

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.commit_window and len(self._queue) < self.batch_limit:
                await asyncio.sleep(self.commit_window)     # more callers join this commit
            while self._queue:
                batch = self._queue[:self.batch_limit]
                del self._queue[:self.batch_limit]
                self._committing = True
                try:
                    outcomes = await loop.run_in_executor(self._executor, self._run, batch)
                except asyncio.CancelledError:
                    for op in batch:
                        if not op.future.done():
                            op.future.cancel()
                    raise
                finally:
                    self._committing = False
                for op, (ok, value) in zip(batch, outcomes):
                    if op.future.done():
                        continue
                    if ok:
                        op.future.set_result(value)
                    else:
                        op.future.set_exception(value)

    def _run(self, batch: list[_Op]) -> list[tuple[bool, object]]:
        """Worker thread: the batch in one transaction; on failure, one transaction each."""
        state = self._state
        try:
            state.begin()
            values = _apply(state, batch)
            state.commit()
            self.commits += 1
            return [(True, v) for v in values]
        except Exception:  # noqa: BLE001 - isolate the operation that failed
            state.rollback()
        outcomes = []
        for op in batch:
            try:
                state.begin()
                value = op.fn(state, *op.args)
                state.commit()
                self.commits += 1
                outcomes.append((True, value))
            except Exception as error:  # noqa: BLE001 - this one fails alone
                state.rollback()
                outcomes.append((False, error))
        return outcomes

    # ------------------------------------------------------------------------- operations
    # Each returns the queued operation's future: await it, or add a done callback (cheaper
    # than a task per call on the receipt and submit paths).

    def accept(self, messages: list[NewMessage], now: float) -> asyncio.Future:
        return self._submit(sql.accept, messages, now)

    def fetch_pending(self, channel: str, after_id: int, limit: int,
                      now: float) -> asyncio.Future:
        return self._submit(sql.fetch_pending, channel, after_id, limit, now)

    def defer(self, message_id: int, until: float) -> asyncio.Future:
        return self._submit(sql.defer, message_id, until)

    def record_submits(self, results: list[SegmentResult], provider: str) -> asyncio.Future:
        return self._submit(sql.record_submits, results, provider)

    def record_receipts(self, receipts: list[Receipt]) -> asyncio.Future:
        return self._submit(receipts_sql.record_receipts, receipts)

    def record_mo_parts(self, parts: list[MoPart]) -> asyncio.Future:
        return self._submit(receipts_sql.record_mo_parts, parts)

    def record_mo_message(self, message: MoMessage, apps: tuple[str, ...] = ()) -> asyncio.Future:
        return self._submit(receipts_sql.record_mo_message, message, apps)

    def unassembled_mo_parts(self) -> asyncio.Future:
        return self._submit(receipts_sql.unassembled_mo_parts)

    def expire_reports(self, now: float, timeout: float) -> asyncio.Future:
        return self._submit(receipts_sql.expire_reports, now, timeout)

    def message(self, message_id: int) -> asyncio.Future:
        return self._submit(sql.message_view, message_id)

    def mo_view(self, mo_id: int) -> asyncio.Future:
        return self._submit(sql.mo_view, mo_id)

    async def status_counts(self) -> dict[str, int]:
        return dict(self._state.counts)

    async def unmatched_receipts(self) -> int:
        return len(self._state.held)

    def due_callbacks(self, now: float, limit: int) -> asyncio.Future:
        return self._submit(sql.due_callbacks, now, limit)

    def callback_done(self, entry_id: int, delivered: bool, now: float,
                      next_attempt_at: float | None, error: str | None) -> asyncio.Future:
        return self._submit(sql.callback_done, entry_id, delivered, now, next_attempt_at, error)

    def pending_callbacks(self) -> asyncio.Future:
        return self._submit(sql.pending_callbacks)

    def queue_status_callbacks_for(self, apps) -> None:
        if self._state is None:
            raise RuntimeError("the store is not open")
        self._state.status_callbacks = None if apps is None else frozenset(apps)

    # The API's records (gateway.store_api_sql).

    def accept_request(self, request, now: float) -> asyncio.Future:
        return self._submit(api_sql.accept_request, request, now)

    def verify_code(self, app: str, message_id: int, digest: str, now: float) -> asyncio.Future:
        return self._submit(api_sql.verify_code, app, message_id, digest, now)

    def unsubscribe(self, mobile: str, now: float, channel: str) -> asyncio.Future:
        return self._submit(api_sql.unsubscribe, mobile, now, channel)

    def unsubscribed(self) -> asyncio.Future:
        return self._submit(api_sql.unsubscribed)

    def create_template(self, values: dict, first_id: int, now: float) -> asyncio.Future:
        return self._submit(api_sql.create_template, values, first_id, now)

    def update_template(self, template_id: int, values: dict, now: float) -> asyncio.Future:
        return self._submit(api_sql.update_template, template_id, values, now)

    def delete_template(self, template_id: int) -> asyncio.Future:
        return self._submit(api_sql.delete_template, template_id)

    def templates(self) -> asyncio.Future:
        return self._submit(api_sql.templates)

    def create_signature(self, app: str, sign: str, images: list, status: int,
                         now: float) -> asyncio.Future:
        return self._submit(api_sql.create_signature, app, sign, images, status, now)

    def update_signature(self, sign_id: int, sign: str, images: list, status: int,
                         now: float) -> asyncio.Future:
        return self._submit(api_sql.update_signature, sign_id, sign, images, status, now)

    def set_signature_status(self, sign_id: int, status: int, now: float) -> asyncio.Future:
        return self._submit(api_sql.set_signature_status, sign_id, status, now)

    def delete_signature(self, sign_id: int) -> asyncio.Future:
        return self._submit(api_sql.delete_signature, sign_id)

    def signatures(self) -> asyncio.Future:
        return self._submit(api_sql.signatures)

    def counts_snapshot(self) -> Counter:
        """Messages by status, as of the last commit (no query; for metrics scrapes)."""
        return Counter(self._state.counts) if self._state else Counter()

    def unmatched_snapshot(self) -> int:
        """Receipts waiting for a segment, as of the last commit (no query)."""
        return len(self._state.held) if self._state else 0


# Operations over a list of items with one result per item: consecutive ones with the same
# other arguments run as one call, and the results are handed back op by op.
_MERGEABLE = frozenset({receipts_sql.record_receipts, sql.record_submits,
                        receipts_sql.record_mo_parts})


def _apply(state, batch: list[_Op]) -> list:
    values, i = [], 0
    while i < len(batch):
        op = batch[i]
        if op.fn not in _MERGEABLE:
            values.append(op.fn(state, *op.args))
            i += 1
            continue
        j, items, sizes = i, [], []
        while j < len(batch) and batch[j].fn is op.fn and batch[j].args[1:] == op.args[1:]:
            items.extend(batch[j].args[0])
            sizes.append(len(batch[j].args[0]))
            j += 1
        merged = op.fn(state, items, *op.args[1:])
        start = 0
        for size in sizes:
            values.append(merged[start:start + size])
            start += size
        i = j
    return values
