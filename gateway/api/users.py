"""Users bound to numbers per channel (seed 000, "Upload Mobile Numbers"), and sending to them.

    POST   /v1/users           [{"userid": "zhangsan", "phone": {"cmcc": "18756432567"}}]
                               -> {"success_count", "failure_count", "users": [...]}
    POST   /v1/users           a CSV or XLSX file: text/csv, the XLSX type, or
                               multipart/form-data with a ``file`` field
                               -> {"rows", "success_count", "failure_count", "refused": [...]}
    GET    /v1/users/{userid}  -> {"userid": "zhangsan", "phone": {...}}
    PUT    /v1/users/{userid}  {"phone": {...}}: replaces the user's numbers -> as GET
    DELETE /v1/users/{userid}  -> 200, empty

An upload merges each user's numbers into those it has (a key given replaces that key's
number, the others stay); PUT replaces them all. Users belong to the app that uploaded them:
no other app reads them or sends to them. A send names a user with ``userid`` instead of
``mobile``: the number bound to the channel that will send, else the user's default.

``upload_users`` is a file's upload without HTTP: the console's Users page uploads through it.
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from typing import NamedTuple

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader

from .context import API_KEY, APP, Api, body_limit, dumps, json_body, json_value, read_limited
from .errors import ApiError
from .uploads import Row, check_user, check_userid, json_rows, read_file

MAX_USERS = 1000                       # users a JSON upload
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_TYPES = {"text/csv": "csv", "application/csv": "csv", XLSX: "xlsx"}
SUFFIXES = {".csv": "csv", ".xlsx": "xlsx"}
SEND_A_FILE = "send JSON, a CSV file or an XLSX file (save an XLS file as XLSX)"
# Users a store operation: the store has one writer, and a file's 50,000 users in one
# transaction would hold every send back for half a second; chunks let sends go in between.
SAVE_CHUNK = 2000
# Files taken at once: each is held whole, parsed in a thread and stored (its rows held), so
# this bounds memory and CPU.
UPLOADS = web.AppKey("uploads", asyncio.Semaphore)


def add_routes(app: web.Application) -> None:
    app[UPLOADS] = asyncio.Semaphore(2)
    app.router.add_post("/v1/users", upload)
    app.router.add_get("/v1/users/{userid}", get_user)
    app.router.add_put("/v1/users/{userid}", put_user)
    app.router.add_delete("/v1/users/{userid}", delete_user)


# ----------------------------------------------------------------------------- uploads

FORM_ROOM = 64 << 10        # a file sent as a multipart form: its framing, beyond the file


@body_limit(lambda settings: max(settings.max_body, settings.max_upload + FORM_ROOM))
async def upload(request: web.Request) -> web.Response:
    """Users from JSON (up to MAX_USERS) or from a file (its own limits, ``uploads``), each
    stored or refused alone; ApiError for the upload as a whole."""
    api: Api = request.app[API_KEY]
    app = request[APP]
    if not request.body_exists:
        raise ApiError(50003)
    if request.content_type == "application/json":
        rows = _json_upload(api, app, await json_value(request))
        errors = await _save(api, app, rows)
        return web.json_response(text=dumps(_report(errors, users=[
            _json_entry(row, error) for row, error in zip(rows, errors)])))
    async with request.app[UPLOADS]:
        data, filename, content_type = await _read_file(request, api.settings.max_upload)
        report = await upload_users(api, app, data, filename, content_type)
    return web.json_response(text=dumps(report))


async def upload_users(api: Api, app, data: bytes | bytearray, filename: str,
                       content_type: str) -> dict:
    """What ``POST /v1/users`` does with a file, without HTTP (the console's upload): its
    kind from ``filename``'s suffix, else ``content_type``; its users read and checked in a
    thread, then stored; the answer's body as a dict ({"success_count", "failure_count",
    "rows", "refused": [{"row", "userid", "error_code", "error_message", "error_detail"}]}).
    ApiError for the file as a whole (50017 for another type; as ``read_file``), having
    stored nothing."""
    rows = await asyncio.to_thread(read_file, data, _kind(filename, content_type),
                                   api.mobiles, app.channels)
    errors = await _save(api, app, rows)
    return _report(errors, rows=len(rows), refused=[_file_entry(row, error)
                                                    for row, error in zip(rows, errors) if error])


def _json_upload(api: Api, app, body) -> list[Row]:
    if not isinstance(body, list) or not body:
        raise ApiError(50007, 'expected a JSON array of users: [{"userid": ..., "phone": {...}}]')
    if len(body) > MAX_USERS:
        raise ApiError(50206, f"at most {MAX_USERS} users a request; upload a file for more")
    return json_rows(body, api.mobiles, app.channels)


async def _save(api: Api, app, rows: list[Row]) -> list[ApiError | None]:
    """Store the users that passed their checks, SAVE_CHUNK at a time (a file is not stored
    as a whole: what was stored before a failure stays, and uploading it again is harmless);
    for each row, why it was refused (or None)."""
    good = [row.user for row in rows if not isinstance(row.user, ApiError)]
    saved = []
    for start in range(0, len(good), SAVE_CHUNK):
        saved += await api.store.save_users(app.name, good[start:start + SAVE_CHUNK], False,
                                            api.settings.max_users, api.clock())
    stored = iter(saved)
    errors = []
    for row in rows:
        if isinstance(row.user, ApiError):
            errors.append(row.user)
        else:
            errors.append(None if next(stored) else _full(api))
    return errors


def _full(api: Api) -> ApiError:
    return ApiError(50206, f"the app holds {api.settings.max_users} users, the most it may")


def _report(errors: list[ApiError | None], **body) -> dict:
    failures = sum(error is not None for error in errors)
    return {"success_count": len(errors) - failures, "failure_count": failures, **body}


def _json_entry(row: Row, error: ApiError | None) -> dict:
    if error is None:
        return {"userid": row.user[0]}
    return {**error.entry(), "userid": row.userid}


def _file_entry(row: Row, error: ApiError) -> dict:
    return {"row": row.number, "userid": row.userid, **error.entry()}


def _kind(filename: str, content_type: str) -> str:
    """"csv" or "xlsx": from the file name's suffix, else from its type; ApiError 50017."""
    kind = SUFFIXES.get(PurePosixPath(filename).suffix.lower()) or FILE_TYPES.get(
        content_type.partition(";")[0].strip().lower())
    if kind is None:
        raise ApiError(50017, SEND_A_FILE)
    return kind


async def _read_file(request: web.Request, limit: int) -> tuple[bytes | bytearray, str, str]:
    """The uploaded file, its name ("" when sent as the body) and its type; ApiError 50017
    (a body of another type), 50007 (over ``limit`` bytes, or a malformed form)."""
    if request.content_type == "multipart/form-data":
        return await _form_file(request, limit)
    _kind("", request.content_type)                   # before the body is read
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    return data, "", request.content_type


async def _form_file(request: web.Request, limit: int) -> tuple[bytes, str, str]:
    """The ``file`` field of a form, with its name and type."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                filename = part.filename or ""
                content_type = part.headers.get("Content-Type", "")
                _kind(filename, content_type)         # before the part is read
                data = await read_limited(part, limit)
                if data is None:
                    raise _too_large(limit)
                return data, filename, content_type
    except (ValueError, HttpProcessingError):
        raise ApiError(50007, "not a well-formed multipart/form-data body") from None
    raise ApiError(50007, "the form has no file field")


def _too_large(limit: int) -> ApiError:
    return ApiError(50007, f"a users file is up to {limit} bytes (max_upload)")


# ----------------------------------------------------------------------------- one user

async def get_user(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    userid = check_userid(request.match_info["userid"])
    phones = await api.store.user(request[APP].name, userid)
    if phones is None:
        raise ApiError(50203)
    return _user(userid, phones)


async def put_user(request: web.Request) -> web.Response:
    """Replace the user's numbers (a new user is created); ApiError as ``check_user``, 50007
    (a userid in the body that is not the path's), 50206 (the app holds max_users)."""
    api: Api = request.app[API_KEY]
    app = request[APP]
    userid = check_userid(request.match_info["userid"])
    body = await json_body(request)
    if body.get("userid", userid) != userid:
        raise ApiError(50007, "the userid in the body is not the one in the path")
    user = check_user(userid, body.get("phone"), api.mobiles, app.channels)
    if not (await api.store.save_users(app.name, [user], True, api.settings.max_users,
                                       api.clock()))[0]:
        raise _full(api)
    return _user(*user)


async def delete_user(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    userid = check_userid(request.match_info["userid"])
    if not await api.store.delete_user(request[APP].name, userid):
        raise ApiError(50203)
    return web.Response(status=200)


def _user(userid: str, phones: dict[str, str]) -> web.Response:
    return web.json_response(text=dumps({"userid": userid, "phone": dict(sorted(phones.items()))}))


# ----------------------------------------------------------------------------- sending

class UserRef(NamedTuple):
    """A recipient named by userid: its number depends on the channel that sends."""

    userid: str


def recipient(api: Api, entry) -> str | UserRef:
    """Whom a send or a batch's recipient names: its ``mobile``, normalised, or a user by
    ``userid``; ApiError 50004 (neither), 50006 (a bad number), 50201/50202 (a bad userid),
    50007 (both, or not an object)."""
    if not isinstance(entry, dict):
        raise ApiError(50007, "a recipient must be an object")
    if entry.get("userid") is None:
        return api.mobiles.normalize(entry.get("mobile"))
    if entry.get("mobile") not in (None, ""):
        raise ApiError(50007, "give mobile or userid, not both")
    return UserRef(check_userid(entry["userid"]))


def batch_recipients(api: Api, entries: list) -> list:
    """Whom each of a batch's ``entries`` names (``recipient``), or the ApiError that
    refused it."""
    found = []
    for entry in entries:
        try:
            found.append(recipient(api, entry))
        except ApiError as error:
            found.append(error)
    return found


async def numbers(api: Api, app, recipients: list, channel: str) -> list:
    """``recipients`` (numbers, UserRefs, or the ApiErrors that refused them) with each user
    replaced by the number to send to on ``channel``: the one bound to it, else the user's
    default; or by ApiError 50203 (the app has no such user) or 50204 (no number for
    ``channel``)."""
    userids = {r.userid for r in recipients if type(r) is UserRef}
    if not userids:
        return recipients
    found = await api.store.user_numbers(app.name, list(userids), channel)
    return [_bound(found, r.userid, channel) if type(r) is UserRef else r for r in recipients]


async def number(api: Api, app, who: str | UserRef, channel: str) -> str:
    """The number to send a single message to; ApiError as ``numbers``."""
    (found,) = await numbers(api, app, [who], channel)
    if isinstance(found, ApiError):
        raise found
    return found


def _bound(found: dict, userid: str, channel: str) -> str | ApiError:
    if userid not in found:
        return ApiError(50203)
    return found[userid] or ApiError(50204, f"{channel}, and no default")
