"""The store of a configuration file, for the commands that work on a store the daemon made
(and may be running on): reviews, console accounts."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConfigError, load_config


def existing_store(config_path: str) -> tuple[str | None, int]:
    """(the store's path, 0), or (None, the exit status) with the reason printed: 2 when the
    configuration does not validate, 1 when its store does not exist yet."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(error)
        return None, 2
    path = config.gateway.store
    if path == ":memory:" or not Path(path).exists():
        print(f"no store at {path}: start the gateway once so that it creates it")
        return None, 1
    return path, 0
