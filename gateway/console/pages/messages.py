"""Messages: search by msg_id, app, number, time and status; one message with its segments,
Msg_Ids, raw Stat, status reports and callbacks.

Numbers are shown masked (``138****8000``) and a message's text is not shown, until an
admin asks to reveal one message (a POST, written to the audit trail first); the revealed
page is never cached. Searches run on the store's reader connection, so they never hold up
sending; one that would read too much asks for a narrower search.
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from gateway.status import DeliveryStatus
from gateway.store import MessageQuery, SearchTooBroad

from ..security import CONSOLE, Refused, admin, operator_of, render
from . import Section

SECTION = Section("messages", "/messages", "Messages")
STATUSES = [s.value for s in DeliveryStatus]
PAGE = 50
TIME_FORMAT = "%Y-%m-%dT%H:%M"            # an <input type="datetime-local">'s value


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/messages", search)
    router.add_get(r"/messages/{id:\d+}", message_page)
    router.add_post(r"/messages/{id:\d+}/reveal", reveal)


def masked(number: str | None) -> str:
    """A number with its middle hidden: the first three and last four characters stay when
    it is long enough, nothing otherwise."""
    number = number or ""
    return f"{number[:3]}****{number[-4:]}" if len(number) >= 8 else "*" * len(number)


def number_forms(raw: str) -> tuple[str, ...]:
    """The forms a number may be stored in: as the API keeps it (11 digits), and as given."""
    digits = re.sub(r"[\s-]", "", raw).lstrip("+")
    plain = digits[2:] if len(digits) == 13 and digits.startswith("86") else digits
    return tuple(dict.fromkeys((plain, digits, raw.strip())))


def read_query(params) -> tuple[MessageQuery, dict[str, str]]:
    """The search in the URL's parameters, and the problems by field."""
    errors: dict[str, str] = {}
    values: dict = {"limit": PAGE}
    for name, key in (("msg_id", "message_id"), ("before", "before_id")):
        raw = params.get(name, "").strip()
        if raw:
            if raw.isdigit() and len(raw) <= 18:
                values[key] = int(raw)
            else:
                errors[name] = "a message id is a number"
    for name in ("since", "until"):
        raw = params.get(name, "").strip()
        if raw:
            try:
                values[name] = time.mktime(time.strptime(raw, TIME_FORMAT))
            except ValueError:
                errors[name] = "a date and time, as 2026-12-01T09:30"
    if params.get("app"):
        values["app"] = params["app"]
    if params.get("status"):
        if params["status"] in STATUSES:
            values["status"] = params["status"]
        else:
            errors["status"] = "not a status"
    number = params.get("number", "").strip()
    if number:
        if re.fullmatch(r"\+?[0-9][0-9 -]{2,30}", number):
            values["recipients"] = number_forms(number)
        else:
            errors["number"] = "digits only, as 13800138000 or +8613800138000"
    return MessageQuery(**values), errors


async def search(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    query, errors = read_query(request.query)
    rows = []
    if not errors:
        try:
            rows = await console.store.find_messages(query)
        except SearchTooBroad as too_broad:
            errors["form"] = str(too_broad)
    older = dict(request.query, before=str(rows[-1].id)) if len(rows) == PAGE else None
    return render("messages.html", request, {
        "section": SECTION.key, "title": SECTION.title, "params": request.query,
        "errors": errors, "rows": rows, "older": older, "statuses": STATUSES,
        "apps": sorted(console.apps), "masked": masked})


async def message_page(request: web.Request, revealed: bool = False) -> web.Response:
    console = request.app[CONSOLE]
    view = await console.store.message(int(request.match_info["id"]))
    if view is None:
        raise Refused(404, "There is no such message.")
    try:
        receipts = await console.store.message_receipts(view)
        callbacks = await console.store.message_callbacks(view)
        too_broad = ""
    except SearchTooBroad as error:
        receipts, callbacks, too_broad = [], [], str(error)
    return render("message.html", request, {
        "section": SECTION.key, "title": f"Message {view.id}", "m": view,
        "receipts": receipts, "callbacks": callbacks, "too_broad": too_broad,
        "revealed": revealed, "masked": masked, "sent": request.query.get("sent")})


@admin
async def reveal(request: web.Request) -> web.Response:
    """The message with its number and text, once written to the audit trail."""
    console = request.app[CONSOLE]
    message_id = int(request.match_info["id"])
    view = await console.store.message(message_id)
    if view is None:
        raise Refused(404, "There is no such message.")
    await console.audit(operator_of(request), "number and text revealed",
                        f"message {message_id}", f"to {masked(view.recipient)}")
    return await message_page(request, revealed=True)
