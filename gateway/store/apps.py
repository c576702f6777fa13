"""The apps the gateway serves: those of the configuration and those made in the console.

``AppDirectory`` is a read-only mapping from app name to ``AppConfig`` that the API (to
authenticate), the callback sender (for URLs and secrets) and the console share. Configured
apps are fixed for the life of the process (a SIGHUP reload reads them again). Apps made in
the console live in the store: the daemon has every instance read them again every two
seconds (``gateway.daemon.APPS_POLL``), and the instance whose console changed one at once,
so that a new app, a changed URL or whitelist, a disabled app or a new secret takes effect
on every instance sharing the store within that time. A configured app wins over a stored
one with the same name or key; the stored one is then ignored, with a warning.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator, Mapping

from gateway.config import AppConfig, app_from_settings

from .console import StoredApp

log = logging.getLogger("cmpp_gateway.apps")

APPS_POLL = 2.0


class AppDirectory(Mapping[str, AppConfig]):
    """Apps by name, by key, with their whitelists parsed, from the configuration and the
    store; ``refresh()`` reads the store again."""

    def __init__(self, configured: Mapping[str, AppConfig], channels: Mapping, store,
                 clock: Callable[[], float] = time.time) -> None:
        self.configured = dict(configured)
        self.channels, self.store, self.clock = channels, store, clock
        self.stored: dict[str, StoredApp] = {}
        self._ignored: set[str] = set()
        self._install({})

    # ------------------------------------------------------------------------- lookups

    def __getitem__(self, name: str) -> AppConfig:
        return self._apps[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._apps)

    def __len__(self) -> int:
        return len(self._apps)

    def by_key(self, app_key: str) -> AppConfig | None:
        return self._by_key.get(app_key)

    def networks(self, name: str) -> list:
        """The app's whitelist as networks; empty: any address."""
        return self._networks.get(name, [])

    def is_configured(self, name: str) -> bool:
        return name in self.configured

    def secret_matches(self, app: AppConfig, secret: str) -> bool:
        """Whether ``secret`` is the app's master secret, or the one it replaced while that
        one's grace period lasts. Both comparisons take constant time."""
        given = secret.encode()
        current = hmac.compare_digest(app.master_secret.encode(), given)
        stored = None if self.is_configured(app.name) else self.stored.get(app.name)
        previous = bool(stored and stored.previous_secret and stored.previous_until
                        and stored.previous_until > self.clock())
        was = previous and hmac.compare_digest(stored.previous_secret.encode(), given)
        return current or was

    # ------------------------------------------------------------------------- reading

    async def refresh(self) -> bool:
        """Read the stored apps; True when something changed. Errors of the store
        propagate and change nothing."""
        stored = {row.name: row for row in await self.store.apps()}
        if stored == self.stored:
            return False
        self._install(stored)
        return True

    def _install(self, stored: dict[str, StoredApp]) -> None:
        """Swap in new lookups at once, so that readers never see half of them."""
        apps = dict(self.configured)
        keys = {app.app_key for app in apps.values()}
        for name, row in stored.items():
            if name in apps or row.app_key in keys:
                self._ignore(name)
                continue
            apps[name] = app_from_settings(name, row.app_key, row.master_secret, row.settings,
                                           self.channels)
            keys.add(row.app_key)
        self.stored = stored
        self._apps = apps
        self._by_key = {app.app_key: app for app in apps.values()}
        self._networks = {name: [ipaddress.ip_network(w, strict=False) for w in app.whitelist]
                          for name, app in apps.items()}

    def _ignore(self, name: str) -> None:
        if name not in self._ignored:
            self._ignored.add(name)
            log.warning("app %s made in the console has the name or key of an app of the "
                        "configuration; the configuration's is used", name)
