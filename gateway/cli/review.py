"""``cmpp-gateway sign approve|reject ID`` and ``cmpp-gateway template approve|reject ID``.

A private deployment has no cloud reviewer: the operator reviews the signatures and templates
that apps make through the API::

    cmpp-gateway sign approve 3 --config /etc/cmpp-gateway.toml
    cmpp-gateway template reject 1001 --config /etc/cmpp-gateway.toml

The command opens the store named in the configuration (SQLite in WAL mode with a busy
timeout, or the PostgreSQL database, so the daemon may be running), sets the status (1
approved, 2 refused), says what it did and exits 0. A running daemon re-reads the statuses
from the store every few seconds (gateway.api.templates_signs.REVIEW_POLL). An id that is not
in the store exits 1 (templates of the configuration are approved by definition and are not
there), and so does a store that does not exist yet or cannot be opened; a configuration that
does not validate exits 2.
"""

from __future__ import annotations

import asyncio
import time

from gateway.store import APPROVED, PENDING, REFUSED, Store

from .stores import existing_store, open_existing

DECISIONS = {"approve": APPROVED, "reject": REFUSED}
STATUS_WORDS = {PENDING: "waiting for review", APPROVED: "approved", REFUSED: "refused"}
KINDS = {"sign": "signature", "template": "template"}


def add_review_commands(subparsers) -> None:
    """Register ``sign`` and ``template``, each with ``approve ID`` and ``reject ID``, on an
    argparse ``add_subparsers()`` object."""
    for kind, noun in KINDS.items():
        parser = subparsers.add_parser(kind, help=f"approve or reject a {noun} made through "
                                                  "the API")
        decisions = parser.add_subparsers(dest="decision", required=True)
        for decision in DECISIONS:
            leaf = decisions.add_parser(decision, help=f"{decision} {noun} ID")
            leaf.add_argument("id", type=int, help=f"the {noun}'s id ("
                              f"{'sign_id' if kind == 'sign' else 'temp_id'} in the API)")
            leaf.add_argument("--config", required=True, help="the TOML configuration file")
            leaf.set_defaults(func=lambda args, kind=kind: review(args.config, kind, args.id,
                                                                  args.decision))


def review(config_path: str, kind: str, item_id: int, decision: str) -> int:
    """Approve or reject the signature (``kind`` "sign") or template ``item_id`` in the store
    of the configuration at ``config_path``; print what happened. 0 when done, 1 when there
    is no such id or no store, 2 when the configuration does not validate."""
    store, status = existing_store(config_path)
    if store is None:
        return status
    return asyncio.run(_review(store, kind, item_id, DECISIONS[decision]))


async def _review(store: Store, kind: str, item_id: int, status: int) -> int:
    if not await open_existing(store):
        return 1
    try:
        row = await _find(store, kind, item_id)
        if row is None or not await _set_status(store, kind, item_id, status):
            print(f"no {KINDS[kind]} {item_id} in the store {store.name}" +
                  (" (templates of the configuration are approved already)"
                   if kind == "template" else ""))
            return 1
        what = repr(row["sign"]) if kind == "sign" else f"({row['type']})"
        print(f"{KINDS[kind]} {item_id} {what} of app {row['app']}: {STATUS_WORDS[status]} "
              f"(was {STATUS_WORDS.get(row['status'], row['status'])})")
        return 0
    finally:
        await store.close()


async def _find(store: Store, kind: str, item_id: int) -> dict | None:
    rows = await (store.signatures() if kind == "sign" else store.templates())
    return next((row for row in rows if row["id"] == item_id), None)


async def _set_status(store: Store, kind: str, item_id: int, status: int) -> bool:
    if kind == "sign":
        return await store.set_signature_status(item_id, status, time.time())
    return await store.update_template(item_id, {"status": status}, time.time())

