"""The API's part of the configuration: [api] limits, [apps.NAME] and [templates.ID].

Apps are set up the way cloud SMS consoles do it: an app key and master secret (HTTP Basic on
every call), up to 10 whitelisted IPs or CIDR blocks, a status-report URL and an MO URL, and
the channels the app may send on. Templates carry a type (verification code, notification,
marketing), content with {{name}} placeholders, and the signature put in front of it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping

from .schema import (
    INTEGER,
    NUMBER,
    REQUIRED,
    STRING,
    Field,
    Kind,
    in_range,
    matches,
    one_of,
    read_table,
    seconds,
)

BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
STRINGS = Kind("a list of strings", lambda v: isinstance(v, list) and
               all(isinstance(x, str) for x in v))
TEMPLATE_TYPES = ("code", "notification", "marketing")
APP_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
URL = r"(https?://\S+)?"


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as error:
        return f"is not a regular expression ({error})"
    return None


def _networks(value: list) -> str | None:
    if len(value) > 10:
        return "has more than 10 entries; a whitelist holds up to 10 IPs or CIDR blocks"
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return f"lists {entry!r}, which is not an IP address or CIDR block"
    return None


def _words(value: list) -> str | None:
    return "has an empty word" if any(not w for w in value) else None


API_FIELDS = (
    Field("max_body", INTEGER, 1 << 20, in_range(1024, 64 << 20)),
    Field("mobile_pattern", STRING, r"(?:\+?86)?1[3-9]\d{9}", _regex),
    Field("code_length", INTEGER, 6, in_range(4, 8)),
    Field("code_validity", NUMBER, 300, seconds()),
    Field("codes_per_number_per_minute", INTEGER, 1, in_range(0, 1000)),
    Field("codes_per_number_per_hour", INTEGER, 10, in_range(0, 100000)),
    Field("messages_per_app_per_second", NUMBER, 0, lambda v: None if v >= 0 else
          "is out of range; use a number >= 0 (0 means no limit)"),
    Field("repeat_window", NUMBER, 30, seconds(allow_zero=True)),
    Field("repeat_keys", INTEGER, 1_000_000, in_range(1000, 100_000_000)),
    Field("idempotency_window", NUMBER, 86400, seconds()),
    Field("sensitive_words", STRINGS, [], _words),
    Field("auto_approve_signatures", BOOLEAN, False),
    Field("callback_retry_for", NUMBER, 86400, seconds()),
    Field("callback_timeout", NUMBER, 10, seconds()),
    Field("max_connections", INTEGER, 1000, in_range(1, 100000)),
)

APP_FIELDS = (
    Field("app_key", STRING, REQUIRED, matches(r"[A-Za-z0-9_-]{1,64}", "1 to 64 letters, digits, "
                                               "_ or -"), example='"7d431e42dfa6a6d693ac2d04"'),
    Field("master_secret", STRING, None, matches(r"[\x21-\x7e]{8,128}", "8 to 128 printable "
                                                 "ASCII characters"), secret=True),
    Field("master_secret_env", STRING, None, matches(r"[A-Za-z_][A-Za-z0-9_]*",
                                                     "an environment variable name")),
    Field("whitelist", STRINGS, [], _networks),
    Field("status_callback", STRING, "", matches(URL, "an http:// or https:// URL")),
    Field("mo_callback", STRING, "", matches(URL, "an http:// or https:// URL")),
    Field("channels", STRINGS, []),
    Field("signature", STRING, "", matches(r"[^【】\s]{0,20}", "up to 20 characters, no 【】")),
    Field("enabled", BOOLEAN, True),
)

TEMPLATE_FIELDS = (
    Field("app", STRING, ""),
    Field("type", STRING, REQUIRED, one_of(*TEMPLATE_TYPES), example='"notification"'),
    Field("content", STRING, REQUIRED, matches(r"(?s).{1,500}", "1 to 500 characters"),
          example='"您的订单{{order}}已发货"'),
    Field("signature", STRING, "", matches(r"[^【】\s]{0,20}", "up to 20 characters, no 【】")),
    Field("code_length", INTEGER, 0, lambda v: None if v == 0 or 4 <= v <= 8 else
          "is out of range; use 4..8 (0: the [api] default)"),
    Field("ttl", NUMBER, 0, seconds(allow_zero=True)),
    Field("channel", STRING, ""),
)


@dataclass(frozen=True)
class ApiSettings:
    max_body: int = 1 << 20
    mobile_pattern: str = r"(?:\+?86)?1[3-9]\d{9}"
    code_length: int = 6
    code_validity: float = 300
    codes_per_number_per_minute: int = 1
    codes_per_number_per_hour: int = 10
    messages_per_app_per_second: float = 0
    repeat_window: float = 30
    repeat_keys: int = 1_000_000
    idempotency_window: float = 86400
    sensitive_words: tuple[str, ...] = ()
    auto_approve_signatures: bool = False
    callback_retry_for: float = 86400
    callback_timeout: float = 10
    max_connections: int = 1000


@dataclass(frozen=True)
class AppConfig:
    """One application: its credentials, whitelist, callback URLs and channels (the first is
    its default). ``master_secret`` is resolved from the environment when given by name."""

    name: str
    app_key: str
    master_secret: str = field(repr=False)
    master_secret_env: str | None
    whitelist: tuple[str, ...]
    status_callback: str
    mo_callback: str
    channels: tuple[str, ...]
    signature: str
    enabled: bool


@dataclass(frozen=True)
class TemplateConfig:
    id: int
    app: str
    type: str
    content: str
    signature: str
    code_length: int
    ttl: float
    channel: str


def read_api(table: dict, report) -> ApiSettings | None:
    values = read_table(table, API_FIELDS, report)
    values["sensitive_words"] = tuple(values.get("sensitive_words", ()))
    return ApiSettings(**values) if len(values) == len(API_FIELDS) else None


def read_app(name: str, table: dict, report, env: Mapping[str, str],
             channels: Mapping) -> AppConfig | None:
    if not APP_NAME.fullmatch(name):
        report("", "not a valid app name; use 1 to 32 letters, digits, _ or -")
    values = read_table(table, APP_FIELDS, report)
    secret = _secret(table, values, env, report)
    for channel in values.get("channels", []):
        if channel not in channels:
            report("channels", f"{channel!r} is not a channel; use one of "
                               f"{', '.join(sorted(channels)) or '(none configured)'}")
    if secret is None or len(values) != len(APP_FIELDS):
        return None
    return AppConfig(name=name, **{**values, "master_secret": secret,
                                   "whitelist": tuple(values["whitelist"]),
                                   "channels": tuple(values["channels"] or channels)})


def _secret(table: dict, values: dict, env: Mapping[str, str], report) -> str | None:
    given = [k for k in ("master_secret", "master_secret_env") if k in table]
    if len(given) != 1:
        report("master_secret", "give master_secret or master_secret_env, not both"
               if given else 'missing required key; add master_secret = "..." or '
                             'master_secret_env = "VARIABLE"')
        return None
    if values.get("master_secret") is not None:
        return values["master_secret"]
    variable = values.get("master_secret_env")
    if variable is None:
        return None
    if variable not in env:
        report("master_secret_env", f"{variable} is not set in the environment; export it "
                                    "before starting the gateway")
        return None
    return env[variable]


def read_template(key: str, table: dict, report, apps: Mapping,
                  channels: Mapping) -> TemplateConfig | None:
    if not re.fullmatch(r"[1-9][0-9]{0,9}", key):
        report("", "a template id is a positive integer, e.g. [templates.1]")
    values = read_table(table, TEMPLATE_FIELDS, report)
    if values.get("app") and values["app"] not in apps:
        report("app", f"{values['app']!r} is not an app; use one of {', '.join(sorted(apps))}")
    if values.get("channel") and values["channel"] not in channels:
        report("channel", f"{values['channel']!r} is not a channel")
    if len(values) != len(TEMPLATE_FIELDS) or not key.isdigit():
        return None
    return TemplateConfig(id=int(key), **values)


def check_unique_keys(apps: Mapping[str, AppConfig], report) -> None:
    seen: dict[str, str] = {}
    for name, app in apps.items():
        if app.app_key in seen:
            report(name, f"app_key is also the key of app {seen[app.app_key]!r}; keys are unique")
        seen[app.app_key] = name
