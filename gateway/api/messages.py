"""Template SMS: one recipient, up to 1000 of them, and a message's status.

    POST /v1/messages        {mobile, temp_id, temp_para}            -> {"msg_id": 288193860302}
    POST /v1/messages/batch  {temp_id, recipients: [{mobile, temp_para}]}
                             -> {success_count, failure_count, recipients: [...]}
    GET  /v1/messages/{msg_id}  the common status, per part detail, raw Stat and times

A batch refuses a recipient alone (its entry carries error_code and error_message, and a
msg_id under which the refusal is kept, as in the JSMS example) and sends the others; a problem
with the request as a whole refuses it whole and stores nothing.
"""

from __future__ import annotations

from aiohttp import web

from gateway.store import ApiRequest, NewMessage

from .context import API_KEY, APP, Api, dumps, start_send
from .errors import ApiError
from .ids import parse_id
from .registry import Template

SENDABLE = ("notification", "marketing")
MAX_RECIPIENTS = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", send_one)
    app.router.add_post("/v1/messages/batch", send_batch)
    app.router.add_get("/v1/messages/{msg_id}", status)


def compose(api: Api, app, template: Template, mobile: str, params, seen=None) -> NewMessage:
    """The message for one recipient: rendered, signed, checked (ApiError otherwise)."""
    from .rules import render
    text = render(template, params)
    signature = api.registry.signature_text(app, template)
    text = f"【{signature}】{text}" if signature else text
    api.rules.check_content(text)
    api.rules.check_recipient(template, mobile, text)
    if seen is not None:
        if (mobile, text) in seen:
            raise ApiError(50034)
        seen.add((mobile, text))
    channel = template.channel or app.channels[0]
    if channel not in app.channels:
        raise ApiError(50013, "its channel is not one of the app's")
    return NewMessage(app.name, channel, mobile, text, str(template.id), template.type,
                      reference=api.references.next(mobile))


async def send_one(request: web.Request) -> web.Response:
    api, app, body, key, replayed = await start_send(request)
    if replayed is not None:
        return replayed
    mobile = api.mobiles.normalize(body.get("mobile"))
    template = api.registry.template(app, body.get("temp_id"), SENDABLE)
    message = compose(api, app, template, mobile, body.get("temp_para"))
    api.rules.check_app(app.name)
    response = await api.submit(ApiRequest(
        app.name, (message,), idempotency_key=key,
        render=lambda ids, refused: (200, dumps({"msg_id": ids[0]}))))
    api.rules.record(app.name, template, mobile, message.text)
    return response


async def send_batch(request: web.Request) -> web.Response:
    api, app, body, key, replayed = await start_send(request)
    if replayed is not None:
        return replayed
    template = api.registry.template(app, body.get("temp_id"), SENDABLE)
    recipients = body.get("recipients")
    if recipients is None or recipients == []:
        raise ApiError(50030)
    if not isinstance(recipients, list):
        raise ApiError(50007, "recipients must be a list")
    if len(recipients) > MAX_RECIPIENTS:
        raise ApiError(50031)
    api.rules.check_app(app.name, len(recipients))
    good, refused, plan = [], [], []
    seen: set = set()
    for entry in recipients:
        try:
            if not isinstance(entry, dict):
                raise ApiError(50007, "a recipient must be an object")
            mobile = api.mobiles.normalize(entry.get("mobile"))
            good.append(compose(api, app, template, mobile, entry.get("temp_para"), seen))
            plan.append(("sent", len(good) - 1, entry))
        except ApiError as error:
            refused.append((_refusal(app, template, entry), error.code))
            plan.append((error, len(refused) - 1, entry))

    def render(ids, refused_ids):
        return 200, dumps(_batch_answer(plan, ids, refused_ids))
    response = await api.submit(ApiRequest(app.name, tuple(good), tuple(refused),
                                           idempotency_key=key, render=render))
    for message in good:
        api.rules.record(app.name, template, message.recipient, message.text)
    return response


def _refusal(app, template: Template, entry) -> NewMessage:
    mobile = entry.get("mobile") if isinstance(entry, dict) else None
    return NewMessage(app.name, template.channel or app.channels[0],
                      str(mobile)[:32] if mobile is not None else "", "", str(template.id),
                      template.type)


def _batch_answer(plan, ids, refused_ids) -> dict:
    out, failures = [], 0
    for outcome, index, entry in plan:
        mobile = entry.get("mobile") if isinstance(entry, dict) else None
        if outcome == "sent":
            out.append({"msg_id": str(ids[index]), "mobile": mobile})
            continue
        failures += 1
        item = {"error_code": str(outcome.code), "error_message": outcome.message,
                "msg_id": str(refused_ids[index]), "mobile": mobile}
        if isinstance(entry, dict) and "temp_para" in entry:
            item["temp_para"] = entry["temp_para"]
        out.append(item)
    return {"success_count": len(plan) - failures, "failure_count": failures, "recipients": out}


async def status(request: web.Request) -> web.Response:
    """Beyond JSMS, for operators and support: where a message is."""
    api: Api = request.app[API_KEY]
    view = await api.store.message(parse_id(request.match_info["msg_id"], 50026))
    if view is None or view.app != request[APP].name:
        raise ApiError(50026)
    return web.json_response(text=dumps({
        "msg_id": str(view.id), "mobile": view.recipient, "temp_id": view.template_id,
        "channel": view.channel, "status": view.status,
        "final": view.status not in ("accepted", "submitted"),
        "temporary": view.status_temporary, "stat": view.status_stat,
        "provider": view.status_provider, "parts": view.parts, "created_at": view.created_at,
        "status_at": view.status_at,
        "segments": [{"part": s.part, "status": s.status, "stat": s.stat,
                      "msg_id": None if s.msg_id is None else str(s.msg_id),
                      "submitted_at": s.submitted_at, "done_at": s.done_at}
                     for s in view.segments]}))
