"""Structured log lines (logfmt), with phone numbers masked, secrets never shown, and nothing a
client sent able to forge a line.

Every line is ``ts=... level=... logger=... msg="..."`` plus any ``extra`` fields. A filter on
the handler rewrites each record before it is formatted: mainland mobile numbers keep their
first three and last four digits (``138****8000``, in every written form: ``+86``, ``86`` or
``0086`` in front, spaces or dashes inside), and every configured secret is replaced by
``******``, wherever it appears, whichever library logged it. The formatter escapes control
characters (CR, LF, ESC, the C1 set, Unicode line separators and bidi overrides) in every field,
so a path or header a client chose shows as ``\\r`` or ``\\x1b``, never as a new line or a
terminal sequence. Message content is never passed to the logger in the first place.

``RequestErrorLog`` stands in for aiohttp's server logger on a listener anyone can reach: a
request that does not parse is logged without its bytes, once per source address per
interval (``SourceThrottle``), at info.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable

from aiohttp.http_exceptions import HttpProcessingError

# A candidate: a run of 11 or more digits, spaces and dashes (after an optional "+"). Searching
# for it first lets the regex engine skip the rest of a line fast; PHONE then finds the numbers
# in the run: an optional +86, 86 or 0086, and 11 digits with at most one space or dash
# between two of them, not part of a longer number (a Msg_Id is 19 or 20 digits).
_RUN = re.compile(r"[+\d][\d -]{10,}")
PHONE = re.compile(r"(?<![\d+])((?:\+|00)?86[ -]?)?(1[ -]?[3-9](?:[ -]?\d){9})(?!\d)")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def mask_phone_numbers(text: str) -> str:
    """``13800138000`` -> ``138****8000``; ``+86 138-0013-8000`` -> ``+86 138****8000`` (the
    prefix is kept, the separators inside the number go)."""
    return _RUN.sub(_mask_run, text)


def _mask_run(run: re.Match) -> str:
    return PHONE.sub(_mask_number, run.group())


def _mask_number(number: re.Match) -> str:
    digits = number.group(2).replace(" ", "").replace("-", "")
    return f"{number.group(1) or ''}{digits[:3]}****{digits[7:]}"


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


# What may not appear raw in a line: C0 and C1 controls, DEL, the Unicode line and paragraph
# separators, and the bidirectional overrides and isolates (which reorder what a terminal shows).
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f'[{_CONTROL}"\\\\]')
_NEEDS_QUOTES = re.compile(f'[{_CONTROL} "=\\\\]')
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _quote(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + _UNSAFE.sub(_escape, value) + '"'


def _escape(match: re.Match) -> str:
    char = match.group()
    escaped = _ESCAPES.get(char)
    if escaped is None:
        code = ord(char)
        escaped = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return escaped


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


# ----------------------------------------------------------------------------- clients' errors

class SourceThrottle:
    """One info line per source address per ``interval`` for what a client can repeat at will
    (requests that do not parse, connections refused): ``API client 192.0.2.7: bad HTTP
    request (LineTooLong 400)``, ``what`` naming the listener. The first one in an interval is
    logged; the later ones are only counted, and the count goes with the source's next line
    (``suppressed=N``) or with ``flush()``. At most ``max_sources`` addresses are remembered;
    the one logged longest ago is flushed to make room."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 60.0,
                 max_sources: int = 1024, clock=time.monotonic) -> None:
        self.logger, self.what = logger, what
        self.interval, self.max_sources, self.clock = interval, max_sources, clock
        self._sources: dict[str, list] = {}     # source -> [time logged, suppressed since]

    def note(self, source: str | None, detail: str) -> None:
        """One more from ``source`` (None: not known), ``detail`` saying what it was."""
        source = source or "(address unknown)"
        now = self.clock()
        seen = self._sources.get(source)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return
        suppressed = self._sources.pop(source, (0, 0))[1]
        while len(self._sources) >= self.max_sources:
            self._flush_one(next(iter(self._sources)))
        self._sources[source] = [now, 0]
        extra = {"suppressed": suppressed} if suppressed else None
        self.logger.info("%s %s: %s", self.what, source, detail, extra=extra)

    def flush(self) -> None:
        """Log the counts not logged yet, and forget every source."""
        for source in list(self._sources):
            self._flush_one(source)

    def _flush_one(self, source: str) -> None:
        suppressed = self._sources.pop(source)[1]
        if suppressed:
            self.logger.info("%s %s: more of the same, not logged one by one", self.what,
                             source, extra={"suppressed": suppressed})


class RequestErrorLog(logging.LoggerAdapter):
    """aiohttp's server logger (``RequestHandler.logger``) for one connection, or a listener,
    that anyone can reach.

    aiohttp logs a request that does not parse at ERROR (debug for a first line that is not
    HTTP) with a traceback whose message quotes the request: up to 100 bytes of an over-long
    header, an ``Authorization`` header included. Here it goes to ``throttle`` instead, named by
    the exception's type only. A client that went away is logged at debug. Any other exception
    is a fault of the server: logged at its level with the traceback's frames and the
    exception's type, never its message, which may quote the request too."""

    def __init__(self, logger: logging.Logger, throttle: SourceThrottle,
                 source: str | None = None) -> None:
        super().__init__(logger, {})
        self.throttle, self.source = throttle, source

    def log(self, level, msg, *args, exc_info=None, **kwargs) -> None:
        error = _exception(exc_info)
        if isinstance(error, HttpProcessingError):
            self.throttle.note(self.source, f"bad HTTP request ({type(error).__name__} "
                                            f"{error.code})")
        elif isinstance(error, ConnectionError):
            self.logger.debug("client %s went away: %s", self.source or "-",
                              type(error).__name__)
        elif self.isEnabledFor(level):
            extra = {"error": frames_only(error)} if error is not None else None
            self.logger.log(level, msg, *args, extra=extra, stacklevel=2)


def _exception(exc_info) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1]
    return sys.exc_info()[1] if exc_info else None


def frames_only(error: BaseException) -> str:
    """A traceback that names the exception's type but leaves out its message."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    return f"Traceback (most recent call last):\n{frames}{type(error).__qualname__}"
