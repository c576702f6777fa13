"""The console's part of the configuration: the [console] table.

The operator's web console is off unless ``listen`` names an address, which must not share
a port with the API or the metrics. Sessions are signed with the key in the environment
variable named by ``session_key_env`` (at least 32 characters) or, without one, with a key
the gateway generates once into the store, so that every instance sharing the store accepts
the same sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .api import BOOLEAN
from .schema import (
    INTEGER,
    NUMBER,
    STRING,
    Field,
    in_range,
    listen_address,
    matches,
    split_host_port,
)

MIN_SESSION_KEY = 32
DAY = 86400


def _seconds_between(low: float, high: float):
    return lambda v: None if low <= v <= high else \
        f"is out of range; use a number of seconds in {low:g}..{high:g}"


def _listen(value: str) -> str | None:
    return None if value == "" else listen_address(value)


CONSOLE_FIELDS = (
    Field("listen", STRING, "", _listen),
    Field("session_key_env", STRING, "", matches(r"([A-Za-z_][A-Za-z0-9_]*)?",
                                                  "an environment variable name")),
    Field("idle_timeout", NUMBER, 1800, _seconds_between(60, DAY)),
    Field("session_lifetime", NUMBER, 43200, _seconds_between(300, 7 * DAY)),
    Field("secret_grace", NUMBER, 3600, _seconds_between(0, 7 * DAY)),
    Field("login_failures_per_account", INTEGER, 5, in_range(1, 100)),
    Field("login_failures_per_source", INTEGER, 20, in_range(1, 10000)),
    Field("secure_cookies", BOOLEAN, False),
)


@dataclass(frozen=True)
class ConsoleSettings:
    """The [console] table. ``listen`` "" keeps the console off. ``session_key`` is the value
    of ``session_key_env`` (None: the store's generated key); it is left out of repr."""

    listen: str = ""
    session_key_env: str = ""
    idle_timeout: float = 1800
    session_lifetime: float = 43200
    secret_grace: float = 3600
    login_failures_per_account: int = 5
    login_failures_per_source: int = 20
    secure_cookies: bool = False
    session_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.listen)


def read_console(values: dict, report, env: Mapping[str, str],
                 taken: Mapping[str, str]) -> ConsoleSettings | None:
    """Settings from the [console] values read with CONSOLE_FIELDS; ``taken`` maps the other
    listen keys ("[gateway] api_listen") to their addresses, whose ports the console may not
    use. None when a problem was reported."""
    if len(values) != len(CONSOLE_FIELDS):
        return None
    ok = _check_port(values["listen"], taken, report)
    if values["session_lifetime"] < values["idle_timeout"]:
        report("session_lifetime", "is shorter than idle_timeout; make it at least as long")
        ok = False
    key = None
    if values["session_key_env"]:
        key = env.get(values["session_key_env"])
        if key is None or len(key) < MIN_SESSION_KEY:
            report("session_key_env", f"{values['session_key_env']} "
                   f"{'is not set' if key is None else 'is too short'} in the environment; "
                   f"export at least {MIN_SESSION_KEY} random characters, e.g. from "
                   "`openssl rand -hex 32`")
            ok = False
    return ConsoleSettings(**values, session_key=key) if ok else None


def _check_port(listen: str, taken: Mapping[str, str], report) -> bool:
    if not listen:
        return True
    port = split_host_port(listen)[1]
    for name, address in taken.items():
        try:
            other = split_host_port(address)[1]
        except ValueError:
            continue                  # reported under its own key
        if other == port:
            report("listen", f"uses port {port}, the port of {name}; the console needs a "
                             "port of its own (never the API's)")
            return False
    return True
