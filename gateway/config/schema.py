"""The configuration file's schema: one table of field specs per section, and the reader that
checks a parsed TOML table against it.

A check returns None when a value is right and, when it is wrong, the words that follow the
value in the error ("is out of range; use 1..65535"), so that every message ends by saying
what would be accepted. This module knows nothing of files or sections: problems go to a
``report(key, message)`` callable that the caller binds to a section.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple
from urllib.parse import parse_qs, urlsplit

Check = Callable[[object], "str | None"]
Report = Callable[[str, str], None]


class Kind(NamedTuple):
    """A TOML value type: its name in messages ("an integer") and the test a value must pass."""

    noun: str
    accepts: Callable[[object], bool]


INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
STRING = Kind("a string", lambda v: isinstance(v, str))

REQUIRED = object()  # the default of a key that has none


@dataclass(frozen=True)
class Field:
    """One key of a table: its kind, its default (REQUIRED when it must be given), the check its
    value must pass, an example shown when a required key is missing, and whether the value is
    a secret that messages must never show."""

    name: str
    kind: Kind
    default: object = REQUIRED
    check: Check | None = None
    example: str = ""
    secret: bool = False


def in_range(low: int, high: int) -> Check:
    """Accept low <= value <= high."""
    return lambda v: None if low <= v <= high else f"is out of range; use {low}..{high}"


def seconds(*, allow_zero: bool = False) -> Check:
    """Accept a finite number of seconds, > 0 (or >= 0 with allow_zero)."""
    bound = ">= 0" if allow_zero else "> 0"

    def check(value):
        if math.isfinite(value) and (value > 0 or (allow_zero and value == 0)):
            return None
        return f"is out of range; use a number of seconds {bound}"
    return check


def rate(value) -> str | None:
    """Accept a finite rate >= 0, where 0 means no limit."""
    if math.isfinite(value) and value >= 0:
        return None
    return "is out of range; use a number >= 0 (0 means no limit)"


def matches(pattern: str, accepted: str) -> Check:
    """Accept a string that matches ``pattern`` whole; ``accepted`` describes it for people."""
    compiled = re.compile(pattern)
    return lambda v: None if compiled.fullmatch(v) else f"is not accepted; use {accepted}"


def ascii_text(low: int, high: int) -> Check:
    """Accept low..high ASCII characters."""
    accepted = f"at most {high} ASCII characters" if low == 0 else \
        f"{low} to {high} ASCII characters"
    return matches(rf"[\x00-\x7f]{{{low},{high}}}", accepted)


def one_of(*choices: str) -> Check:
    """Accept one of ``choices`` exactly (case matters)."""
    quoted = [f'"{c}"' for c in choices]
    accepted = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return lambda v: None if v in choices else f"is not accepted; use {accepted}"


def split_host_port(address: str) -> tuple[str, int]:
    """Split "host:port" or "[v6 address]:port" into (host, port).

    ValueError when the host is empty, an IPv6 address lacks its brackets, or the port is not
    an integer in 1..65535.
    """
    match = re.fullmatch(r"\[([^\[\]\s]+)\]:([0-9]{1,5})|([^:\[\]\s]+):([0-9]{1,5})", address)
    if not match:
        raise ValueError(f"{address!r} is not host:port")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    return host, port


def listen_address(value) -> str | None:
    """Accept an address to listen on, as split_host_port reads it."""
    try:
        split_host_port(value)
    except ValueError:
        return ('is not accepted; use host:port with a port in 1..65535, '
                'e.g. "127.0.0.1:8080" or "[::1]:8080"')
    return None


DATABASE_SCHEMES = ("postgresql", "postgres")
ENV_NAME = matches(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name: letters, digits and _")


def is_database_url(value: str) -> bool:
    """Whether a ``store`` setting names a PostgreSQL database (else it is an SQLite file)."""
    return value.split("://", 1)[0] in DATABASE_SCHEMES and "://" in value


def store_setting(value) -> str | None:
    """Accept an SQLite file path, or a PostgreSQL URL postgresql://user@host[:port]/database
    without a password (that comes from the variable store_password_env names)."""
    if not value:
        return 'is not accepted; use a file path, or "postgresql://user@host:5432/database"'
    if not is_database_url(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port                                   # noqa: B018 - raises on a bad port
    except ValueError as error:
        return f"is not a valid URL ({error}); use postgresql://user@host:5432/database"
    if parts.password is not None or "password" in parse_qs(parts.query):
        return ("holds a password; take it out of the URL and name the environment variable "
                "that holds it with store_password_env")
    if not parts.hostname or parts.path.strip("/") == "":
        return "is not accepted; use postgresql://user@host:5432/database (host and database)"
    return None


GATEWAY_FIELDS = (
    # Secret: a URL may carry a password, which is refused and must not be shown either.
    Field("store", STRING, "cmpp-gateway.sqlite", store_setting, secret=True),
    Field("api_listen", STRING, "127.0.0.1:8080", listen_address),
    Field("metrics_listen", STRING, "127.0.0.1:9108", listen_address),
    Field("log_level", STRING, "info", one_of("debug", "info", "warning", "error")),
    Field("report_timeout", NUMBER, 259200, seconds()),
    Field("drain_timeout", NUMBER, 30, seconds(allow_zero=True)),
    # Directory of receipt-code tables (default.toml and one per provider); empty: built in.
    Field("providers", STRING, "", matches(r".*", "a directory path")),
    # How long a status report that matches no message is kept (then it is dropped and
    # counted); None: report_timeout, filled in by the config module.
    Field("unmatched_report_timeout", NUMBER, None, seconds()),
    # How long a finished message (and MO) is kept, with its segments, reports and callbacks.
    Field("retention", NUMBER, 30 * 86400, seconds()),
    # The PostgreSQL password's environment variable (a postgresql:// store only).
    Field("store_password_env", STRING, None, ENV_NAME),
    # The variable holding the store setting itself, instead of store (e.g. a Kubernetes
    # Secret's database URL); its value is checked as store is.
    Field("store_env", STRING, None, ENV_NAME),
)

# password and password_env default to None: exactly one of them is required, which
# the config module checks once both have been read.
CHANNEL_FIELDS = (
    Field("provider", STRING, REQUIRED, example='"cmcc-gd"',
          check=matches(r"[A-Za-z0-9_.-]{1,64}", "1 to 64 letters, digits, _ . or -")),
    Field("host", STRING, REQUIRED, example='"10.1.2.3"', check=matches(
        r"\S{1,253}", "a host name or IP address: no spaces, at most 253 characters")),
    Field("port", INTEGER, REQUIRED, in_range(1, 65535), example="7890"),
    Field("account", STRING, REQUIRED, example='"900001"',
          check=matches(r"[0-9]{6}", "exactly 6 ASCII digits (the SP_Id)")),
    Field("password", STRING, None, ascii_text(1, 64), secret=True),
    Field("password_env", STRING, None, matches(
        r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name: letters, digits and _")),
    Field("access_number", STRING, REQUIRED, example='"10690001"',
          check=matches(r"[0-9]{1,21}", "1 to 21 ASCII digits (the SP access code)")),
    Field("connections", INTEGER, REQUIRED, in_range(1, 64), example="4"),
    Field("window", INTEGER, 16, in_range(1, 256)),
    Field("tps", NUMBER, 0, rate),
    Field("service_id", STRING, "", ascii_text(0, 10)),
    Field("msg_src", STRING, "", ascii_text(0, 6)),
    Field("heartbeat_interval", NUMBER, 180, seconds()),
    Field("response_timeout", NUMBER, 60, seconds()),
    Field("max_sends", INTEGER, 3, in_range(1, 10)),
    Field("max_parts", INTEGER, 10, in_range(1, 255)),
    Field("connect_timeout", NUMBER, 10, seconds()),
    Field("on_connection_lost", STRING, "resend", one_of("resend", "report")),
    Field("verify_authenticator", STRING, "warn", one_of("warn", "refuse")),
    # A signature the SMS center itself puts in front of every message: the first part of a
    # long message keeps room for it. Our own signatures (API templates) are part of the text.
    Field("center_signature", STRING, "", matches(r".{0,20}", "at most 20 characters")),
    # How long after its acceptance a message the center has not taken (Result 8, lost
    # connections) is still tried again; then it ends failed or unknown.
    Field("retry_for", NUMBER, 86400, seconds()),
)


def read_table(table: dict, fields: tuple[Field, ...], report: Report) -> dict[str, object]:
    """The value of every field of ``table``, given or defaulted.

    Unknown keys, wrong types, failed checks and missing required keys each go to ``report``
    (keys in file order, then the missing ones); a key with a problem is left out of the result,
    so the result is complete only when nothing was reported.
    """
    by_name = {f.name: f for f in fields}
    values = {}
    for key, value in table.items():
        field = by_name.get(key)
        if field is None:
            report(key, unknown_key_message(key, by_name, isinstance(value, dict)))
            continue
        problem = value_problem(field, value)
        if problem:
            report(key, problem)
        else:
            values[key] = value
    for field in fields:
        if field.name not in table:
            if field.default is REQUIRED:
                report(field.name, f"missing required key; add e.g. {field.name} = {field.example}")
            else:
                values[field.name] = field.default
    return values


def value_problem(field: Field, value) -> str | None:
    """What is wrong with ``value`` for ``field``, or None. A secret is never shown."""
    if not field.kind.accepts(value):
        shown = describe_type(value) if field.secret else toml_value(value)
        return f"expected {field.kind.noun}, got {shown}"
    reason = field.check(value) if field.check else None
    if reason is None:
        return None
    return f"{'the value (hidden)' if field.secret else toml_value(value)} {reason}"


def unknown_key_message(key: str, names, is_table: bool) -> str:
    """"unknown key" (or table), with the closest accepted name, or all of them when none is
    close."""
    what = "unknown table" if is_table else "unknown key"
    close = difflib.get_close_matches(key, list(names), n=1)
    if close:
        return f"{what}; did you mean '{close[0]}'?"
    return f"{what}; use one of {', '.join(names)}"


def toml_value(value) -> str:
    """``value`` as it would be written in TOML, for messages: "4", 4, true, a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return describe_type(value)


def describe_type(value) -> str:
    """The TOML type of ``value`` with its article: "a string", "an integer", "a table"."""
    for kind in (INTEGER, STRING):
        if kind.accepts(value):
            return kind.noun
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date or time"


def toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_value(name)
