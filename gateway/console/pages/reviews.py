"""Reviews: the templates and signatures that apps made through the API and that wait for an
operator, each as a handset would show it, to approve or reject with a reason.

A decision is written to the store with its reason and its audit entry in one transaction,
then the API on this instance reads the statuses again at once (other instances within
their two-second poll): an approved template can be sent right after. The signature images an
app sent with its signature are shown to the reviewer.
"""

from __future__ import annotations

from aiohttp import web

from gateway.store import APPROVED, PENDING, REFUSED

from ..handset import preview, signed
from ..security import CONSOLE, FORM, Refused, operator_of, redirect, render
from . import Section

SECTION = Section("reviews", "/reviews", "Reviews")
KINDS = {"template": "template", "sign": "signature"}
DECISIONS = {"approve": APPROVED, "reject": REFUSED}
MAX_REASON = 200
RECENT = 20


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/reviews", review_queue)
    router.add_post("/reviews/{kind}/{item}", decide)
    router.add_get("/reviews/sign/{item}/images/{slot}", signature_image)


def _channel(console, app, template: dict | None = None):
    name = (template or {}).get("channel") or (app.channels[0] if app and app.channels else "")
    return console.config.channels.get(name)


def template_card(console, row: dict, reason: str = "") -> dict:
    app = console.apps.get(row["app"])
    signature = row["signature"] or (app.signature if app else "")
    code_length = row["code_length"] or console.config.api.code_length
    return {"kind": "template", "id": row["id"], "app": row["app"], "type": row["type"],
            "status": row["status"], "reason": reason,
            "handset": preview(signed(signature, row["content"]),
                               _channel(console, app, row), code_length)}


async def signature_card(console, row: dict, reason: str = "") -> dict:
    app = console.apps.get(row["app"])
    return {"kind": "sign", "id": row["id"], "app": row["app"], "status": row["status"],
            "sign": row["sign"], "reason": reason,
            "images": await console.store.signature_images(row["id"]),
            "handset": preview(signed(row["sign"], "……"), _channel(console, app))}


async def review_queue(request: web.Request) -> web.Response:
    return await _queue(request, {}, request.query.get("done", ""))


async def _queue(request: web.Request, errors: dict[str, str], done: str,
                 status: int = 200) -> web.Response:
    """The waiting items, with ``errors`` under the forms of the items they name
    ("template-1001")."""
    console = request.app[CONSOLE]
    waiting = [template_card(console, row) for row in await console.store.templates()
               if row["status"] == PENDING]
    waiting += [await signature_card(console, row) for row in await console.store.signatures()
                if row["status"] == PENDING]
    decided = sorted(await console.store.last_reviews(), key=lambda r: r.at, reverse=True)
    return render("reviews.html", request, {
        "section": SECTION.key, "title": SECTION.title, "waiting": waiting,
        "decided": decided[:RECENT], "kinds": KINDS, "max_reason": MAX_REASON,
        "errors": errors, "done": done}, status=status)


def _item(request: web.Request) -> tuple[str, int]:
    kind, raw = request.match_info["kind"], request.match_info["item"]
    if kind not in KINDS or not raw.isdigit():
        raise Refused(404, "There is no such template or signature.")
    return kind, int(raw)


async def decide(request: web.Request) -> web.Response:
    console, form = request.app[CONSOLE], request[FORM]
    kind, item = _item(request)
    decision = form.get("decision")
    reason = str(form.get("reason", "")).strip()
    if decision not in DECISIONS:
        raise Refused(400, "Approve or reject.")
    if (decision == "reject" and not reason) or len(reason) > MAX_REASON:
        return await _queue(request, {f"{kind}-{item}": f"Give a reason of 1 to {MAX_REASON} "
                                                        "characters to reject."}, "", 400)
    words = f"{KINDS[kind]} {'approved' if decision == 'approve' else 'rejected'}"
    note = console.note(operator_of(request), words, f"{KINDS[kind]} {item}", reason)
    if not await console.store.review(kind, item, DECISIONS[decision], reason, note,
                                      console.clock()):
        raise Refused(404, f"There is no {KINDS[kind]} {item}.")
    console.services.reviews_changed()
    return redirect(f"/reviews?done={kind}-{item}")


async def signature_image(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    item, slot = request.match_info["item"], request.match_info["slot"]
    if not (item.isdigit() and slot.isdigit()):
        raise Refused(404, "There is no such image.")
    found = await console.store.signature_image(int(item), int(slot))
    if found is None:
        raise Refused(404, "There is no such image.")
    content, content_type = found
    return web.Response(body=content, content_type=content_type)
