"""Signing in and out.

A wrong name or password gets one answer (401, "wrong name or password") after the same
work, whether or not the account exists. Failed sign-ins are counted per source address and
per account (``[console] login_failures_per_source``, ``login_failures_per_account``, over
15 minutes); past either limit the answer is 429 until the oldest failure is 15 minutes old,
and no password is checked meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re

from aiohttp import web

from ..auth import UNKNOWN_ACCOUNT, check_password
from ..security import CONSOLE, Refused, operator_of, public, redirect, render, viewer

log = logging.getLogger("cmpp_gateway.console")

MAX_NAME = 64
LOCAL_PATH = re.compile(r"/(?![/\\])[\x21-\x5b\x5d-\x7e]*")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/login", login_page)
    router.add_post("/login", login)
    router.add_post("/logout", logout)


def _next(raw: str | None) -> str:
    """Where to go after signing in: a path of this console only (one slash, then visible
    ASCII without a backslash: browsers read "//", "/\\" or "/<tab>/" as another host)."""
    return raw if raw and LOCAL_PATH.fullmatch(raw) else "/"


def _form(request: web.Request, status: int = 200, error: str = "", name: str = "",
          next_path: str = "/") -> web.Response:
    console = request.app[CONSOLE]
    token, cookie = console.sessions.login_token(request)
    response = render(
        "login.html", request, {"login_token": token, "error": error, "name": name,
                                "next": next_path}, status=status)
    console.sessions.set_login_cookie(response, cookie)
    return response


@public
async def login_page(request: web.Request) -> web.Response:
    if await request.app[CONSOLE].sessions.find(request) is not None:
        return redirect("/")
    return _form(request, next_path=_next(request.query.get("next")))


@public
async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    form = await request.post()
    if not console.sessions.login_csrf_ok(request, form.get("login_token")):
        raise Refused(403, "This sign-in form is too old or came from elsewhere. Reload the "
                           "page and sign in again.")
    name = str(form.get("name", ""))[:MAX_NAME]
    password = str(form.get("password", ""))
    next_path, source = _next(str(form.get("next", ""))), request.remote or "?"
    now = console.clock()
    wait = console.limiter.wait(source, name, now)
    if wait > 0:
        log.warning("console: sign-in refused, too many failures (source %s)", source)
        return _form(request, 429, f"Too many failed sign-ins. Try again in "
                                   f"{math.ceil(wait / 60)} minute(s).", name, next_path)
    user = await console.store.console_user(name)
    right = await asyncio.to_thread(check_password, password,
                                    user.password if user else UNKNOWN_ACCOUNT)
    if user is None or not right:
        console.limiter.failed(source, name if user else None, now)
        log.warning("console: failed sign-in from %s", source)
        return _form(request, 401, "Wrong name or password.", name, next_path)
    console.limiter.succeeded(name)
    response = redirect(next_path)
    await console.sessions.begin(response, user.name, source)
    return response


@viewer
async def logout(request: web.Request) -> web.Response:
    response = redirect("/login")
    await request.app[CONSOLE].sessions.end(response, operator_of(request))
    return response
