"""One delivery-status model for every provider, and the receipt-code tables that map a
status report's Stat onto it (cmpp2.md §17).

A provider's table is a TOML file in a directory such as ``fixtures/providers/``:
``default.toml`` is built from the reference, and ``<provider>.toml`` may say
``extends = "default"`` and replace or add entries. Each entry maps a Stat (``[codes]``: an exact
code such as ``MK:0012``; ``[prefixes]``: a prefix rule such as ``MK:``, or one of the seven
standard states such as ``DELIVRD``, which is matched exactly) to a status word, whether the
cause is temporary, a short meaning, and optionally the JSMS status code (``jsms``) that a
JSMS-format callback reports for it. A file's ``[jsms]`` table gives the JSMS code of each final
status for a Stat whose entry names none (``jsms_status``).

A long message's status follows from its segments' statuses with ``derive_status`` (and the
deciding receipt with ``derive_outcome``): delivered only when every segment is delivered, the
first failure in segment order as soon as a segment fails, otherwise not final yet.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class DeliveryStatus(str, Enum):
    """Where a message (or one of its segments) stands. ACCEPTED and SUBMITTED can still
    change; every other status is final."""

    ACCEPTED = "accepted"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    UNDELIVERABLE = "undeliverable"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        """True when this status can no longer change. (Read for every report: its value is
        compared, because on Python 3.11 reading a member such as DeliveryStatus.ACCEPTED goes
        through a descriptor, about ten times slower.)"""
        return self._value_ not in _OPEN


_OPEN = frozenset({"accepted", "submitted"})      # DeliveryStatus's values that can change

DEFAULT = "default"
STANDARD_STATES = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN",
                             "REJECTD"})
PENDING = "pending"  # a table's word for "not final, keep waiting" (ACCEPTD, ML:)
STATUS_WORDS: Mapping[str, DeliveryStatus | None] = {
    **{s.value: s for s in DeliveryStatus if s.final}, PENDING: None}
ENTRY_KEYS = ("status", "temporary", "meaning", "jsms")
FILE_KEYS = ("extends", "jsms", "prefixes", "codes")
# JSMS's status codes for SMS_REPORT callbacks (jsms-callbacks.md). 4007-4009 are for voice
# codes, which a CMPP channel never carries, so no table may use them.
JSMS_CODES: Mapping[int, str] = {
    4001: "delivered", 4002: "number on the operator's blacklist",
    4003: "handset problem (switched off, suspended)", 4004: "number does not exist",
    4005: "no balance left", 4006: "sent too often (operator's rate limit)",
    4010: "blocked for sensitive words", 4100: "any other error"}
JSMS_DELIVERED, JSMS_OTHER = 4001, 4100
PADDING = " \0"
BUILTIN_TABLES = Path(__file__).resolve().parent / "providers"


class TableError(ValueError):
    """A receipt-code table that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Classification:
    """What one status report's Stat means.

    ``status`` is None while the message is not final (ACCEPTD, ``ML:``): keep waiting.
    ``temporary`` says whether the cause is temporary (a later resend may succeed); it is False
    for a delivery and for a pending report. ``stat`` is the Stat exactly as received.
    ``known`` is True only when the exact code (or standard state) is listed in the table, and
    ``meaning`` is the table's short English meaning ("" when it gives none). ``jsms`` is the
    JSMS status code the entry gives (None: the one of its status, see ``jsms_status``).
    """

    status: DeliveryStatus | None
    temporary: bool
    stat: str
    provider: str
    known: bool
    meaning: str
    jsms: int | None = None

    @property
    def final(self) -> bool:
        """True when the report settles the segment it is about."""
        return self.status is not None


@dataclass(frozen=True)
class Rule:
    """One table entry: the status a Stat maps to (None: pending), and what the table says."""

    status: DeliveryStatus | None
    temporary: bool = False
    meaning: str = ""
    jsms: int | None = None


class ReceiptCodes:
    """One provider's resolved table: classifies a status report's Stat."""

    def __init__(self, provider: str, prefixes: Mapping[str, Rule],
                 codes: Mapping[str, Rule],
                 jsms: Mapping[DeliveryStatus, int] | None = None) -> None:
        self.provider = provider
        self._jsms = dict(jsms or {})
        states = {k: r for k, r in prefixes.items() if k in STANDARD_STATES}
        self._exact = {**states, **codes}  # an exact [codes] entry wins over a state rule
        self._rules = sorted(((k, r) for k, r in prefixes.items() if k not in STANDARD_STATES),
                             key=lambda item: len(item[0]), reverse=True)
        self._cache: dict[str, Classification] = {}

    @property
    def codes(self) -> frozenset[str]:
        """Every Stat listed exactly: the [codes] entries and the standard states present."""
        return frozenset(self._exact)

    def is_listed(self, stat: str) -> bool:
        """True when ``stat`` (padding removed, as given or upper-cased) is an exact entry.
        Callers label metrics by raw Stat only then, so that label values stay bounded."""
        return self._exact_rule(stat) is not None

    CACHE_LIMIT = 4096

    def classify(self, stat: str) -> Classification:
        """Classify a Stat: an exact code or standard state first, then the longest matching
        prefix rule, then UNKNOWN. Trailing spaces and NULs are ignored; the Stat is tried as
        given, then upper-cased. Never raises for any string. Answers are kept (they never
        change), up to CACHE_LIMIT different Stat values."""
        cached = self._cache.get(stat)
        if cached is None:
            cached = self._classify(stat)
            if len(self._cache) < self.CACHE_LIMIT:
                self._cache[stat] = cached
        return cached

    def _classify(self, stat: str) -> Classification:
        rule = self._exact_rule(stat)
        if rule is not None:
            return self._classification(stat, rule, known=True)
        rule = self._prefix_rule(stat)
        if rule is not None:
            return self._classification(stat, rule, known=False)
        return self._classification(stat, Rule(DeliveryStatus.UNKNOWN), known=False)

    def _exact_rule(self, stat: str) -> Rule | None:
        for form in _forms(stat):
            if form in self._exact:
                return self._exact[form]
        return None

    def _prefix_rule(self, stat: str) -> Rule | None:
        for form in _forms(stat):
            for prefix, rule in self._rules:
                if form.startswith(prefix):
                    return rule
        return None

    def _classification(self, stat: str, rule: Rule, known: bool) -> Classification:
        return Classification(rule.status, rule.temporary, stat, self.provider, known,
                              rule.meaning, rule.jsms)

    def jsms_status(self, status: DeliveryStatus, stat: str | None = None) -> int:
        """The JSMS status code (4001-4100) for a message that ended ``status`` on the report
        ``stat`` (None: no report decided it, e.g. the report timeout). The table entry that
        classifies ``stat`` gives it when it names one and classifies ``stat`` as ``status``;
        else the table's ``[jsms]`` code for ``status``; else 4001 for delivered, 4100 for the
        rest. Never raises for a final status."""
        if stat:
            classification = self.classify(stat)
            if classification.jsms is not None and classification.status is status:
                return classification.jsms
        fallback = JSMS_DELIVERED if status is DeliveryStatus.DELIVERED else JSMS_OTHER
        return self._jsms.get(status, fallback)


def _forms(stat: str) -> tuple[str, ...]:
    """The Stat as it is looked up: padding removed, as given, then upper-cased if different."""
    bare = stat.rstrip(PADDING)
    upper = bare.upper()
    return (bare,) if upper == bare else (bare, upper)


class ReceiptTables:
    """Every provider's table, resolved against the tables it extends."""

    def __init__(self, tables: Mapping[str, tuple[dict[str, Rule], dict[str, Rule],
                                                  dict[DeliveryStatus, int]]],
                 paths: Mapping[str, Path] | None = None) -> None:
        self._tables = dict(tables)
        self._cache: dict[str, ReceiptCodes] = {}
        self.paths = dict(paths or {})     # table name -> the file it was read from

    def path_for(self, provider: str) -> Path | None:
        """The file whose table ``provider`` uses: its own, else default.toml."""
        return self.paths.get(provider if provider in self._tables else DEFAULT)

    @property
    def providers(self) -> frozenset[str]:
        """The names of the tables that were loaded (file names without ``.toml``)."""
        return frozenset(self._tables)

    def for_provider(self, name: str) -> ReceiptCodes:
        """The table for provider ``name``; a provider without a table of its own gets the
        default table, still labelled ``name`` in its classifications. Cached per name."""
        codes = self._cache.get(name)
        if codes is None:
            prefixes, exact, jsms = self._tables.get(name, self._tables[DEFAULT])
            codes = self._cache[name] = ReceiptCodes(name, prefixes, exact, jsms)
        return codes


@dataclass(frozen=True)
class _TableFile:
    """One file as read, before it is merged with the table it extends."""

    path: Path
    extends: str | None
    prefixes: dict[str, Rule]
    codes: dict[str, Rule]
    jsms: dict[DeliveryStatus, int]


def load_tables(*directories: Path) -> ReceiptTables:
    """Read every ``*.toml`` table in the ``directories`` and resolve ``extends``; a table in a
    later directory replaces the one of the same name in an earlier one (the daemon reads the
    built-in tables, then the configured ``providers`` directory).

    Raises TableError naming the file (and the key, when one is at fault) for a file that is
    not TOML, an unknown key, an unknown status word, a value of the wrong type, an ``extends``
    naming no table or forming a cycle, and when no directory has a ``default.toml``.
    """
    files: dict[str, _TableFile] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            raise TableError(f"{directory}: not a directory of receipt-code tables")
        files.update((path.stem, _read_table_file(path))
                     for path in sorted(directory.glob("*.toml")))
    if DEFAULT not in files:
        where = ", ".join(str(d) for d in directories)
        raise TableError(f"{where}: no {DEFAULT}.toml; every provider falls back to it")
    return ReceiptTables({name: _resolve(name, files, ()) for name in files},
                         {name: table.path for name, table in files.items()})


def provider_tables(providers: str = "") -> ReceiptTables:
    """The built-in tables, with those of the configured ``providers`` directory (if any) over
    them. Raises TableError as ``load_tables`` does."""
    return load_tables(BUILTIN_TABLES, *([Path(providers)] if providers else []))


def _resolve(name: str, files: Mapping[str, _TableFile], seen: tuple[str, ...]
             ) -> tuple[dict[str, Rule], dict[str, Rule], dict[DeliveryStatus, int]]:
    """The table ``name`` with the tables it extends merged under it (its entries win)."""
    table = files[name]
    if table.extends is None:
        return dict(table.prefixes), dict(table.codes), dict(table.jsms)
    chain = (*seen, name)
    if table.extends in chain:
        cycle = " -> ".join((*chain, table.extends))
        raise TableError(f"{table.path}: extends: {cycle} is a cycle")
    if table.extends not in files:
        raise TableError(f"{table.path}: extends: no table named {table.extends!r} (no "
                         f"{table.extends}.toml in {table.path.parent})")
    prefixes, codes, jsms = _resolve(table.extends, files, chain)
    return {**prefixes, **table.prefixes}, {**codes, **table.codes}, {**jsms, **table.jsms}


def _read_table_file(path: Path) -> _TableFile:
    """Parse and check one table file; raises TableError naming the file and the key."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TableError(f"{path}: not a valid TOML file: {error}") from None
    except OSError as error:
        raise TableError(f"{path}: cannot read the file: {error.strerror}") from None
    for key in document:
        if key not in FILE_KEYS:
            raise TableError(f"{path}: {key}: unknown key; a table has extends, [jsms], "
                             f"[prefixes] and [codes]")
    return _TableFile(path, _read_extends(path, document.get("extends")),
                      _read_section(path, "prefixes", document.get("prefixes", {})),
                      _read_section(path, "codes", document.get("codes", {})),
                      _read_jsms_table(path, document.get("jsms", {})))


def _read_extends(path: Path, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    raise TableError(f"{path}: extends: expected the name of another table as a string, "
                     f"e.g. extends = \"{DEFAULT}\", got {value!r}")


def _read_section(path: Path, section: str, entries: object) -> dict[str, Rule]:
    """The [prefixes] or [codes] table: Stat (or prefix) -> Rule."""
    if not isinstance(entries, dict):
        raise TableError(f"{path}: {section}: expected a table [{section}], got {entries!r}")
    return {key: _read_rule(f"{path}: [{section}] {_quoted(key)}", key, value)
            for key, value in entries.items()}


def _read_rule(where: str, key: str, value: object) -> Rule:
    """One entry, ``{ status = "...", temporary = bool, meaning = "..." }``."""
    _check_code(where, key)
    if not isinstance(value, dict):
        raise TableError(f'{where}: expected an inline table such as {{ status = '
                         f'"undeliverable", temporary = false, meaning = "..." }}, got {value!r}')
    for name in value:
        if name not in ENTRY_KEYS:
            raise TableError(f"{where}: {name}: unknown key; use {', '.join(ENTRY_KEYS)}")
    temporary, meaning = value.get("temporary", False), value.get("meaning", "")
    if not isinstance(temporary, bool):
        raise TableError(f"{where}: temporary: expected true or false, got {temporary!r}")
    if not isinstance(meaning, str):
        raise TableError(f"{where}: meaning: expected a string, got {meaning!r}")
    status = _read_status(where, value.get("status"))
    jsms = value.get("jsms")
    if jsms is not None:
        if status is None:
            raise TableError(f"{where}: jsms: a pending entry ends nothing and is never "
                             f"reported; remove jsms")
        _check_jsms(f"{where}: jsms", status, jsms)
    return Rule(status, temporary, meaning, jsms)


def _read_jsms_table(path: Path, table: object) -> dict[DeliveryStatus, int]:
    """The [jsms] table: final status word -> JSMS status code."""
    if not isinstance(table, dict):
        raise TableError(f"{path}: jsms: expected a table [jsms], got {table!r}")
    finals = [s.value for s in DeliveryStatus if s.final]
    codes = {}
    for word, code in table.items():
        if word not in finals:
            raise TableError(f"{path}: [jsms] {_quoted(word)}: not a final status; use "
                             f"{', '.join(finals)}")
        codes[DeliveryStatus(word)] = _check_jsms(f"{path}: [jsms] {word}",
                                                  DeliveryStatus(word), code)
    return codes


def _check_jsms(where: str, status: DeliveryStatus, code: object) -> int:
    """A JSMS code that may stand for ``status``: 4001 for delivered and only for it."""
    if isinstance(code, bool) or not isinstance(code, int) or code not in JSMS_CODES:
        listed = ", ".join(f"{c} ({meaning})" for c, meaning in JSMS_CODES.items())
        raise TableError(f"{where}: {code!r} is not a JSMS status code for SMS; use one of "
                         f"{listed}")
    if (code == JSMS_DELIVERED) != (status is DeliveryStatus.DELIVERED):
        raise TableError(f"{where}: {code} for status {status.value}; 4001 (delivered) is for "
                         f"delivered entries only, and they take no other code")
    return code


def _read_status(where: str, word: object) -> DeliveryStatus | None:
    if isinstance(word, str) and word in STATUS_WORDS:
        return STATUS_WORDS[word]
    shown = "missing" if word is None else f"unknown status word {word!r}"
    raise TableError(f"{where}: status: {shown}; use one of {', '.join(STATUS_WORDS)}")


def _check_code(where: str, key: str) -> None:
    """A code or prefix is printable ASCII without spaces, as a Stat is on the wire."""
    if not key or not key.isascii() or not key.isprintable() or " " in key:
        raise TableError(f"{where}: a code or prefix is printable ASCII without spaces")


def _quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def derive_status(parts: Sequence[DeliveryStatus | None]) -> DeliveryStatus:
    """The status of a message from its segments' statuses, in segment order (None: the
    segment has no status yet, as ACCEPTED).

    - DELIVERED only when every segment is delivered.
    - As soon as any segment has a final status other than DELIVERED, the first such segment
      in segment order decides, even while others are pending: the message can no longer be
      delivered whole. (A later report for an earlier segment may then name another failure;
      whoever publishes the message's status keeps the first final one it published.)
    - Otherwise the message is not final, also when some segments are already delivered (a
      pending segment may still fail): SUBMITTED when every segment was submitted (SUBMITTED
      or DELIVERED), else ACCEPTED.

    Raises ValueError for an empty sequence (a message has at least one segment) and for a
    value that is not a DeliveryStatus.
    """
    statuses = [DeliveryStatus.ACCEPTED if s is None else DeliveryStatus(s) for s in parts]
    if not statuses:
        raise ValueError("derive_status: a message has at least one segment, got none")
    failure = _first_failure(statuses)
    if failure is not None:
        return statuses[failure]
    if all(s is DeliveryStatus.DELIVERED for s in statuses):
        return DeliveryStatus.DELIVERED
    if DeliveryStatus.ACCEPTED in statuses:
        return DeliveryStatus.ACCEPTED
    return DeliveryStatus.SUBMITTED


def derive_outcome(parts: Sequence[Classification | None]) -> Classification | None:
    """The receipt that decides a message, from its segments' classified receipts in segment
    order (None: no receipt yet): the first final failure, as in ``derive_status``, or the last
    segment's when all are delivered; None while the message is not final.

    Raises ValueError for an empty sequence: a message has at least one segment.
    """
    if not parts:
        raise ValueError("derive_outcome: a message has at least one segment, got none")
    statuses = [None if part is None else part.status for part in parts]
    failure = _first_failure(statuses)
    if failure is not None:
        return parts[failure]
    if all(s is DeliveryStatus.DELIVERED for s in statuses):
        return parts[-1]
    return None


def _first_failure(statuses: Iterable[DeliveryStatus | None]) -> int | None:
    """The index of the first final status other than DELIVERED, or None."""
    for index, status in enumerate(statuses):
        if status is not None and status.final and status is not DeliveryStatus.DELIVERED:
            return index
    return None
