"""The signature form of the JSMS signature API (``multipart/form-data``), read and checked.

Fields: ``sign`` (the text; ``SIGN_RULE``, checked with the app's other signatures by
``templates_signs``), ``type`` (JSMS's 1 to 7: company, website, app, public account or mini
program, shop, trademark, other) and ``remark`` (up to 100 characters on how the signature
is used), as the official clients send them, both optional; and images (50101): at most 4,
fields image0 to image3, each a PNG, JPEG or GIF (by its first bytes) of at most 2 MiB. An
empty image is ignored, as browsers send an empty file input; the official JSMS Java client
sends its images as repeated ``images`` fields instead, each taking the next free slot. These
limits bound the form (``MAX_FORM``, checked against its Content-Length up front) instead of
``[api] max_body``. A bad type or remark, any other field, or one given twice, is 50007.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader

from .context import read_limited
from .errors import ApiError

SIGN_RULE = "2 to 8 Chinese characters, letters or digits, without 【】, spaces or punctuation"
MAX_SIGN_FIELD = 256                    # bytes read of the sign field before refusing it
IMAGE_FIELD = re.compile(r"image(0|[1-9][0-9]*)")
MAX_REMARK = 100                        # characters
MAX_TEXT_FIELD = 1024                   # bytes read of type or remark before refusing it
MAX_IMAGES = 4
MAX_IMAGE = 2 << 20
# The most a signature form can be: its parts' limits, and room for their headers.
MAX_FORM = MAX_IMAGES * MAX_IMAGE + MAX_SIGN_FIELD + (16 << 10)
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


@dataclass
class SignForm:
    sign: str | None = None
    images: list = field(default_factory=list)      # (slot, content, content type)
    type: int | None = None
    remark: str | None = None


async def read_sign_form(request: web.Request) -> SignForm:
    """The signature form; ApiError 50003 (no body, or a form without fields), 50017 (not
    multipart/form-data), 50007 (malformed, or an unknown or repeated field), 50104 (a sign
    field too long or not UTF-8), 50101 (a bad image)."""
    if not request.body_exists:
        raise ApiError(50003)
    if request.content_type != "multipart/form-data":
        raise ApiError(50017, "send multipart/form-data")
    form, seen = SignForm(), set()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            await _read_field(part, form, seen)
    except (ValueError, HttpProcessingError):
        raise ApiError(50007, "not a well-formed multipart/form-data body") from None
    if not seen:
        raise ApiError(50003, "the form has no fields")
    return form


async def _read_field(part, form: SignForm, seen: set) -> None:
    if not isinstance(part, BodyPartReader) or not part.name:
        raise ApiError(50007, "every part is a named form field")
    if part.name in seen and part.name != "images":
        raise ApiError(50007, f"field {part.name!r} given twice")
    seen.add(part.name)
    if part.name == "sign":
        form.sign = await _read_sign(part)
    elif part.name == "type":
        form.type = _sign_type(await _read_text(part, "type"))
    elif part.name == "remark":
        form.remark = _remark(await _read_text(part, "remark"))
    else:
        await _read_image(part, form)


async def _read_image(part: BodyPartReader, form: SignForm) -> None:
    taken = {slot for slot, _, _ in form.images}
    match = IMAGE_FIELD.fullmatch(part.name)
    if part.name == "images":                   # the Java client's: the next free slot
        slot = min(set(range(MAX_IMAGES + 1)) - taken)
    elif match is None:
        raise ApiError(50007, f"unknown field {part.name!r}; send sign, type, remark and "
                              "image0 to image3")
    else:
        slot = int(match[1])
    if slot >= MAX_IMAGES or slot in taken:
        raise ApiError(50101, f"at most {MAX_IMAGES} images, image0 to image{MAX_IMAGES - 1}")
    content = await read_limited(part, MAX_IMAGE)
    if content is None:
        raise ApiError(50101, f"{part.name} is larger than {MAX_IMAGE >> 20} MiB")
    if content:
        form.images.append((slot, content, image_type(part.name, content)))


async def _read_text(part: BodyPartReader, name: str) -> str:
    raw = await read_limited(part, MAX_TEXT_FIELD)
    try:
        if raw is None:
            raise ValueError
        return raw.decode(part.get_charset("utf-8")).strip()
    except (ValueError, LookupError):
        raise ApiError(50007, f"{name} is UTF-8 text of at most {MAX_TEXT_FIELD} "
                              "bytes") from None


def _sign_type(text: str) -> int | None:
    """The signature's JSMS type, 1 to 7 (None when the field is empty); ApiError 50007."""
    if text == "":
        return None
    if not re.fullmatch("[1-7]", text):
        raise ApiError(50007, "type is 1 (company), 2 (website), 3 (app), 4 (public account "
                              "or mini program), 5 (shop), 6 (trademark) or 7 (other)")
    return int(text)


def _remark(text: str) -> str | None:
    if len(text) > MAX_REMARK:
        raise ApiError(50007, f"remark is at most {MAX_REMARK} characters")
    return text or None


async def _read_sign(part: BodyPartReader) -> str:
    raw = await read_limited(part, MAX_SIGN_FIELD)
    if raw is None:
        raise ApiError(50104, SIGN_RULE)
    try:
        return raw.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise ApiError(50104, "the sign field is not UTF-8 text") from None


def image_type(name: str, content: bytes) -> str:
    """The MIME type read from the image's first bytes; ApiError 50101 for anything else."""
    for magic, kind in IMAGE_MAGIC:
        if content.startswith(magic):
            return kind
    raise ApiError(50101, f"{name} is not a PNG, JPEG or GIF image")
