"""What a transaction of the shared store works with: ``State`` (the writer's connection, and the
facts kept in step with what is committed) and the small helpers the SQL modules of this
package share (``columns`` for ``unnest``, ``changed`` for a command's row count, the final
statuses). SQLite's ``State`` is in ``gateway.store.sqlite.state``.

``State``'s facts (messages by status, receipts waiting for their segment) are applied only
when the transaction commits; with several gateways on one database they are this process's
view, re-read from the database at every (re)connection.
"""

from __future__ import annotations

from collections import Counter

from gateway.status import DeliveryStatus

FINAL = tuple(s.value for s in DeliveryStatus if s.final)
SUBMITTED = DeliveryStatus.SUBMITTED.value


class State:
    """The connection, and in-memory facts kept in step with what is committed."""

    def __init__(self, db) -> None:
        self.db = db
        self.unmatched = 0                                    # receipts waiting for a segment
        self.counts: Counter = Counter()                      # messages by status
        # Apps whose final statuses are queued for a callback; None: every app's.
        self.status_callbacks: frozenset[str] | None = None
        # This gateway's id among several (cluster.ClusterSession.join); None: it claims
        # nothing, as one gateway alone need not.
        self.instance: int | None = None
        self._unmatched = 0
        self._delta: Counter = Counter()

    def begin(self) -> None:
        self._unmatched, self._delta = 0, Counter()

    def commit(self) -> None:
        self.unmatched += self._unmatched
        counts = Counter(self.counts)
        counts.update(self._delta)
        self.counts = +counts          # a new object, swapped in whole: readers never see half

    def hold(self, count: int = 1) -> None:
        self._unmatched += count

    def release(self, count: int) -> None:
        self._unmatched -= count

    def moved(self, old: str | None, new: str | None, count: int = 1) -> None:
        """``count`` messages went from status ``old`` (None: new) to ``new`` (None: gone)."""
        if old is not None:
            self._delta[old] -= count
        if new is not None:
            self._delta[new] += count

    async def reload(self, db=None) -> None:
        """Re-read the facts from the database (at open, and on the connection that replaces
        a lost one, ``db``, before it does): a count of the whole table, for which a table
        scan is the way (see engine.PLANNER_SETTINGS)."""
        db = db or self.db
        async with db.transaction():
            await db.execute("SET LOCAL enable_seqscan = on")
            rows = await db.fetch("SELECT status, COUNT(*) FROM messages GROUP BY status")
            unmatched = await db.fetchval(
                "SELECT COUNT(*) FROM receipts WHERE message_id IS NULL")
        self.counts, self.unmatched = Counter({r[0]: r[1] for r in rows}), unmatched


def columns(rows: list[tuple], width: int) -> list[list]:
    """``rows`` as ``width`` column lists, the arguments of an ``unnest($1::t[], ...)``."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows)]


def changed(status: str) -> int:
    """The row count of a command's status ("UPDATE 3" -> 3)."""
    return int(status.rsplit(" ", 1)[1])
