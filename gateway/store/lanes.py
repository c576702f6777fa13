"""The order in which a store's writer takes its operations: three lanes, taken in turn.

* ``URGENT``: operations on urgent messages alone (accepting a verification code, fetching the
  urgent messages). Whenever some wait, they are taken next, whatever else waits.
* ``PIPELINE``: what keeps the SMS center's windows full and its answers flowing: SUBMIT
  outcomes, status reports, MO parts, fetching pending messages, deferring one. The dispatcher
  may have only so many segments sent whose outcome is not yet committed, so each of these
  commits frees SUBMITs: they must not wait behind a long transaction of other work.
* ``BULK``: everything else, in the order it came: accepting batches of messages, the API's
  and the console's records, callbacks, retention.

Without urgent work, the writer alternates: the pipeline lane's operations (as many as came,
up to ``batch_limit``) in one transaction, then bulk operations worth at most ``bulk_rows``
rows (at least one operation; a request of more rows goes whole, in a transaction of its own)
in the next. So while batches of thousands of messages are being accepted, the messages
already accepted are submitted and their reports stored at the same time, instead of
waiting for the accepts to stop. A pipeline operation may be committed before a bulk
operation queued earlier (never one of its own lane); a bulk operation always sees the
pipeline operations queued before it, as the pipeline's turn comes first.
"""

from __future__ import annotations

from collections import deque

URGENT_LANE, PIPELINE, BULK = 0, 1, 2

BULK_ROWS = 1000        # rows of bulk work in one transaction (see the module's doc)


class Op:
    """One queued operation: ``fn(state, *args)``, the future its outcome resolves, and
    ``rows``, how much bulk work it is (1 for most; the messages of an accept)."""

    __slots__ = ("args", "fn", "future", "rows")

    def __init__(self, fn, args, future, rows):
        self.fn, self.args, self.future, self.rows = fn, args, future, rows


class Lanes:
    """Operations (``Op``) waiting for the writer, in their lanes (append from any thread;
    take from the writer's)."""

    def __init__(self, batch_limit: int, bulk_rows: int = BULK_ROWS) -> None:
        self.batch_limit, self.bulk_rows = batch_limit, bulk_rows
        self._lanes: tuple[deque, deque, deque] = (deque(), deque(), deque())
        self._bulk_turn = False               # the pipeline's turn first

    def put(self, op, lane: int) -> None:
        self._lanes[lane].append(op)

    def __bool__(self) -> bool:
        return any(self._lanes)

    @property
    def urgent(self) -> bool:
        return bool(self._lanes[URGENT_LANE])

    def next_batch(self) -> list:
        """The operations of the next transaction (none when nothing waits)."""
        urgent, pipeline, bulk = self._lanes
        if urgent:
            return self._take(urgent)
        if self._bulk_turn and bulk or not pipeline:
            self._bulk_turn = False
            return self._take_bulk(bulk)
        self._bulk_turn = True
        return self._take(pipeline)

    def _take(self, lane: deque) -> list:
        return [lane.popleft() for _ in range(min(len(lane), self.batch_limit))]

    def _take_bulk(self, lane: deque) -> list:
        batch, rows = [], 0
        while lane and len(batch) < self.batch_limit:
            rows += lane[0].rows
            if batch and rows > self.bulk_rows:
                break
            batch.append(lane.popleft())
        return batch
