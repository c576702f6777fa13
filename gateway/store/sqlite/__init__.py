"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

``writer`` is the engine (``SqliteStore``: the queue, the writer thread, the transactions);
``schema`` the tables, their layout version and migration (``open_database``); ``state`` what
a transaction works with (``State``: the connection and the counts kept in step with commits)
and the helpers the SQL modules share (``execute_rows``, ``json_rows``); ``messages``
messages, SUBMIT outcomes, reading and the callback outbox; ``settle`` how segments and
messages take their statuses (a final one queues its callback); ``receipts`` status reports
and MO; ``api`` the API's records; ``users`` the apps' users and their numbers by channel;
``console`` the console's records; ``search`` the console's searches; ``retention`` what keeps
the file from growing without end (unmatched reports expire, finished messages go,
idempotency keys are forgotten, in small batches); ``health`` whether the store can write.
The SQL modules run only in the writer thread, inside a transaction the engine opened; each
matches its namesake in ``gateway.store.postgres``.

Offers: SqliteStore.
"""

from .writer import SqliteStore

__all__ = ["SqliteStore"]
