"""The shared store: PostgreSQL through asyncpg, written by one thread with group commit.

``engine`` is the engine (the queue, the writer thread with its own event loop, the
transactions; whether the store can write, and reconnection, through ``health``); ``writer``
puts the store's operations on it (``PostgresStore``) and runs the console's searches on a
read-only connection of their own; ``schema`` the tables, their layout version and migration;
``state`` what a transaction works with (``State``: the connection and the counts kept in step
with commits); ``messages`` messages, SUBMIT outcomes, reading and the callback outbox;
``settle`` how segments and messages take their statuses (a final one queues its callback);
``receipts`` status reports and MO; ``api`` the API's records; ``users`` the apps' users;
``console`` the console's records; ``search`` the console's searches; ``retention`` what keeps
the database from growing without end (unmatched reports expire, finished messages go,
idempotency keys are forgotten, in small batches); ``health`` which errors mean the store cannot
write, the probe that finds out when it can again, and the engine's part that acts on them;
``cluster`` a gateway's membership among several (its session, its locks, the channels' slots).
Each SQL module matches its namesake in ``gateway.store.sqlite`` function for function, so
that a change to one store maps onto one place in the other; both stores have the same tables
and columns (tests/store/test_postgres.py checks it), so copy-store copies between them.

Design for several instances. Several gateways on one database are safe where the database
decides, and the store is built so that it does:
- reports and SUBMIT outcomes lock their Msg_Ids at BEGIN (``messages.begin``), so a report
  and its SUBMIT_RESP recorded at once by two gateways always meet; a message's row is locked
  while its status is derived from its segments. So whether a single-part message's SUBMIT
  outcome goes on its row (layout 7) or, a report waiting for it, in a segments row is
  decided under the lock, and a report looks in both places;
- idempotency keys: messages' unique index (ON CONFLICT), the API's answers under an advisory
  lock on the key; codes are verified under a row lock; MO parts are stored once (unique
  index); template and signature ids come from an upserted counter; the schema is created and
  migrated under an advisory lock;
- the apps' users: every change of an app's users locks its ``user_counts`` row first, so
  ``max_users`` and the count hold across gateways (and a save and a delete take their locks in
  one order);
- the console: an app's name and key are unique (ON CONFLICT), an account is added or changed
  by one upsert that says which, an operator's sessions are trimmed under a lock on the
  account, the first session key stored is everyone's; the searches read committed rows on
  their own connection.
A transaction that meets another's lock in a different order is a deadlock the server breaks
by failing one; the engine then runs each of that batch's operations alone, so it costs time,
never an operation.

- once a gateway joins (``join_cluster``: gateway.pipeline.slots does), ``fetch_pending`` and
  ``due_callbacks`` claim what they return for it (FOR UPDATE SKIP LOCKED), a claim lasting
  as long as its gateway's row in ``cluster_instances``; a dead gateway's messages come back
  ``taken_over``; the channels' slots are advisory locks of its cluster session;
- a long MO is stored once whoever assembles it (``record_mo_message`` locks its parts), and
  ``loose_mo_parts`` lets a gateway assemble with the parts others received;
- the repeat rule's keys are held in ``cluster_repeats``, and each app's messages counted per
  second in ``cluster_app_seconds`` (messages_per_app_per_second), within the request's
  transaction.

Still per process:
- ``State``'s counts (messages by status, unmatched reports), which another gateway's writes
  do not update until ``State.reload`` runs again at a reconnection; the metrics and the
  console's backlog show this process's view;
- what the daemon keeps in memory and re-reads on a timer: the apps made in the console
  (AppDirectory, every 2 s), the templates' and signatures' review states (the API's registry,
  every few seconds), unsubscribed numbers (read at start, added by this process's MO and
  by the others' at each heartbeat: ``cluster``), the callback URLs' verification (each process verifies for itself).

Offers: PostgresStore.
"""

from .writer import PostgresStore

__all__ = ["PostgresStore"]
