"""The store of a configuration file, for the commands that work on a store the daemon made
(and may be running on): reviews, console accounts."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConfigError, load_config
from gateway.store import Store, StoreError, StoreUnavailable, create_store, is_database_url


def existing_store(config_path: str) -> tuple[Store | None, int]:
    """(the configuration's store, not yet opened, 0), or (None, the exit status) with the
    reason printed: 2 when the configuration does not validate, 1 when its SQLite file does not
    exist yet (a PostgreSQL store's absence shows when it is opened: ``open_existing``)."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(error)
        return None, 2
    path = config.gateway.store
    if not is_database_url(path) and (path == ":memory:" or not Path(path).exists()):
        print(f"no store at {path}: start the gateway once so that it creates it")
        return None, 1
    return create_store(path, config.gateway.store_password), 0


async def open_existing(store: Store) -> bool:
    """Open ``store``; False, with the reason printed, when it cannot be used (or its
    database cannot be reached)."""
    try:
        await store.open()
    except (StoreError, StoreUnavailable) as error:
        print(error)
        return False
    return True
