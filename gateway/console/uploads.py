"""A posted form that carries a file, read once, as a stream, and CSRF-checked before the
file is.

An ordinary form is small (the console's MAX_FORM) and the guard reads it whole. A form with
a file (``multipart/form-data``, a handler marked ``takes_file``) may be as large as ``[api]
max_upload``: a Content-Length over that is refused at once, before any of the body is read
(aiohttp then reads what the browser still sends and throws it away, so that the browser
sees the answer). Otherwise the parts are read in order: the text fields (together at most
FIELDS bytes), and when the file's part begins, the form's CSRF token, which browsers send
first since it comes first in the form, must already be there and be right; only then is
the file read, into one buffer, up to the limit. Nothing is written to disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader
from multidict import MultiDict

from .context import Refused

FIELDS = 64 << 10               # bytes of a file form's text fields, all together
PARTS = 16                      # parts of a file form
FRAMING = 16 << 10              # bytes of a form's boundaries and part headers
CHUNK = 64 << 10


@dataclass(frozen=True)
class Upload:
    """The file of a form: its name and type as the browser gave them, and its bytes."""

    filename: str
    content_type: str
    data: bytearray = field(repr=False)


def takes_file(handler):
    """Mark a handler whose POST is a form with a file (read by ``read_file_form``)."""
    handler.console_file = True
    return handler


def wants_file(request: web.Request) -> bool:
    return getattr(request.match_info.handler, "console_file", False) and \
        request.content_type == "multipart/form-data"


def size(limit: int) -> str:
    """A limit in words: "8 MiB", or bytes when it is not a whole number of MiB."""
    return f"{limit >> 20} MiB" if limit and limit % (1 << 20) == 0 else f"{limit} bytes"


def refuse_oversized(request: web.Request, limit: int) -> None:
    """Refused 413 when the Content-Length says the form holds more than a file of ``limit``
    bytes and its fields: before any of the body is read."""
    if request.content_length is not None and request.content_length > limit + FIELDS + FRAMING:
        raise too_large(limit)


def too_large(limit: int) -> Refused:
    return Refused(413, f"The file is larger than {size(limit)}, the most a users file may be "
                        "([api] max_upload); nothing was stored. Split it into smaller files.")


async def read_file_form(request: web.Request, limit: int,
                         check_csrf: Callable[[str | None], None]) -> MultiDict:
    """The form's text fields, and its file as an ``Upload`` (at most one, of up to ``limit``
    bytes); ``check_csrf(token)`` raises when the token is not the session's, and is called
    before the file is read, or at the end of a form without one. Refused: 413 (over the
    limits), 400 (not a well-formed form), or as ``check_csrf``. The caller has refused an
    oversized Content-Length already (``refuse_oversized``)."""
    try:
        form = await _parts(request, limit, check_csrf)
    except (ValueError, LookupError, HttpProcessingError, web.RequestPayloadError,
            ConnectionError):
        raise Refused(400, "The form did not arrive whole or well formed; try again.") \
            from None
    if not any(isinstance(value, Upload) for value in form.values()):
        check_csrf(form.get("csrf_token"))
    return form


async def _parts(request: web.Request, limit: int, check_csrf) -> MultiDict:
    reader = await request.multipart()
    form: MultiDict = MultiDict()
    room = FIELDS
    for _ in range(PARTS):
        part = await reader.next()
        if part is None:
            return form
        if not isinstance(part, BodyPartReader) or not part.name:
            raise Refused(400, "The form holds a part this console does not take.")
        if part.filename is None:
            value = await _read(part, room)
            if value is None:
                raise Refused(413, "The form's fields are too long.")
            room -= len(value)
            form.add(part.name, value.decode(part.get_charset("utf-8"), "replace"))
        elif any(isinstance(value, Upload) for value in form.values()):
            raise Refused(400, "Send one file at a time.")
        else:
            check_csrf(form.get("csrf_token"))          # before a byte of the file is read
            data = await _read(part, limit)
            if data is None:
                raise too_large(limit)
            form.add(part.name, Upload(part.filename, part.headers.get("Content-Type", ""), data))
    raise Refused(400, f"The form holds more than {PARTS} parts.")


async def _read(part: BodyPartReader, limit: int) -> bytearray | None:
    """The part's content, or None as soon as it grows over ``limit`` bytes."""
    content = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        content += chunk
        if len(content) > limit:
            return None
    return content
