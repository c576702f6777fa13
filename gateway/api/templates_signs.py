"""Signatures (the JSMS signature API) and templates (shaped the same way), per app.

    POST   /v1/sign                 multipart: sign, type, remark, image0..image3
                                    -> {"sign_id": 37582}
    PUT    /v1/sign/{sign_id}       the same form: modify, back to review -> {"sign_id": 37582}
    POST   /v1/sign/{sign_id}       the same as PUT (the JSMS example modifies with POST)
    GET    /v1/sign/{sign_id}       -> {"sign_id", "sign", "status", "use_status", and
                                        "type" and "remark" when they were given}
    DELETE /v1/sign/{sign_id}       -> 200, empty body
    POST   /v1/templates            {type, template, sign_id?, code_length?, ttl?}
                                    -> {"temp_id": 1001}
    PUT    /v1/templates/{temp_id}  the same body: replace, back to review -> {"temp_id": 1001}
    GET    /v1/templates/{temp_id}  -> {"temp_id", "type", "template", "sign_id", "sign",
                                        "status", "from_config", and for code templates
                                        "code_length" and "ttl" (the effective values)}
    DELETE /v1/templates/{temp_id}  -> 200, empty body

An app sees and changes only its own signatures and templates (another app's id is 50102 or
50013, like an unknown one); it may read, not change, the configured templates it can send.

Review: ``status`` 0 waits for an operator, 1 is approved, 2 refused. JSMS documents only 1 and
2 because its cloud reviewers answer; here ``cmpp-gateway sign|template approve|reject ID``
does (gateway.cli.review), or ``[api] auto_approve_signatures = true`` approves every new or
modified signature and template at once. A template waiting or refused answers 50020 or
50021 when used, and so does (50020) a template whose signature is not approved. The command
line writes the store from another process: the API re-reads the templates and signatures from
the store every ``REVIEW_POLL`` seconds, so a review takes effect within that time; a review
in the operator's console takes effect at once on its own instance. Every
change made here writes the store first, then the in-memory registry, under one lock that
the re-reading also takes, so that a re-read never brings back an older state.

Signature text (50104): 2 to 8 characters, each a Chinese character (U+4E00-U+9FFF), an
ASCII letter or a digit: no 【】, spaces or punctuation. It is unique in its app and differs
from the app's configured signature and from those of the configured templates it may send
(a copy waiting for review would stop their sending). The form (images, ``type``,
``remark``) is read and checked by ``sign_form``; a modification without a type, remark or
images keeps those the signature had. Creating or modifying a signature while another of the
app waits for review is 50103. A signature in use by a template (``use_status`` 1) cannot be
deleted, nor given another text (50105); its images may be replaced and it may be sent back
to review under the same text.

Template body: ``type`` 1 code, 2 notification, 3 marketing (or those names; else 50025);
``template`` 1 to 500 characters with {{name}} parameters and no 【】 (a code template has
{{code}} and may have {{ttl}}, nothing else); ``sign_id`` one of the app's signatures (50102;
without it the app's configured signature is used); for code templates ``code_length`` 4-8
(50038) and ``ttl`` in seconds, at most a day (50041), 0 or absent for the [api] defaults.
Any other field is 50007, sensitive words 50037. A PUT replaces the whole template.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re

from aiohttp import web

from gateway.store import APPROVED, PENDING

from .context import API_KEY, APP, Api, body_limit, dumps, json_body
from .errors import ApiError
from .ids import parse_id
from .registry import KINDS, PLACEHOLDER, Signature, Template
from .sign_form import MAX_FORM, SIGN_RULE, read_sign_form

log = logging.getLogger("cmpp_gateway.api")

REVIEW_POLL = 2.0                       # seconds between two re-reads of the review statuses
LOCK = web.AppKey("review_lock", asyncio.Lock)

SIGN = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{2,8}")

TEMPLATE_FIELDS = frozenset({"type", "template", "sign_id", "code_length", "ttl"})
TYPE_NAMES = {number: name for name, number in KINDS.items()}
MAX_CONTENT = 500
MAX_TTL = 86400


def add_routes(app: web.Application) -> None:
    app[LOCK] = asyncio.Lock()
    app.cleanup_ctx.append(watch_reviews)
    router = app.router
    router.add_post("/v1/sign", create_sign)
    router.add_put("/v1/sign/{sign_id}", modify_sign)
    router.add_post("/v1/sign/{sign_id}", modify_sign)
    router.add_get("/v1/sign/{sign_id}", get_sign)
    router.add_delete("/v1/sign/{sign_id}", delete_sign)
    router.add_post("/v1/templates", create_template)
    router.add_put("/v1/templates/{temp_id}", modify_template)
    router.add_get("/v1/templates/{temp_id}", get_template)
    router.add_delete("/v1/templates/{temp_id}", delete_template)


# ----------------------------------------------------------------------------- reviews

async def watch_reviews(app: web.Application):
    """While the API serves: re-read the review statuses every REVIEW_POLL seconds, and at
    once after ``Api.review_changed()``. A failed re-read is logged and tried again at the
    next period; the registry stays as it was."""
    api: Api = app[API_KEY]
    lock = app[LOCK]

    async def poll() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REVIEW_POLL):
                    await api.reviewed.wait()
            api.reviewed.clear()
            try:
                async with lock:
                    await sync_registry(api)
            except Exception:  # noqa: BLE001 - keep serving with what the registry holds
                log.warning("could not re-read templates and signatures", exc_info=True)

    task = asyncio.get_running_loop().create_task(poll(), name="api-reviews")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def sync_registry(api: Api) -> None:
    """Replace the registry's API-made templates and its signatures with the store's."""
    templates, signatures = await api.store.templates(), await api.store.signatures()
    registry = api.registry
    kept = {i: t for i, t in registry.templates.items() if t.from_config}
    kept.update((row["id"], Template(from_config=False, **row)) for row in templates)
    registry.templates = kept
    registry.signatures = {row["id"]: Signature(**row) for row in signatures}


def review_status(api: Api) -> int:
    return APPROVED if api.settings.auto_approve_signatures else PENDING


# ----------------------------------------------------------------------------- signatures

@body_limit(MAX_FORM)
async def create_sign(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    app = request[APP]
    form = await read_sign_form(request)
    async with request.app[LOCK]:
        check_sign_text(api, app, form.sign)
        check_none_waiting(api, app)
        status = review_status(api)
        sign_id = await api.store.create_signature(app.name, form.sign, form.images, status,
                                                   api.clock(), form.type, form.remark)
        api.registry.set_signature(Signature(sign_id, app.name, form.sign, status, form.type,
                                             form.remark))
    return _json({"sign_id": sign_id})


@body_limit(MAX_FORM)
async def modify_sign(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    app = request[APP]
    own_signature(api, app, request.match_info["sign_id"])
    form = await read_sign_form(request)
    async with request.app[LOCK]:
        signature = own_signature(api, app, request.match_info["sign_id"])
        check_sign_text(api, app, form.sign, signature.id)
        if form.sign != signature.sign and api.registry.signature_in_use(signature):
            raise ApiError(50105, "a template uses it: its text cannot change either")
        check_none_waiting(api, app, signature.id)
        status = review_status(api)
        if not await api.store.update_signature(signature.id, form.sign, form.images, status,
                                                api.clock(), form.type, form.remark):
            raise ApiError(50102)
        api.registry.set_signature(Signature(
            signature.id, app.name, form.sign, status,
            signature.type if form.type is None else form.type,
            signature.remark if form.remark is None else form.remark))
    return _json({"sign_id": signature.id})


async def get_sign(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    signature = own_signature(api, request[APP], request.match_info["sign_id"])
    view = {"sign_id": signature.id, "sign": signature.sign, "status": signature.status,
            "use_status": int(api.registry.signature_in_use(signature))}
    given = {"type": signature.type, "remark": signature.remark}
    return _json({**view, **{k: v for k, v in given.items() if v is not None}})


async def delete_sign(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    async with request.app[LOCK]:
        signature = own_signature(api, request[APP], request.match_info["sign_id"])
        if api.registry.signature_in_use(signature):
            raise ApiError(50105)
        await api.store.delete_signature(signature.id)
        api.registry.drop_signature(signature.id)
    return _empty()


def own_signature(api: Api, app, raw: str | int) -> Signature:
    """The app's signature numbered ``raw``; ApiError 50102 when it is not one."""
    signature = api.registry.signatures.get(parse_id(raw, 50102))
    if signature is None or signature.app != app.name:
        raise ApiError(50102)
    return signature


def check_sign_text(api: Api, app, text: str | None, own_id: int | None = None) -> None:
    """ApiError 50104 unless ``text`` follows SIGN_RULE and is new to the app."""
    if not text:
        raise ApiError(50104, "give the signature in the sign field")
    if not SIGN.fullmatch(text):
        raise ApiError(50104, SIGN_RULE)
    if text in configured_signatures(api, app):
        raise ApiError(50104, "it is already a signature of the app in the configuration")
    for other in api.registry.signatures.values():
        if other.app == app.name and other.sign == text and other.id != own_id:
            raise ApiError(50104, f"the app has it already: sign_id {other.id}")


def configured_signatures(api: Api, app) -> set[str]:
    texts = {t.signature for t in api.registry.templates.values()
             if t.from_config and t.app in ("", app.name)}
    return (texts | {app.signature}) - {""}


def check_none_waiting(api: Api, app, own_id: int | None = None) -> None:
    """ApiError 50103 while another signature of the app waits for review."""
    for other in api.registry.signatures.values():
        if other.app == app.name and other.status == PENDING and other.id != own_id:
            raise ApiError(50103, f"sign_id {other.id} is waiting for review")


# ----------------------------------------------------------------------------- templates

async def create_template(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    app = request[APP]
    body = await json_body(request)
    async with request.app[LOCK]:
        values = template_values(api, app, body)
        temp_id = await api.store.create_template(values, api.registry.next_template_id,
                                                  api.clock())
        api.registry.set_template(Template(temp_id, from_config=False, **values))
    return _json({"temp_id": temp_id})


async def modify_template(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    app = request[APP]
    own_template(api, app, request.match_info["temp_id"], changing=True)
    body = await json_body(request)
    async with request.app[LOCK]:
        template = own_template(api, app, request.match_info["temp_id"], changing=True)
        values = template_values(api, app, body)
        changes = {k: v for k, v in values.items() if k != "app"}
        if not await api.store.update_template(template.id, changes, api.clock()):
            raise ApiError(50013)
        api.registry.set_template(Template(template.id, from_config=False, **values))
    return _json({"temp_id": template.id})


async def get_template(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    app = request[APP]
    template = own_template(api, app, request.match_info["temp_id"], changing=False)
    return _json(template_view(api, app, template))


async def delete_template(request: web.Request) -> web.Response:
    api: Api = request.app[API_KEY]
    async with request.app[LOCK]:
        template = own_template(api, request[APP], request.match_info["temp_id"], changing=True)
        await api.store.delete_template(template.id)
        api.registry.drop_template(template.id)
    return _empty()


def own_template(api: Api, app, raw: str, *, changing: bool) -> Template:
    """The template numbered ``raw`` that the app may read (its own, or a configured one it
    may send) or, when ``changing``, one it made through the API; ApiError 50013 otherwise."""
    template = api.registry.templates.get(parse_id(raw, 50013))
    if template is None or template.app not in ("", app.name):
        raise ApiError(50013)
    if changing and template.from_config:
        raise ApiError(50013, "a template of the configuration cannot be changed here")
    return template


def template_values(api: Api, app, body: dict) -> dict:
    """The stored columns of the template in ``body``; ApiError as the module says."""
    unknown = sorted(set(body) - TEMPLATE_FIELDS)
    if unknown:
        raise ApiError(50007, f"unknown field {unknown[0]!r}")
    kind = template_type(body.get("type"))
    content = template_content(api, kind, body.get("template"))
    code_length, ttl = code_settings(kind, body.get("code_length"), body.get("ttl"))
    return {"app": app.name, "type": kind, "content": content,
            "signature": template_signature(api, app, body.get("sign_id")),
            "status": review_status(api), "code_length": code_length, "ttl": ttl,
            "channel": ""}


def template_type(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in TYPE_NAMES:
        return TYPE_NAMES[value]
    if isinstance(value, str) and value in KINDS:
        return value
    raise ApiError(50025, "type is 1 (code), 2 (notification) or 3 (marketing)")


def template_content(api: Api, kind: str, content) -> str:
    if not isinstance(content, str) or not content.strip() or len(content) > MAX_CONTENT:
        raise ApiError(50007, f"template is text of 1 to {MAX_CONTENT} characters")
    if "【" in content or "】" in content:
        raise ApiError(50007, "the signature is not part of the template; give sign_id")
    names = set(PLACEHOLDER.findall(content))
    if kind == "code" and ("code" not in names or names - {"code", "ttl"}):
        raise ApiError(50007, "a code template has {{code}}, may have {{ttl}}, and no other "
                              "parameter")
    api.rules.check_content(content)
    return content


def code_settings(kind: str, code_length, ttl) -> tuple[int, float]:
    """(code_length, ttl) of a code template, 0 meaning the [api] default; ApiError 50007
    (given for another type), 50038 (a length outside 4-8), 50041 (a ttl outside 0-1 day)."""
    code_length = 0 if code_length is None else code_length
    ttl = 0 if ttl is None else ttl
    if kind != "code" and (code_length or ttl):
        raise ApiError(50007, "code_length and ttl are for code templates")
    if not _is_int(code_length) or not (code_length == 0 or 4 <= code_length <= 8):
        raise ApiError(50038, "code_length is 4 to 8 digits")
    if not _is_number(ttl) or not 0 <= ttl <= MAX_TTL:
        raise ApiError(50041, f"ttl is a number of seconds up to {MAX_TTL}")
    return code_length, ttl


def template_signature(api: Api, app, sign_id) -> str:
    """The text of the app's signature ``sign_id`` ("" without one); ApiError 50102."""
    if sign_id is None:
        return ""
    return own_signature(api, app, sign_id).sign


def template_view(api: Api, app, template: Template) -> dict:
    signature = next((s for s in api.registry.signatures.values()
                      if s.app == app.name and s.sign == template.signature), None)
    view = {"temp_id": template.id, "type": KINDS[template.type], "template": template.content,
            "sign_id": signature.id if signature else None,
            "sign": template.signature or app.signature, "status": template.status,
            "from_config": template.from_config}
    if template.type == "code":
        view["code_length"] = template.code_length or api.settings.code_length
        view["ttl"] = _plain(template.ttl or api.settings.code_validity)
    return view


# ----------------------------------------------------------------------------- helpers

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _json(value: dict) -> web.Response:
    return web.json_response(text=dumps(value))


def _empty() -> web.Response:
    """200 with no body, as the JSMS delete answers: Content-Length 0."""
    return web.Response(status=200, content_type="application/json")
