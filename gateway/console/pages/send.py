"""A test message: one approved template of an app, to one number, sent the way
``POST /v1/messages`` sends it (the same checks and rules, stored durably before the answer,
then submitted like any other message).

The form comes in two steps so that it works without script: choose the app and the
template, then fill in the number and one field per parameter of the template, under a
preview of the handset.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config import AppConfig
from gateway.store import APPROVED

from ..handset import PLACEHOLDER, preview, signed
from ..security import CONSOLE, FORM, admin, operator_of, redirect, render
from ..services import SendRefused
from .messages import SECTION, masked

SENDABLE = ("notification", "marketing")       # what POST /v1/messages sends
MAX_PARAMETER = 500


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/messages/send", send_form)
    router.add_post("/messages/send", send)


async def sendable(console, app: AppConfig) -> list[dict]:
    """The approved notification and marketing templates ``app`` may send, by id: the
    configuration's (approved by definition) and the store's."""
    found = {t.id: {"id": t.id, "app": t.app, "type": t.type, "content": t.content,
                    "signature": t.signature, "channel": t.channel}
             for t in console.config.templates.values()}
    for row in await console.store.templates():
        if row["status"] == APPROVED:
            found[row["id"]] = row
    return [t for _, t in sorted(found.items())
            if t["type"] in SENDABLE and t["app"] in ("", app.name)]


def _template_preview(console, app: AppConfig, template: dict, params: dict | None = None):
    text = template["content"]
    for name, value in (params or {}).items():
        text = PLACEHOLDER.sub(lambda m, n=name, v=value: v if m.group(1) == n else m.group(0),
                               text)
    channel = console.config.channels.get(template["channel"] or app.channels[0])
    return preview(signed(template["signature"] or app.signature, text), channel)


@admin
async def send_form(request: web.Request) -> web.Response:
    return await _form(request, request.query, {})


async def _form(request: web.Request, values, errors: dict, status: int = 200) -> web.Response:
    console = request.app[CONSOLE]
    apps = [a for a in console.apps.values() if a.enabled]
    app = console.apps.get(values.get("app", "")) if values.get("app") else None
    templates = await sendable(console, app) if app else []
    template = next((t for t in templates if str(t["id"]) == values.get("template")), None)
    names = list(dict.fromkeys(PLACEHOLDER.findall(template["content"]))) if template else []
    params = {n: str(values.get(f"p.{n}", "")) for n in names}
    return render("send.html", request, {
        "section": SECTION.key, "title": "Send a test message", "apps": apps, "app": app,
        "templates": templates, "template": template, "names": names, "params": params,
        "mobile": values.get("mobile", ""), "errors": errors,
        "preview": _template_preview(console, app, template, {k: v for k, v in params.items()
                                                              if v}) if template else None},
        status=status)


async def send(request: web.Request) -> web.Response:
    console, form = request.app[CONSOLE], request[FORM]
    app = console.apps.get(str(form.get("app", "")))
    templates = await sendable(console, app) if app else []
    template = next((t for t in templates if str(t["id"]) == form.get("template")), None)
    if app is None or template is None:
        return await _form(request, form, {"template": "choose an app and one of its approved "
                                                       "templates"}, 400)
    names = dict.fromkeys(PLACEHOLDER.findall(template["content"]))
    params = {n: str(form.get(f"p.{n}", ""))[:MAX_PARAMETER] for n in names}
    mobile = str(form.get("mobile", "")).strip()
    try:
        message_id = await console.services.send(app.name, template["id"], mobile, params)
    except SendRefused as refused:
        field = "mobile" if refused.code in (50004, 50006, 50024, 50034) else "form"
        return await _form(request, form, {field: f"{refused.message} ({refused.code})"}, 400)
    await console.audit(operator_of(request), "test message sent", f"message {message_id}",
                        f"app {app.name}, template {template['id']}, to {masked(mobile)}")
    return redirect(f"/messages/{message_id}?sent=1")
