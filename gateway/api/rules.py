"""The checks a send request passes: the number, the content, how often, how repeated.

Everything here raises ``ApiError`` with the JSMS code that names the problem. The limits are
kept in memory: a restart forgets recent sends, which only makes the limits lenient for a
moment.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict, deque

import cmpp
from cmpp.text import SEGMENT_SIZE
from gateway.config import ApiSettings

from .errors import ApiError
from .registry import PLACEHOLDER, Template


class MobileRule:
    """Mainland mobile numbers; an 86 or +86 prefix is accepted and dropped. Digits are ASCII
    0-9 only: the pattern is matched in ASCII mode (Python's ``\\d`` otherwise matches every
    script's digits, full-width ones among them), and what it leaves must be ASCII digits
    whatever the operator's ``mobile_pattern`` allows, since a center takes nothing else."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.ASCII)

    def normalize(self, mobile) -> str:
        """The 11-digit number; ApiError 50004 (missing) or 50006 (invalid)."""
        if mobile is None or mobile == "":
            raise ApiError(50004)
        if isinstance(mobile, int) and not isinstance(mobile, bool):
            mobile = str(mobile)
        if not isinstance(mobile, str) or not self.pattern.fullmatch(mobile.strip(" ")):
            raise ApiError(50006)
        digits = mobile.strip(" ").lstrip("+")
        if not _ASCII_DIGITS.fullmatch(digits):
            raise ApiError(50006)
        return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


_ASCII_DIGITS = re.compile("[0-9]+")


def check_length(text: str, channel) -> None:
    """ApiError 50007 when ``text`` (signature included) takes more SMS than ``channel`` (a
    ChannelConfig) sends: its ``max_parts``, counted as the dispatcher will cut it
    (``cmpp.split_text``, keeping the first part's room for the center's own signature).
    Most texts are short enough to fit whatever the encoding, and are not cut here."""
    room, most = channel.signature_room, channel.max_parts
    # No character takes more than 4 bytes; a part of a long message carries 134 bytes, of
    # which at most 4 go unused where a character does not fit.
    if 4 * len(text) + room <= SEGMENT_SIZE or \
            4 * len(text) + room + 4 * most <= (SEGMENT_SIZE - 6) * most:
        return
    try:
        cmpp.split_text(text, max_parts=most, reserve_first=room)
    except ValueError as error:
        raise ApiError(50007, f"the message cannot be sent on channel {channel.name}: "
                              f"{error} (max_parts)") from None


def render(template: Template, params) -> str:
    """The template's content with {{name}} replaced; ApiError 50023 (parameters missing or
    empty while the template has placeholders), 50022 (some left unreplaced), 50007 (not an
    object of strings and numbers)."""
    names = template.placeholders
    if params is None or params == {}:
        if names:
            raise ApiError(50023)
        return template.content
    if not isinstance(params, dict) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in params.values()):
        raise ApiError(50007, "temp_para must be an object of strings or numbers")
    values = {str(k): str(v) for k, v in params.items()}
    text = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template.content)
    if PLACEHOLDER.search(text):
        raise ApiError(50022, ", ".join(sorted(set(PLACEHOLDER.findall(text)))))
    return text


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

    def _forget(self, now: float) -> None:
        cutoff, events = now - self.window, self._events
        while events:
            oldest = next(iter(events.values()))
            if oldest[-1] > cutoff and len(events) <= self.keys:
                return
            events.popitem(last=False)


class RecentKeys:
    """Which keys were seen in the last ``window`` seconds: the repeat rule's memory, one
    timestamp per key, dropped once it leaves the window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: str, now: float) -> bool:
        at = self._seen.get(key)
        return at is not None and at > now - self.window

    def add(self, key: str, now: float) -> None:
        self._seen[key] = now
        self._seen.move_to_end(key)
        cutoff, seen = now - self.window, self._seen
        while seen:
            if next(iter(seen.values())) > cutoff:
                return
            seen.popitem(last=False)


class SendRules:
    """Frequency limits, repeats, sensitive words and unsubscribes."""

    def __init__(self, settings: ApiSettings, clock=time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.words = tuple(w.lower() for w in settings.sensitive_words)
        self.code_minute = WindowCounter(60)
        self.code_hour = WindowCounter(3600)
        self.app_second = WindowCounter(1)
        self.repeats = RecentKeys(settings.repeat_window or 1)
        self.unsubscribed: set[str] = set()

    def check_content(self, text: str) -> None:
        lowered = text.lower()
        if any(word in lowered for word in self.words):
            raise ApiError(50037)

    def check_recipient(self, template: Template, mobile: str, text: str) -> None:
        """ApiError 50024 (unsubscribed from marketing), 50034 (the same content to the same
        number within the repeat window), 50009 (too many codes to this number)."""
        now = self.clock()
        if template.type == "marketing" and mobile in self.unsubscribed:
            raise ApiError(50024)
        if self.settings.repeat_window and self.repeats.seen(self._repeat_key(mobile, text), now):
            raise ApiError(50034)
        if template.type == "code":
            s = self.settings
            if (s.codes_per_number_per_minute and
                    self.code_minute.count(mobile, now) >= s.codes_per_number_per_minute) or \
                    (s.codes_per_number_per_hour and
                     self.code_hour.count(mobile, now) >= s.codes_per_number_per_hour):
                raise ApiError(50009, "too many codes to this number")

    def check_app(self, app: str, count: int = 1) -> None:
        limit = self.settings.messages_per_app_per_second
        if limit and self.app_second.count(app, self.clock()) + count > limit:
            raise ApiError(50009, "too many messages from this app")

    def record(self, app: str, template: Template, mobile: str, text: str) -> None:
        """Count a send against the limits that are on (a limit of 0 counts nothing)."""
        now = self.clock()
        s = self.settings
        if s.messages_per_app_per_second:
            self.app_second.add(app, now)
        if s.repeat_window:
            self.repeats.add(self._repeat_key(mobile, text), now)
        if template.type == "code":
            if s.codes_per_number_per_minute:
                self.code_minute.add(mobile, now)
            if s.codes_per_number_per_hour:
                self.code_hour.add(mobile, now)

    @staticmethod
    def _repeat_key(mobile: str, text: str) -> str:
        return mobile + ":" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class References:
    """8-bit UDH references, rolling per recipient, so that concurrent long messages to one
    handset never share one."""

    def __init__(self, keys: int = 200_000) -> None:
        self.keys = keys
        self._next: OrderedDict[str, int] = OrderedDict()

    def next(self, mobile: str) -> int:
        value = self._next.pop(mobile, None)
        if value is None:
            value = int.from_bytes(hashlib.blake2b(mobile.encode(), digest_size=1).digest(), "big")
        self._next[mobile] = (value + 1) & 0xFF
        if len(self._next) > self.keys:
            self._next.popitem(last=False)
        return value
