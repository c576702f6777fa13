"""The API's part of the configuration: [api] limits, [apps.NAME] and [templates.ID].

Apps are set up the way cloud SMS consoles do it: an app key and master secret (HTTP Basic on
every call), up to 10 whitelisted IPs or CIDR blocks, a status-report URL and an MO URL with
the format of their callbacks (JSMS's, or our signed JSON) and their retry schedule, and the
channels the app may send on. Templates carry a type (verification code, notification,
marketing), content with {{name}} placeholders, and the signature put in front of it.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from dataclasses import dataclass, field, replace
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
NUMBERS = Kind("a list of numbers", lambda v: isinstance(v, list) and
               all(NUMBER.accepts(x) for x in v))
TEMPLATE_TYPES = ("code", "notification", "marketing")
APP_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
CALLBACK_FORMATS = ("jsms", "signed-json")
# JSMS retries a failed callback after 3 minutes, 1 hour and 12 hours (jsms-callbacks.md).
JSMS_RETRIES = (180, 3600, 43200)
MAX_RETRIES, MAX_RETRY_WAIT = 10, 7 * 86400
MAX_URL = 1024


def callback_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be a callback URL (the words after it in an error), or None: an
    absolute http:// or https:// URL with a host, no spaces or control characters, at most
    1024 characters."""
    try:
        parts = urllib.parse.urlsplit(value)
        port_ok = parts.port != 0                   # .port raises ValueError past 65535
    except ValueError:
        parts, port_ok = None, False
    if (not port_ok or parts.scheme not in ("http", "https") or not parts.hostname
            or len(value) > MAX_URL or not re.fullmatch(r"[^\s\x00-\x1f\x7f]+", value)):
        return f"is not accepted; use an http:// or https:// URL (at most {MAX_URL} characters)"
    return None


def _url(value: str) -> str | None:
    return callback_url_problem(value) if value else None


def _retries(value: list) -> str | None:
    if len(value) <= MAX_RETRIES and all(math.isfinite(v) and 0 < v <= MAX_RETRY_WAIT
                                         for v in value):
        return None
    return (f"is not accepted; use at most {MAX_RETRIES} waits in seconds, each > 0 and at most "
            f"{MAX_RETRY_WAIT} (7 days), e.g. [180, 3600, 43200]")


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as error:
        return f"is not a regular expression ({error})"
    return None


def _networks(most: int, what: str):
    """The check of a list of at most ``most`` IP addresses or CIDR blocks (``what`` names
    such a list in the message)."""
    def check(value: list) -> str | None:
        if len(value) > most:
            return f"has more than {most} entries; {what} holds up to {most} IPs or CIDR blocks"
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                return f"lists {entry!r}, which is not an IP address or CIDR block"
        return None
    return check


def _words(value: list) -> str | None:
    return "has an empty word" if any(not w for w in value) else None


API_FIELDS = (
    Field("max_body", INTEGER, 1 << 20, in_range(1024, 64 << 20)),
    Field("mobile_pattern", STRING, r"(?:\+?86)?1[3-9]\d{9}", _regex),
    Field("code_length", INTEGER, 6, in_range(4, 8)),
    Field("code_validity", NUMBER, 300, seconds()),
    Field("code_attempts", INTEGER, 5, in_range(1, 100)),
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
    Field("callback_verify_interval", NUMBER, 60, seconds()),
    Field("max_connections", INTEGER, 1000, in_range(1, 100000)),
    Field("max_upload", INTEGER, 8 << 20, in_range(1024, 256 << 20)),
    Field("max_users", INTEGER, 1_000_000, in_range(1, 100_000_000)),
    Field("max_connections_per_source", INTEGER, 100, in_range(1, 100000)),
    Field("header_timeout", NUMBER, 10, seconds()),
    Field("body_timeout", NUMBER, 30, seconds()),
    Field("idle_timeout", NUMBER, 60, seconds()),
    Field("trusted_proxies", STRINGS, [], _networks(100, "the list of trusted proxies")),
)

APP_FIELDS = (
    Field("app_key", STRING, REQUIRED, matches(r"[A-Za-z0-9_-]{1,64}", "1 to 64 letters, digits, "
                                               "_ or -"), example='"7d431e42dfa6a6d693ac2d04"'),
    Field("master_secret", STRING, None, matches(r"[\x21-\x7e]{8,128}", "8 to 128 printable "
                                                 "ASCII characters"), secret=True),
    Field("master_secret_env", STRING, None, matches(r"[A-Za-z_][A-Za-z0-9_]*",
                                                     "an environment variable name")),
    Field("whitelist", STRINGS, [], _networks(10, "a whitelist")),
    Field("status_callback", STRING, "", _url),
    Field("mo_callback", STRING, "", _url),
    Field("channels", STRINGS, []),
    Field("signature", STRING, "", matches(r"[^【】\s]{0,20}", "up to 20 characters, no 【】")),
    Field("enabled", BOOLEAN, True),
    Field("callback_format", STRING, "jsms", one_of(*CALLBACK_FORMATS)),
    Field("callback_retries", NUMBERS, None, _retries),
    Field("mo_receive_time", BOOLEAN, False),
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
    code_attempts: int = 5             # wrong checks of a code, then it is spent
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
    callback_verify_interval: float = 60
    max_connections: int = 1000
    max_upload: int = 8 << 20          # bytes of a users file (CSV or XLSX)
    max_users: int = 1_000_000         # users (userid and numbers) an app may hold
    max_connections_per_source: int = 100   # from one address; max_connections caps it too
    header_timeout: float = 10              # a request's line and headers, from the first byte
    body_timeout: float = 30                # its body, from the end of its headers
    idle_timeout: float = 60                # a kept-alive connection waiting for its next request
    trusted_proxies: tuple[str, ...] = ()   # reverse proxies whose X-Forwarded-For is believed


@dataclass(frozen=True)
class AppConfig:
    """One application: its credentials, whitelist, callback URLs and channels (the first is
    its default). ``master_secret`` is resolved from the environment when given by name.

    ``callback_format`` is "jsms" (JSMS's form-encoded, SHA-1-signed callbacks to URLs that
    passed its echostr check) or "signed-json" (JSON bodies with an HMAC header).
    ``callback_retries`` is the wait before each retry of a failed callback (None: the
    format's default, see ``retry_schedule``). ``mo_receive_time``: signed-json MO callbacks
    carry ``received_at`` (seed 004's "uplink SMS send time" option; JSMS's always do)."""

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
    callback_format: str = "jsms"
    callback_retries: tuple[float, ...] | None = None
    mo_receive_time: bool = False

    @property
    def retry_schedule(self) -> tuple[float, ...] | None:
        """The wait before each retry, in seconds; None: exponential backoff for ``[api]
        callback_retry_for`` (signed-json's default)."""
        if self.callback_retries is not None:
            return self.callback_retries
        return JSMS_RETRIES if self.callback_format == "jsms" else None


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
    values["trusted_proxies"] = tuple(values.get("trusted_proxies", ()))
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
    retries = values["callback_retries"]
    app = AppConfig(name=name, **{
        **values, "master_secret": secret, "whitelist": tuple(values["whitelist"]),
        "channels": tuple(values["channels"] or channels),
        "callback_retries": None if retries is None else tuple(retries)})
    # Shown in full by check-config: the schedule the format gives when none is set.
    return replace(app, callback_retries=app.retry_schedule)


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


# Apps made in the operator's console: the name as seed 004's console takes it, and the
# fields an operator sets (the console makes the key and the secret). A field added to
# APP_FIELDS and AppConfig is a console setting too, stored with the others.
CONSOLE_APP_NAME = re.compile(r"[A-Za-z0-9!@$%^\-_=+\[{}\]:,./?~#*;|]{1,30}")
CONSOLE_APP_NAME_RULE = ("1 to 30 letters, digits or the characters "
                         "!@$%^-_=+[{}]:,./?~#*;|")
APP_SETTINGS = tuple(f for f in APP_FIELDS
                     if f.name not in ("app_key", "master_secret", "master_secret_env"))


def read_app_settings(table: dict, report, channels: Mapping) -> dict | None:
    """The settings of a console-made app from ``table`` (field name to value, as the TOML
    would hold them), checked like an [apps.NAME] table; None when a problem was reported."""
    values = read_table(table, APP_SETTINGS, report)
    ok = len(values) == len(APP_SETTINGS)
    for channel in values.get("channels", []):
        if channel not in channels:
            report("channels", f"{channel!r} is not a channel; use one of "
                               f"{', '.join(sorted(channels)) or '(none configured)'}")
            ok = False
    return values if ok else None


def app_from_settings(name: str, app_key: str, secret: str, settings: Mapping,
                      channels: Mapping) -> AppConfig:
    """The AppConfig of a console-made app from its stored ``settings``: keys this version
    does not know are ignored, missing ones take their defaults, and channels that are no
    longer configured are left out (none left: every channel, as in the TOML)."""
    values = {f.name: settings.get(f.name, f.default) for f in APP_SETTINGS}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values["channels"] = tuple(c for c in values["channels"] if c in channels) or tuple(channels)
    return AppConfig(name=name, app_key=app_key, master_secret=secret, master_secret_env=None,
                     **values)


def check_unique_keys(apps: Mapping[str, AppConfig], report) -> None:
    seen: dict[str, str] = {}
    for name, app in apps.items():
        if app.app_key in seen:
            report(name, f"app_key is also the key of app {seen[app.app_key]!r}; keys are unique")
        seen[app.app_key] = name
