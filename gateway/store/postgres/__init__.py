"""The shared store: PostgreSQL through asyncpg, written by one thread with group commit.

``writer`` is the engine (``PostgresStore``: the queue, the writer thread, the transactions,
reconnection); ``schema`` the tables, their layout version and migration; ``messages``
messages, SUBMIT outcomes, reading and the callback outbox; ``receipts`` status reports and
MO; ``api`` the API's records. Each
module matches its namesake in ``gateway.store.sqlite`` function for function, so that a
change to one store maps onto one place in the other.

Several gateways on one database (the store is ready for it where the database can decide):
reports and SUBMIT outcomes lock their Msg_Ids at BEGIN, so a report and its SUBMIT_RESP
recorded at once by two gateways always meet; idempotency keys (messages' unique index, the
API's answers under an advisory lock on the key), codes (row lock), MO parts (unique index),
template and signature ids (an upserted counter) and the schema migration (an advisory lock)
are decided by the database. Still per process, for that work to come: which gateway submits a
pending message or sends a callback (``fetch_pending`` and ``due_callbacks`` will need claims
that expire, with FOR UPDATE SKIP LOCKED), the reassembly of long MO whose parts reach
different gateways, and ``State``'s counts, which another gateway's writes do not update until
``State.reload`` runs again.

Offers: PostgresStore.
"""

from .writer import PostgresStore

__all__ = ["PostgresStore"]
