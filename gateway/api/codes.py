"""Verification codes: the gateway makes the code, sends it, and checks it.

    POST /v1/codes                 {mobile, temp_id}  -> {"msg_id": "288193860302"}
                                   (and ``callback``, as for /v1/messages)
                                   (or {userid, temp_id}: a user of the app, as for messages)
    POST /v1/codes/{msg_id}/valid  {code}             -> {"is_valid": true}
    POST /v1/voice_codes           a CMPP channel carries no voice: 403/50008

The code has the template's length (``[api] code_length`` by default) and stays valid for the
template's ttl (``[api] code_validity``); it is kept only as a salted digest. A check answers
``{"is_valid": false, "error": {...}}`` with 50010 (wrong), 50011 (expired, or spent: after
``[api] code_attempts`` wrong checks, so that it cannot be guessed, every check answers 50011,
the right code too), 50012 (used), 50026 (no such code for this app) or 50015 (no code
given). Every check is counted by outcome (``cmpp_api_code_checks_total``).
"""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.store import ApiRequest, code_digest

from .context import API_KEY, APP, Api, dumps, json_body, request_callback
from .errors import ApiError
from .idempotency import Key, idempotent
from .ids import parse_id
from .messages import compose, keyed, sending_channel
from .users import number, recipient

REFUSALS = {"invalid": 50010, "expired": 50011, "verified": 50012, "unknown": 50026,
            "spent": 50011}
SPENT = "too many wrong codes were tried: this one is spent; send a new code"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/codes", send_code)
    app.router.add_post("/v1/codes/{msg_id}/valid", check_code)
    app.router.add_post("/v1/voice_codes", voice_code)


@idempotent
async def send_code(api: Api, app, body: dict, key: Key | None) -> web.Response:
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
    recorded = api.rules.record(app.name, [(mobile, message.text)])
    return await api.submit(ApiRequest(
        app.name, (message,), code=(code_digest(code), api.clock() + ttl),
        code_limits=api.rules.code_limits,
        render=lambda ids, refused: (200, dumps({"msg_id": str(ids[0])})), **keyed(key)),
        recorded)


async def check_code(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    body = await json_body(request)
    outcome = await _verify(api, request[APP], request.match_info["msg_id"], body.get("code"))
    api.gateway.metrics.code_checks.labels(outcome).inc()
    if outcome == "ok":
        return web.json_response({"is_valid": True})
    if outcome == "missing":
        return _invalid(ApiError(50015))
    return _invalid(ApiError(REFUSALS[outcome], SPENT if outcome == "spent" else None))


async def _verify(api: Api, app, raw_id: str, code) -> str:
    """The check's outcome: the store's (see ``verify_code``), or "missing" (no code),
    "unknown" (not an id), "invalid" (a code that is not a string or an integer)."""
    if code is None or code == "":
        return "missing"
    try:
        message_id = parse_id(raw_id, 50026)
    except ApiError:
        return "unknown"
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        return "invalid"
    return await api.store.verify_code(app.name, message_id, str(code), api.clock(),
                                       api.settings.code_attempts)


def _invalid(error: ApiError) -> web.Response:
    return web.json_response({"is_valid": False, **error.body()}, status=error.status)


async def voice_code(request: web.Request) -> web.Response:
    raise ApiError(50008, "voice verification codes need a voice channel; CMPP carries SMS only")
