"""Ids as the API reads them, from a path (``/v1/messages/{msg_id}``) or a JSON body
(``temp_id``, ``sign_id``): ASCII digits, or a JSON integer, within the store's integer.

Python's ``int()`` and ``str.isdigit()`` also take other scripts' digits (``int("١") == 1``,
an Arabic-Indic one), and ``int()`` spaces, a sign and underscores; none of them is an id. An
id beyond the store's 64-bit integer cannot name anything and would not fit in a query.
"""

from __future__ import annotations

import re

from .errors import ApiError

LARGEST = 2**63 - 1                      # SQLite's INTEGER, PostgreSQL's BIGINT
_DIGITS = re.compile("[0-9]{1,19}")      # [0-9], not \d: \d matches every script's digits


def parse_id(value, code: int) -> int:
    """``value``, a string of ASCII digits or an int, as an id; ApiError ``code`` (the
    endpoint's not-found or invalid code) for anything else or a number outside 0..2**63-1."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ApiError(code)
    if not 0 <= number <= LARGEST:
        raise ApiError(code)
    return number
