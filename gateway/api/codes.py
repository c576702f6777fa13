"""Verification codes: the gateway makes the code, sends it, and checks it.

    POST /v1/codes                 {mobile, temp_id}  -> {"msg_id": "288193860302"}
                                   (and ``callback``, as for /v1/messages)
                                   (or {userid, temp_id}: a user of the app, as for messages)
    POST /v1/codes/{msg_id}/valid  {code}             -> {"is_valid": true}
    POST /v1/voice_codes           a CMPP channel carries no voice: 403/50008

The code has the template's length (``[api] code_length`` by default) and stays valid for the
template's ttl (``[api] code_validity``); it is kept only as a salted digest. A check answers
``{"is_valid": false, "error": {...}}`` with 50010 (wrong), 50011 (expired), 50012 (used),
50026 (no such code for this app) or 50015 (no code given).
"""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.store import ApiRequest, code_digest

from .context import API_KEY, APP, Api, dumps, json_body, request_callback, start_send
from .errors import ApiError
from .ids import parse_id
from .messages import compose, sending_channel
from .users import number, recipient

REFUSALS = {"invalid": 50010, "expired": 50011, "verified": 50012, "unknown": 50026}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/codes", send_code)
    app.router.add_post("/v1/codes/{msg_id}/valid", check_code)
    app.router.add_post("/v1/voice_codes", voice_code)


async def send_code(request: web.Request) -> web.Response:
    api, app, body, key, replayed = await start_send(request)
    if replayed is not None:
        return replayed
    who = recipient(api, body)
    template = api.registry.template(app, body.get("temp_id"), ("code",))
    mobile = await number(api, app, who, sending_channel(app, template))
    length = template.code_length or api.settings.code_length
    ttl = template.ttl or api.settings.code_validity
    code = f"{secrets.randbelow(10 ** length):0{length}d}"
    params = {"code": code}
    if "ttl" in template.placeholders:
        params["ttl"] = str(max(1, round(ttl / 60)))           # minutes, as SMS texts say it
    message = compose(api, app, template, mobile, params, callback=request_callback(body))
    api.rules.check_app(app.name)
    response = await api.submit(ApiRequest(
        app.name, (message,), code=(code_digest(code), api.clock() + ttl), idempotency_key=key,
        render=lambda ids, refused: (200, dumps({"msg_id": str(ids[0])}))))
    api.rules.record(app.name, template, mobile, message.text)
    return response


async def check_code(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    body = await json_body(request)
    code = body.get("code")
    if code is None or code == "":
        return _invalid(ApiError(50015))
    try:
        message_id = parse_id(request.match_info["msg_id"], 50026)
    except ApiError as error:
        return _invalid(error)
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        return _invalid(ApiError(50010))
    outcome = await api.store.verify_code(request[APP].name, message_id, str(code),
                                          api.clock())
    if outcome == "ok":
        return web.json_response({"is_valid": True})
    return _invalid(ApiError(REFUSALS[outcome]))


def _invalid(error: ApiError) -> web.Response:
    return web.json_response({"is_valid": False, **error.body()}, status=error.status)


async def voice_code(request: web.Request) -> web.Response:
    raise ApiError(50008, "voice verification codes need a voice channel; CMPP carries SMS only")
