"""What an upload of users holds, checked: from a JSON array, or from a CSV or XLSX file.

A user is a ``userid`` and its numbers by key: a channel's name (the seed's "ChannelKey") or
``default``, the number used on a channel the user has none for. Each number is checked and
normalised like a send's ``mobile``. A file has a header row, ``userid``, ``phone`` (the
default number; ``default`` is the same column) and a column per channel, then a user a row;
blank rows are skipped, and a blank cell binds nothing. CSV is read as UTF-8 (with or without
a BOM), else as GB18030 (how Excel on a Chinese Windows saves it); XLSX with openpyxl, its
first worksheet, read-only (and defusedxml, so entities in its XML are refused). Reading a
file is CPU work: callers run ``read_file`` in a thread.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Iterator, NamedTuple

from .errors import ApiError
from .rules import MobileRule

USERID = re.compile(r"[\w.@+-]{1,64}")
USERID_RULE = "1 to 64 letters, digits, _ . @ + or -"
DEFAULT = "default"
MAX_ROWS = 50_000                # users a file
MAX_COLUMNS = 64                 # columns read from a worksheet
MAX_EXPANDED = 64 << 20          # bytes an XLSX may unpack to (50,000 users take a few MiB)
EXCEL_ROWS = 1_048_576           # the most a worksheet has: bounds what openpyxl pads


class Row(NamedTuple):
    """One user of an upload: where it was (the row of a file, the header being row 1; the
    index in a JSON array), the userid as given, and the user checked or why it is refused."""

    number: int
    userid: object
    user: tuple[str, dict[str, str]] | ApiError


# ----------------------------------------------------------------------------- one user

def check_userid(userid) -> str:
    """The userid; ApiError 50201 (missing) or 50202 (not USERID_RULE)."""
    if userid is None or userid == "":
        raise ApiError(50201)
    if isinstance(userid, int) and not isinstance(userid, bool):
        userid = str(userid)
    if not isinstance(userid, str) or not USERID.fullmatch(userid):
        raise ApiError(50202, USERID_RULE)
    return userid


def check_user(userid, phones, mobiles: MobileRule,
               channels: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """(userid, {key: number}) with every number normalised; ApiError 50201/50202 (the
    userid), 50007 (``phones`` not an object), 50004 (no number), 50205 (a key that is neither
    ``default`` nor one of ``channels``), 50006 (a number that is not a mobile number)."""
    userid = check_userid(userid)
    if phones is None or phones == {}:
        raise ApiError(50004, "phone has no number")
    if not isinstance(phones, dict):
        raise ApiError(50007, 'phone must be an object: {"<channel or default>": "<number>"}')
    numbers = {}
    for key, mobile in phones.items():
        if key != DEFAULT and key not in channels:
            raise ApiError(50205, f"{key!r} is neither default nor a channel of this app "
                                  f"({', '.join(channels)})")
        try:
            numbers[key] = mobiles.normalize(mobile)
        except ApiError as error:
            raise ApiError(error.code, f"for {key}") from None
    return userid, numbers


def json_rows(body, mobiles: MobileRule, channels: tuple[str, ...]) -> list[Row]:
    """The users of a JSON upload, each checked (``body`` is the parsed array)."""
    rows = []
    for index, item in enumerate(body):
        userid = item.get("userid") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise ApiError(50007, 'a user is an object: {"userid": ..., "phone": {...}}')
            user = check_user(userid, item.get("phone"), mobiles, channels)
        except ApiError as error:
            user = error
        rows.append(Row(index, userid, user))
    return rows


# ----------------------------------------------------------------------------- files

def read_file(data: bytes, kind: str, mobiles: MobileRule,
              channels: tuple[str, ...]) -> list[Row]:
    """The users of a CSV or XLSX file (``kind`` "csv" or "xlsx"), each checked.
    ApiError for the file as a whole: 50007 (unreadable, a column twice, a blank header),
    50201 (no userid column), 50004 (no number column), 50205 (a column that is neither
    userid, phone, default nor a channel of the app), 50206 (over MAX_ROWS users)."""
    lines = _lines(_csv_cells(data) if kind == "csv" else _xlsx_cells(data))
    header = next(lines, None)
    if header is None:
        raise ApiError(50003, "the file has no rows")
    userid_at, keys = _columns(header[1], channels)
    return [_file_row(number, cells, userid_at, keys, mobiles, channels)
            for number, cells in lines]


def _lines(cells: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    """The rows that are not blank, the header and up to MAX_ROWS more; ApiError 50206 when
    there are more (before reading them)."""
    count = 0
    for number, row in cells:
        if any(row):
            count += 1
            if count > MAX_ROWS + 1:
                raise ApiError(50206, f"a file holds up to {MAX_ROWS} users (row {number})")
            yield number, row


def _columns(header: list[str], channels: tuple[str, ...]) -> tuple[int, dict[int, str]]:
    """The userid column, and the number columns with their keys (blank cells at the end of
    the header name no column)."""
    while header and not header[-1]:
        header = header[:-1]
    names = {}
    for at, name in enumerate(header):
        lowered = name.lower()
        key = "userid" if lowered == "userid" else DEFAULT if lowered in ("phone", DEFAULT) \
            else name
        if not name:
            raise ApiError(50007, f"column {at + 1} has no name in the header row")
        if key in names.values():
            raise ApiError(50007, f"column {name!r} is given twice")
        if key not in ("userid", DEFAULT) and key not in channels:
            raise ApiError(50205, f"column {name!r} is neither userid, phone nor a channel of "
                                  f"this app ({', '.join(channels)})")
        names[at] = key
    if "userid" not in names.values():
        raise ApiError(50201, "the header row has no userid column")
    if len(names) == 1:
        raise ApiError(50004, "the header row has no phone or channel column")
    userid_at = next(at for at, key in names.items() if key == "userid")
    return userid_at, {at: key for at, key in names.items() if at != userid_at}


def _file_row(number: int, cells: list[str], userid_at: int, keys: dict[int, str],
              mobiles: MobileRule, channels: tuple[str, ...]) -> Row:
    userid = cells[userid_at] if userid_at < len(cells) else ""
    try:
        if any(cell for at, cell in enumerate(cells) if at != userid_at and at not in keys):
            raise ApiError(50007, "a cell outside the named columns")
        phones = {key: cells[at] for at, key in keys.items() if at < len(cells) and cells[at]}
        return Row(number, userid, check_user(userid, phones, mobiles, channels))
    except ApiError as error:
        return Row(number, userid, error)


def _csv_cells(data: bytes) -> Iterator[tuple[int, list[str]]]:
    text = _decode(data)
    number = 0
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            yield number, [cell.strip() for cell in row]
    except csv.Error as error:
        raise ApiError(50007, f"not a readable CSV file (row {number + 1}: {error})") from None


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ApiError(50007, "a CSV file must be UTF-8 or GB18030 text")


def _xlsx_cells(data: bytes) -> Iterator[tuple[int, list[str]]]:
    """The first worksheet's rows (up to MAX_COLUMNS cells each) as text. Whatever openpyxl
    raises on a malformed file is ApiError 50007."""
    import openpyxl  # here: importing it takes a few hundred ms, at the first XLSX

    _check_expanded(data)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # noqa: BLE001 - any failure of the parser: the file is bad
        raise _unreadable(error) from None
    try:
        rows = _worksheet_rows(book)
        for number in range(1, EXCEL_ROWS + 1):
            try:
                row = next(rows, None)
            except Exception as error:  # noqa: BLE001 - as above, found while reading on
                raise _unreadable(error) from None
            if row is None:
                return
            if any(row):                # openpyxl pads gaps between rows with blank ones
                yield number, [_text(value) for value in row]
    finally:
        book.close()


def _worksheet_rows(book) -> Iterator[tuple]:
    if not book.worksheets:
        raise ApiError(50007, "the XLSX file has no worksheet")
    return book.worksheets[0].iter_rows(max_col=MAX_COLUMNS, max_row=EXCEL_ROWS,
                                        values_only=True)


def _check_expanded(data: bytes) -> None:
    """Refuse an XLSX that would unpack to more than MAX_EXPANDED bytes (a zip bomb):
    zipfile reads no entry past the size its directory declares."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise _unreadable(error) from None
    if expanded > MAX_EXPANDED:
        raise ApiError(50007, f"the XLSX file unpacks to more than {MAX_EXPANDED >> 20} MiB")


def _unreadable(error: Exception) -> ApiError:
    return ApiError(50007, f"not a readable XLSX file ({type(error).__name__})")


def _text(value) -> str:
    """A cell as text: a whole number without ".0" (a number typed into Excel is a float)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
