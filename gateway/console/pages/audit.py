"""Audit: who changed what, and when, newest first, a page at a time.

Every change made in the console is written with its entry in one transaction (apps made,
changed, enabled or disabled, secrets rotated, reviews decided), and so are sign-ins and
sign-outs, accounts changed with ``cmpp-gateway console-user``, and each number revealed or
test message sent. An entry holds no secret and no full number.
"""

from __future__ import annotations

from aiohttp import web

from ..security import CONSOLE, Refused, render
from . import Section

SECTION = Section("audit", "/audit", "Audit")
PAGE = 50


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/audit", audit_page)


async def audit_page(request: web.Request) -> web.Response:
    raw = request.query.get("before", "")
    if raw and not (raw.isdigit() and len(raw) <= 18):
        raise Refused(400, "before is an entry's number.")
    entries = await request.app[CONSOLE].store.audit_page(int(raw) if raw else None, PAGE)
    return render("audit.html", request, {
        "section": SECTION.key, "title": SECTION.title, "entries": entries,
        "older": entries[-1].id if len(entries) == PAGE else None})
