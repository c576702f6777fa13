"""The checks a send request passes: the number, the content, how often, how repeated.

Everything here raises ``ApiError`` with the JSMS code that names the problem. The repeat
rule and the app's rate are kept in memory: a restart forgets recent sends, which only makes
them lenient for a moment (a store shared by several gateways holds both for all of them as
well: ``Api.accept``). The repeat rule's memory has a ceiling (``[api] repeat_keys``);
when it is reached the rule refuses new sends (50009) rather than forget a send early (see
``RecentKeys``). The codes a number may get are counted by the store (see ``SendRules``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict, deque
from typing import NamedTuple

import cmpp
from cmpp.text import SEGMENT_SIZE
from gateway.config import ApiSettings

from .errors import ApiError
from .recent import RecentKeys
from .registry import PLACEHOLDER, Template

log = logging.getLogger("cmpp_gateway.api")


class MobileRule:
    """Mainland mobile numbers; an 86 or +86 prefix is accepted and dropped. Digits are ASCII
    0-9 only: the pattern is matched in ASCII mode (Python's ``\\d`` otherwise matches every
    script's digits, full-width ones among them), and what it leaves must be ASCII digits
    whatever the operator's ``mobile_pattern`` allows, since a center takes nothing else."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.ASCII)
        self._fullmatch = self.pattern.fullmatch

    def normalize(self, mobile) -> str:
        """The 11-digit number; ApiError 50004 (missing) or 50006 (invalid)."""
        if type(mobile) is not str:
            mobile = _text(mobile)
        elif not mobile:
            raise ApiError(50004)
        mobile = mobile.strip(" ")
        if self._fullmatch(mobile) is None:
            raise ApiError(50006)
        digits = mobile.lstrip("+")
        if not (digits.isascii() and digits.isdigit()):       # ASCII 0-9 only, one at least
            raise ApiError(50006)
        return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


def _text(mobile) -> str:
    """A number given as other than a string: an integer's digits; ApiError 50004 (none, or
    empty), 50006 (anything else)."""
    if mobile is None or mobile == "":
        raise ApiError(50004)
    if isinstance(mobile, int) and not isinstance(mobile, bool):
        return str(mobile)
    if not isinstance(mobile, str):
        raise ApiError(50006)
    return mobile


def check_length(text: str, channel) -> None:
    """ApiError 50007 when ``text`` (signature included) takes more SMS than ``channel`` (a
    ChannelConfig) sends: its ``max_parts``, counted as the dispatcher will cut it
    (``cmpp.split_text``, keeping the first part's room for the center's own signature).
    Most texts are short enough to fit whatever the encoding, and are not cut here."""
    if len(text) <= uncut_lengths(channel)[1]:
        return
    try:
        cmpp.split_text(text, max_parts=channel.max_parts, reserve_first=channel.signature_room)
    except ValueError as error:
        raise ApiError(50007, f"the message cannot be sent on channel {channel.name}: "
                              f"{error} (max_parts)") from None


def uncut_lengths(channel) -> tuple[int, int]:
    """The longest texts, in characters, that surely fit one SMS of ``channel`` (a
    ChannelConfig) and its ``max_parts``, whatever their encoding, without cutting them: no
    character takes more than 4 bytes; a part of a long message carries 134 bytes, of which
    at most 4 go unused where a character does not fit; the first part keeps the center's
    signature's room."""
    room, most = channel.signature_room, channel.max_parts
    one = (SEGMENT_SIZE - room) // 4
    return one, max(one, ((SEGMENT_SIZE - 6) * most - 4 * most - room) // 4)


def render(template: Template, params, prefix: str = "") -> str:
    """``prefix`` (a signature, say) and the template's content with {{name}} replaced;
    ApiError 50023 (parameters missing or empty while the template has placeholders), 50022
    (some left unreplaced, or made by a value), 50007 (not an object of strings and numbers).
    Called once per recipient: it cuts nothing, the template's pieces being worked out once
    (``Template.pieces``), and joins the text in one go rather than copying it at each
    piece."""
    if params is None or (not params and isinstance(params, dict)):
        if template.placeholders:
            raise ApiError(50023)
        return prefix + template.content
    if not isinstance(params, dict):
        raise ApiError(50007, PARAMETERS)
    for value in params.values():
        if type(value) is not str:            # JSON's names are strings, its values mostly
            params = _strings(params)
            break
    marks, tail = template.pieces
    parts = [prefix]
    for before, name, written in marks:
        parts.append(before)
        parts.append(params.get(name, written))
    parts.append(tail)
    text = "".join(parts)
    start = len(prefix)                 # a placeholder left is looked for after the prefix
    if text.find("{{", start) >= 0 and PLACEHOLDER.search(text, start):
        raise ApiError(50022, ", ".join(sorted(set(PLACEHOLDER.findall(text, start)))))
    return text


def _strings(params: dict) -> dict[str, str]:
    """``params`` with names and numbers as text; ApiError 50007 for a value that is neither
    a string nor a number."""
    values = {}
    for name, value in params.items():
        if not isinstance(value, str):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ApiError(50007, PARAMETERS)
            value = str(value)
        values[str(name)] = value
    return values


PARAMETERS = "temp_para must be an object of strings or numbers"


class WindowCounter:
    """How many events per key happened in the last ``window`` seconds. Memory holds only keys
    with an event inside the window (and at most ``keys`` of them): keys are kept in the order
    of their last event, so those whose last event left the window are dropped from the front."""

    def __init__(self, window: float, keys: int = 200_000) -> None:
        self.window = window
        self.keys = keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def count(self, key: str, now: float) -> int:
        events = self._events.get(key)
        if events is None:
            return 0
        while events and events[0] <= now - self.window:
            events.popleft()
        return len(events)

    def add(self, key: str, now: float) -> None:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        else:
            self._events.move_to_end(key)
            while events and events[0] <= now - self.window:
                events.popleft()
        events.append(now)
        self._forget(now)

    def discard(self, key: str, at: float, count: int = 1) -> None:
        """Take back ``count`` events of ``key`` that happened at ``at``."""
        events = self._events.get(key)
        for _ in range(count):
            if events is None or at not in events:
                break
            events.remove(at)
        if events is not None and not events:
            del self._events[key]

    def _forget(self, now: float) -> None:
        cutoff, events = now - self.window, self._events
        while events:
            oldest = next(iter(events.values()))
            if oldest[-1] > cutoff and len(events) <= self.keys:
                return
            events.popitem(last=False)


class Recorded(NamedTuple):
    """What ``SendRules.record`` counted, so that ``forget`` can take it back."""

    at: float
    app: str | None                 # counted against messages_per_app_per_second
    sends: int
    repeat_keys: tuple[int, ...]


class SendRules:
    """Frequency limits, repeats, sensitive words and unsubscribes.

    A send is checked and counted with no await in between (``check_*`` while composing,
    then ``record`` before the store is asked), so that requests arriving together cannot
    all pass a check that only one of them should: ten identical sends at once give one
    acceptance and nine 50034. When the store does not keep the request (an error, a
    replayed Idempotency-Key, a limit it enforces), ``forget`` takes the count back. The
    codes a number may get (50009) are counted by the store itself, from the codes it
    holds (``code_limits``), so that they hold across restarts and gateways sharing it.
    """

    def __init__(self, settings: ApiSettings, clock=time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.words = tuple(w.lower() for w in settings.sensitive_words)
        self.app_second = WindowCounter(1)
        self.repeats = RecentKeys(settings.repeat_window or 1, settings.repeat_keys)
        self._full_warned_at: float | None = None
        self.unsubscribed: set[str] = set()

    @property
    def code_limits(self) -> tuple[tuple[float, int], ...]:
        """(window in seconds, most codes to one number within it) for the limits that are
        on: what the store checks as it keeps a code (ApiRequest.code_limits)."""
        s = self.settings
        return tuple((window, most) for window, most in
                     ((60, s.codes_per_number_per_minute), (3600, s.codes_per_number_per_hour))
                     if most)

    def check_content(self, text: str) -> None:
        if not self.words:
            return
        lowered = text.lower()
        if any(word in lowered for word in self.words):
            raise ApiError(50037)

    def check_recipient(self, template: Template, mobile: str, text: str) -> int | None:
        """ApiError 50024 (unsubscribed from marketing), 50034 (the same content to the same
        number within the repeat window). Returns the send's repeat key, for ``record``
        (None while the repeat rule is off)."""
        if template.type == "marketing" and mobile in self.unsubscribed:
            raise ApiError(50024)
        if not self.settings.repeat_window:
            return None
        key = self._repeat_key(mobile, text)
        self._check_repeat(key, self.clock())
        return key

    def _check_repeat(self, key: int, now: float) -> None:
        """ApiError 50034 for a repeat; 50009 when the repeat memory is full (see RecentKeys),
        with a warning a minute at most."""
        if self.repeats.seen(key, now):
            raise ApiError(50034)
        if self.repeats.full(now):
            self.repeats.refused += 1
            if self._full_warned_at is None or now - self._full_warned_at >= 60:
                self._full_warned_at = now
                log.warning("the repeat rule remembers %d sends within repeat_window (%g s), "
                            "its limit (repeat_keys): new sends are refused with 50009 until "
                            "the oldest leave the window", len(self.repeats), self.repeats.window)
            raise ApiError(50009, "too many sends within the repeat window; try again later")

    def check_app(self, app: str, count: int = 1) -> None:
        limit = self.settings.messages_per_app_per_second
        if limit and self.app_second.count(app, self.clock()) + count > limit:
            raise ApiError(50009, "too many messages from this app")

    def record(self, app: str, sends: list[tuple[str, str]],
               keys: list[int] | None = None) -> Recorded:
        """Count ``sends`` ((number, text) pairs) of ``app`` against the limits that are on
        (a limit of 0 counts nothing); ``forget`` takes them back. ``keys``: their repeat
        keys as ``check_recipient`` returned them, when it did (else worked out here)."""
        now, s = self.clock(), self.settings
        counted = None
        if s.messages_per_app_per_second and sends:
            counted = app
            for _ in sends:
                self.app_second.add(app, now)
        if not s.repeat_window:
            keys = ()
        else:
            keys = tuple(keys) if keys is not None else \
                tuple(self._repeat_key(mobile, text) for mobile, text in sends)
            for key in keys:
                self.repeats.add(key, now)
        return Recorded(now, counted, len(sends), keys)

    def seen_elsewhere(self, keys) -> None:
        """These repeat keys were sent through another gateway within the window (its store
        said so): remember them from now, as if sent here."""
        now = self.clock()
        for key in keys:
            self.repeats.add(key, now)

    def forget(self, recorded: Recorded) -> None:
        """Take back what ``record`` counted: the store did not keep those sends."""
        if recorded.app is not None:
            self.app_second.discard(recorded.app, recorded.at, recorded.sends)
        for key in recorded.repeat_keys:
            self.repeats.discard(key, recorded.at)

    @staticmethod
    def _repeat_key(mobile: str, text: str) -> int:
        digest = hashlib.blake2b(f"{mobile}\0{text}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")


class References:
    """8-bit UDH references, rolling per recipient, so that concurrent long messages to one
    handset never share one. At most ``keys`` recipients are remembered, those sent to
    longest ago forgotten first.

    A recipient sent to again is moved to the end in place, never popped and inserted anew:
    every pop leaves a dead slot in the dict's table, and a table full of them is rebuilt
    whole (at 50,000 recipients 6 MiB, every 125,000 sends), which grew the process's heap by
    as much each time."""

    def __init__(self, keys: int = 200_000) -> None:
        self.keys = keys
        self._next: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._next)

    def next(self, mobile: str) -> int:
        """The reference of the next message to ``mobile``."""
        references = self._next
        value = references.get(mobile)
        if value is None:
            value = int.from_bytes(hashlib.blake2b(mobile.encode(), digest_size=1).digest(), "big")
            if len(references) >= self.keys:
                references.popitem(last=False)
        else:
            references.move_to_end(mobile)
        references[mobile] = (value + 1) & 0xFF
        return value
