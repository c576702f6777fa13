"""Users (seed 000, "Upload Mobile Numbers" by file upload in the console): an app's users
and their numbers per channel. Upload a CSV or XLSX file and see its report row by row;
search an app's users by the beginning of their userid; one user's numbers; delete a user.

An upload goes the way of ``POST /v1/users`` with a file (the same format, checks and limits,
through the daemon's ``upload_users``): each row stored or refused alone, the file refused
whole when it cannot be read. Only admins upload, reveal and delete, and each of these goes
into the audit trail (an upload with its counts, never a number). Numbers are shown masked
(``138****8000``) until an admin reveals one user's, as on the messages page. Searches read
one range of the store's (app, userid) key, a page at a time, however many users an app
holds; a userid is the app's name for its user and is shown as it is.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from ..security import CONSOLE, FORM, Refused, admin, operator_of, redirect, render
from ..services import UploadRefused
from ..uploads import Upload, size, takes_file
from . import Section
from .messages import masked

SECTION = Section("users", "/users", "Users")
PAGE = 50
REPORT_ROWS = 500               # refused rows shown of an upload; the count says how many more
MAX_USERID = 64
DEFAULT = "default"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/users", search)
    router.add_post("/users/upload", upload)
    router.add_get("/users/user", user_page)
    router.add_post("/users/user/reveal", reveal)
    router.add_post("/users/user/delete", delete)


def _page(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    return render(template, request, {"section": SECTION.key, "masked": masked, **context},
                  status=status)


def user_link(app: str, userid: str) -> str:
    return "/users/user?" + urlencode({"app": app, "userid": userid})


# ----------------------------------------------------------------------------- search

async def search(request: web.Request) -> web.Response:
    return await _search(request, request.query)


async def _search(request: web.Request, params, errors: dict[str, str] | None = None,
                  status: int = 200) -> web.Response:
    """The search of ``params``' ``app``, ``prefix`` and ``after`` (where the last page
    ended), with the upload form; ``errors`` of an upload that was refused, by field."""
    console = request.app[CONSOLE]
    apps = sorted(console.apps)
    app = params.get("app") or (apps[0] if apps else "")
    prefix, after = params.get("prefix", "").strip(), params.get("after") or None
    errors = dict(errors or {})
    if app and app not in console.apps:
        errors["app"] = "there is no such app"
    if len(prefix) > MAX_USERID or len(after or "") > MAX_USERID:
        errors["prefix"] = f"a userid is at most {MAX_USERID} characters"
    rows, count = [], 0
    if app in console.apps and "prefix" not in errors:
        rows = await console.store.find_users(app, prefix, after, PAGE + 1)
        count = await console.store.user_count(app)
    more = {"app": app, "prefix": prefix, "after": rows[PAGE - 1].userid} \
        if len(rows) > PAGE else None
    return _page(request, "users.html", status, title=SECTION.title, apps=apps, app=app,
                 prefix=prefix, after=after, rows=rows[:PAGE], count=count, more=more,
                 errors=errors, link=user_link, deleted=params.get("deleted"),
                 max_upload=size(console.config.api.max_upload), max_userid=MAX_USERID,
                 channels=console.apps[app].channels if app in console.apps else ())


# ----------------------------------------------------------------------------- upload

@admin
@takes_file
async def upload(request: web.Request) -> web.Response:
    """Store the users of the posted file for the chosen app, and show what became of each
    row; the search page with the problem under its field when the file is refused whole."""
    console, form = request.app[CONSOLE], request[FORM]
    app = console.apps.get(str(form.get("app", "")))
    file = form.get("file")
    if app is None:
        return await _search(request, {}, {"upload_app": "choose an app"}, 400)
    shown = {"app": app.name}
    if not isinstance(file, Upload) or not file.data:
        return await _search(request, shown, {"file": "choose a CSV or XLSX file"}, 400)
    operator = operator_of(request)
    try:
        report = await console.services.upload_users(app.name, file.data, file.filename,
                                                     file.content_type)
    except UploadRefused as refused:
        await console.audit(operator, "users upload refused", f"app {app.name}",
                            f"{_named(file)}: {refused.code} {refused.message}")
        return await _search(request, shown, {"file": f"{refused.message} ({refused.code}); "
                                                      "nothing was stored"}, 400)
    await console.audit(operator, "users uploaded", f"app {app.name}",
                        f"{_named(file)}: rows={report['rows']}, "
                        f"stored={report['success_count']}, refused={report['failure_count']}")
    return _page(request, "users_report.html", title=f"Users of {app.name}: upload",
                 app=app.name, filename=file.filename, report=report,
                 refused=report["refused"][:REPORT_ROWS],
                 hidden=max(0, len(report["refused"]) - REPORT_ROWS))


def _named(file: Upload) -> str:
    """The file as the audit names it: its name, cut short, and its size."""
    name = file.filename if len(file.filename) <= 80 else file.filename[:77] + "..."
    return f"file {name!r} ({len(file.data)} bytes)"


# ----------------------------------------------------------------------------- one user

def _which(values) -> tuple[str, str]:
    """(app, userid) named by the URL's or the form's fields; 404 when they name nothing."""
    app, userid = str(values.get("app", "")), str(values.get("userid", ""))
    if not app or not userid or len(userid) > MAX_USERID:
        raise Refused(404, "There is no such user.")
    return app, userid


async def user_page(request: web.Request, revealed: bool = False) -> web.Response:
    console = request.app[CONSOLE]
    app, userid = _which(request[FORM] if revealed else request.query)
    phones = await console.store.user(app, userid)
    if phones is None:
        raise Refused(404, f"App {app} has no user {userid}.")
    channels = console.apps[app].channels if app in console.apps else ()
    return _page(request, "user.html", title=f"User {userid}", app=app, userid=userid,
                 numbers=numbers_by_key(phones, channels), revealed=revealed)


def numbers_by_key(phones: dict[str, str], channels) -> list[tuple[str, str, str]]:
    """(key, number, the channels that send to it) of each of the user's numbers: the app's
    channels in their order, then the default, then keys that name no channel of the app
    (a channel renamed or taken from the app)."""
    rows = [(c, phones[c], c) for c in channels if c in phones]
    without = [c for c in channels if c not in phones]
    if DEFAULT in phones:
        rows.append((DEFAULT, phones[DEFAULT],
                     ", ".join(without) or "none: every channel has its own"))
    rows += [(key, number, "none: not a channel of this app")
             for key, number in sorted(phones.items()) if key != DEFAULT and key not in channels]
    return rows


@admin
async def reveal(request: web.Request) -> web.Response:
    """The user's numbers in full, once written to the audit trail."""
    console = request.app[CONSOLE]
    app, userid = _which(request[FORM])
    if await console.store.user(app, userid) is None:
        raise Refused(404, f"App {app} has no user {userid}.")
    await console.audit(operator_of(request), "user's numbers revealed",
                        f"user {userid} of app {app}")
    return await user_page(request, revealed=True)


@admin
async def delete(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    app, userid = _which(request[FORM])
    note = console.note(operator_of(request), "user deleted", f"user {userid} of app {app}")
    if not await console.store.delete_user(app, userid, note, console.clock()):
        raise Refused(404, f"App {app} has no user {userid}.")
    return redirect("/users?" + urlencode({"app": app, "deleted": userid}))
