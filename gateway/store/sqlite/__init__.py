"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

``writer`` is the engine (``SqliteStore``: the queue, the writer thread, the transactions);
``messages`` the schema, messages, SUBMIT outcomes, reading and the callback outbox;
``receipts`` status reports and MO; ``api`` the API's records; ``users`` the apps' users and
their numbers by channel; ``retention`` what keeps the file from growing without end
(unmatched reports expire, finished messages go, idempotency keys are forgotten, in small
batches); ``health`` whether the store can write. The SQL modules run only in the writer
thread, inside a transaction the engine opened.

Offers: SqliteStore.
"""

from .writer import SqliteStore

__all__ = ["SqliteStore"]
