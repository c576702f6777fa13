"""What a transaction of the embedded store works with: ``State`` (the writer's connection, and
the facts kept in step with what is committed) and the helpers the SQL modules of this package
share: ``execute_rows`` (many rows in one or two statements), ``json_rows`` (many rows in one
step), ``padded`` (``IN`` lists of few lengths), the final statuses, ``_new``. The PostgreSQL
store's ``State`` is in ``gateway.store.postgres.state``.

``State``'s facts (messages by status, receipts waiting for their segment) are counts only, so
that memory and the cost of a commit stay the same however many rows there are; a
transaction's changes to them are applied only when it commits (a rollback drops them).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import Counter
from itertools import chain

from gateway.status import DeliveryStatus

FINAL = tuple(s.value for s in DeliveryStatus if s.final)
SUBMITTED = DeliveryStatus.SUBMITTED.value

# A NamedTuple (Accepted, PendingMessage, ReceiptOutcome) from all its fields, without the
# Python frame of its __new__: the store's thread makes one a message, with the GIL.
_new = tuple.__new__


class State:
    """The connection, and in-memory facts kept in step with what is committed: counts only,
    so that memory and the cost of a commit stay the same however many rows there are."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.unmatched = 0                # receipts waiting for a segment (receipts_unmatched)
        self.counts: Counter = Counter()  # messages by status
        # Apps whose final statuses are queued for a callback; None: every app's.
        self.status_callbacks: frozenset[str] | None = None
        self._unmatched_delta = 0
        self._delta: Counter = Counter()

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self._unmatched_delta, self._delta = 0, Counter()

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.unmatched += self._unmatched_delta
        counts = Counter(self.counts)
        counts.update(self._delta)
        self.counts = +counts          # a new object, swapped in whole: readers never see half

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def unmatched_now(self) -> int:
        """Receipts waiting for a segment, this transaction's changes included."""
        return self.unmatched + self._unmatched_delta

    def unmatched_changed(self, count: int) -> None:
        """``count`` receipts more (fewer, when negative) wait for a segment."""
        self._unmatched_delta += count

    def moved(self, old: str | None, new: str | None, count: int = 1) -> None:
        """``count`` messages went from status ``old`` (None: new) to ``new`` (None: gone)."""
        if old is not None:
            self._delta[old] -= count
        if new is not None:
            self._delta[new] += count


ROWS_PER_STATEMENT = 512         # rows a statement of execute_rows holds at most


def execute_rows(db: sqlite3.Connection, head: str, row: str, rows: list[tuple],
                 tail: str = "", repeatable: bool = False, shared: tuple[int, ...] = ()) -> int:
    """Run ``head`` + ``row, row, ...`` + ``tail`` over ``rows`` in one or two statements
    rather than one per row (``executemany``): SQLite steps once per statement, and the
    store's thread gives up and takes back the GIL once per step, which under load costs more
    than the SQL. Statements hold a multiple of 16 rows, then the rest, so that few statement
    texts stay prepared in the connection's cache; when repeating a row changes nothing
    (``repeatable``: an UPDATE ... FROM (VALUES ...) updates a row once however often it is
    named), the last row fills the statement up instead. ``shared``: the columns (indexes in
    a row) of texts (or None) that are often the same in every row (an app, a channel, a
    status; texts only, as 1 == 1.0 == True); one that is, in a statement, is bound once
    rather than once a row: binding a text copies it, which is much of the GIL time a row
    costs. Returns how many rows changed."""
    changed, start, count = 0, 0, len(rows)
    while start < count:
        size = min(count - start, ROWS_PER_STATEMENT)
        if size >= 16 and not repeatable:
            size -= size % 16
        chunk = rows[start:start + size]
        if repeatable and size % 16:
            chunk = chunk + [chunk[-1]] * (16 - size % 16)
        parameters = list(chunk[0])
        columns = list(zip(*chunk[1:])) if shared and len(chunk) > 1 else ()
        same = tuple(i for i in shared if columns and _same(columns[i], chunk[0][i]))
        if same:          # the later rows' other columns, row by row
            parameters += chain.from_iterable(
                zip(*[values for i, values in enumerate(columns) if i not in same]))
        else:
            parameters += chain.from_iterable(chunk[1:])
        changed += db.execute(_statement(head, row, len(chunk), tail, same),
                              parameters).rowcount
        start += size
    return changed


def _same(values: tuple, first) -> bool:
    """Whether every value is ``first`` (None is a value here too)."""
    return values.count(first) == len(values)


@functools.lru_cache(maxsize=1024)
def _statement(head: str, row: str, size: int, tail: str, same: tuple[int, ...]) -> str:
    """``head`` + ``size`` times ``row`` + ``tail``; after the first row, the columns ``same``
    name the first row's parameters (?N: its Nth), so that their values are bound once. The
    other parameters stay anonymous, numbered in the order they come (SQLite scans the
    numbered ones it has seen for each ?N: a few, not thousands, keep preparing cheap)."""
    if not same:
        return head + ", ".join([row] * size) + tail
    marks = row.split("?")
    later = marks[0] + "".join(("?" if column not in same else f"?{column + 1}") + mark
                               for column, mark in enumerate(marks[1:]))
    return head + ", ".join([row] + [later] * (size - 1)) + tail


def json_rows(db: sqlite3.Connection, columns: str, rest: str, parameters=()) -> list[list]:
    """``SELECT columns rest`` with every row in one JSON array: SQLite steps once for the lot
    instead of once per row (and the store's thread takes the GIL back once). Row order is
    the order SQLite aggregates in; callers that need an order sort. Reals come back with 15
    significant digits."""
    text = db.execute(f"SELECT json_group_array(json_array({columns})) {rest}",
                      parameters).fetchone()[0]
    return json.loads(text)


def padded(values: list) -> list:
    """``values`` with the last repeated up to the next power of two (for ``IN (?, ...)``): a
    few statement texts then stay prepared in the connection's cache."""
    target = 1 << max(0, (len(values) - 1).bit_length())
    return values + [values[-1]] * (target - len(values))
