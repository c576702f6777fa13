"""The console's guard: who may see and do what, and the headers every answer carries.

Access is per route: ``public`` (the login page, the static files), ``viewer`` (any signed-in
operator; the default for GET), ``admin`` (the default for POST). A request without a live
session is sent to the login page (GET) or refused (POST). A viewer's POST (other than
signing out) is refused with 403 before its form is read. Every POST must come from a page
of the console: an ``Origin`` header, when the browser sends one, names this host, and the
form carries the session's CSRF token; otherwise it is refused with 403 and changes nothing.
A form is read whole up to the console's MAX_FORM, but a form with a file (``takes_file``),
read as a stream up to ``[api] max_upload``, its token checked before its file (``uploads``),
UPLOADS at a time. Every answer carries a Content Security Policy without inline script or
style, forbids framing and sniffing, sends no Referer outside the console, and every page is
``Cache-Control: no-store``, since pages may show a secret once or a revealed number.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from .context import Refused
from .sessions import Operator
from .uploads import read_file_form, refuse_oversized, wants_file

log = logging.getLogger("cmpp_gateway.console")

PUBLIC, VIEWER, ADMIN = "public", "viewer", "admin"
CONSOLE = web.AppKey("console", object)
OPERATOR = web.RequestKey("operator", object)   # the signed-in Operator, None on public routes
FORM = web.RequestKey("form", object)           # a POST's form, read and checked by the guard

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def access(level: str):
    """Mark a handler's access level (PUBLIC, VIEWER or ADMIN)."""
    def mark(handler):
        handler.console_access = level
        return handler
    return mark


public, viewer, admin = access(PUBLIC), access(VIEWER), access(ADMIN)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


def required_access(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if isinstance(resource, web.StaticResource):
        return PUBLIC
    level = getattr(request.match_info.handler, "console_access", None)
    return level or (VIEWER if request.method in ("GET", "HEAD") else ADMIN)


# ----------------------------------------------------------------------------- middlewares

@web.middleware
async def headers(request: web.Request, handler):
    response = await handler(request)
    response.headers.update(HEADERS)
    if not isinstance(request.match_info.route.resource, web.StaticResource):
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def errors(request: web.Request, handler):
    """Every failure as a page of the console with its status; nothing unexpected leaks."""
    try:
        return await handler(request)
    except Refused as refused:
        return error_page(request, refused.status, refused.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_page(request, error.status, _words(error.status))
    except Exception:  # noqa: BLE001 - the operator gets a 500 page, the log the trace
        log.exception("console: %s %s failed", request.method, request.path)
        return error_page(request, 500, "Something went wrong; the log says what.")


def _words(status: int) -> str:
    return {404: "There is no such page.", 405: "That page does not take this method.",
            413: "The form is too large."}.get(status, "The request was refused.")


def render(template: str, request: web.Request, context: dict,
           status: int = 200) -> web.Response:
    """The page ``template`` with ``context`` and what every page shows: the operator and
    the CSRF token of their session (the navigation and times are the templates' globals)."""
    operator = request.get(OPERATOR)
    return aiohttp_jinja2.render_template(template, request, {
        "operator": operator, "csrf_token": operator.csrf if operator else "", "section": "",
        "title": "", **context}, status=status)


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render("error.html", request, {"status": status, "message": message,
                                          "title": str(status)}, status)


@web.middleware
async def guard(request: web.Request, handler):
    """Sessions, CSRF and roles, as the module says."""
    console = request.app[CONSOLE]
    level = required_access(request)
    if request.method == "POST":
        _check_origin(request)
    if level == PUBLIC:
        request[OPERATOR] = None
        return await handler(request)
    operator = await console.sessions.find(request)
    if operator is None:
        request[OPERATOR] = None
        if request.method in ("GET", "HEAD"):
            return redirect(f"/login?next={quote(request.path_qs, safe='')}")
        raise Refused(403, "Your session has ended. Sign in again, then repeat what you did.")
    request[OPERATOR] = operator
    if level == ADMIN and not operator.admin:
        raise Refused(403, "Your role is viewer: you can look, not change or reveal.")
    if request.method != "POST":
        return await handler(request)
    if wants_file(request):
        return await _with_file(request, handler, operator)
    form = await request.post()
    _check_csrf(request, operator, form.get("csrf_token"))
    request[FORM] = form
    return await handler(request)


async def _with_file(request: web.Request, handler, operator: Operator):
    """A form with a file, refused at once when too large, else read and handled while the
    file is held, UPLOADS at a time."""
    console = request.app[CONSOLE]
    limit = console.config.api.max_upload
    refuse_oversized(request, limit)                  # before waiting for a turn
    async with console.uploads:
        request[FORM] = await read_file_form(request, limit,
                                             lambda token: _check_csrf(request, operator, token))
        return await handler(request)


def _check_csrf(request: web.Request, operator: Operator, token) -> None:
    if not request.app[CONSOLE].sessions.csrf_ok(operator, token):
        log.warning("console: %s %s refused: no valid CSRF token", request.method,
                    request.path)
        raise Refused(403, "This form did not come from this console, or it is too old. "
                           "Reload the page and try again.")


def _check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin == "null" or urlsplit(origin).netloc != request.host:
        log.warning("console: %s %s refused: Origin is not this console", request.method,
                    request.path)
        raise Refused(403, "This form was sent from another site.")
