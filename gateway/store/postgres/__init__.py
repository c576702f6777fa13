"""The shared store: PostgreSQL through asyncpg, written by one task with group commit.

``writer`` is the engine (``PostgresStore``: the queue, the writer task, the transactions,
reconnection); ``messages`` the schema and its version, messages, SUBMIT outcomes, reading
and the callback outbox; ``receipts`` status reports and MO; ``api`` the API's records. Each
module matches its namesake in ``gateway.store.sqlite`` function for function, so that a
change to one store maps onto one place in the other.

Offers: PostgresStore.
"""

from .writer import PostgresStore

__all__ = ["PostgresStore"]
