"""Structured log lines (logfmt), with phone numbers masked and secrets never shown.

Every line is ``ts=... level=... logger=... msg="..."`` plus any ``extra`` fields. A filter on
the handler rewrites each record before it is formatted: mainland mobile numbers keep their
first three and last four digits (``138****8000``), and every configured secret is replaced by
``******``, wherever it appears, whichever library logged it. Message content is never passed to
the logger in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable

PHONE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def mask_phone_numbers(text: str) -> str:
    """``13800138000`` -> ``138****8000`` (an 86 or +86 prefix is kept)."""
    return PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)


class Redactor(logging.Filter):
    """Masks phone numbers and removes secrets from a record's message and extra fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "******")
        return mask_phone_numbers(text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.clean(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.clean(value))
        return True


class LogfmtFormatter(logging.Formatter):
    """``ts=2026-11-22T09:30:00.123Z level=info logger=pool msg="..." key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = [f"ts={ts}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                  f"logger={record.name.removeprefix('cmpp_gateway.')}",
                  f"msg={_quote(record.getMessage())}"]
        fields += [f"{key}={_quote(str(value))}" for key, value in vars(record).items()
                   if key not in _STANDARD]
        if record.exc_text:
            fields.append(f"error={_quote(record.exc_text)}")
        return " ".join(fields)


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def setup_logging(level: str = "info", secrets: Iterable[str] = (), stream=None) -> Redactor:
    """Route every logger to one logfmt handler on ``stream`` (stderr) with the redactor."""
    handler = logging.StreamHandler(stream or sys.stderr)
    redactor = Redactor(secrets)
    handler.addFilter(redactor)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return redactor
