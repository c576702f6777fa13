"""Template SMS: one recipient, up to 1000 of them, and a message's status.

    POST /v1/messages        {mobile, temp_id, temp_para}            -> {"msg_id": 288193860302}
    POST /v1/messages/batch  {temp_id, recipients: [{mobile, temp_para}]}
                             -> {success_count, failure_count, recipients: [...]}
    GET  /v1/messages/{msg_id}  the common status, per part detail, raw Stat and times

A send may carry ``callback``: the URL its messages' statuses are called back to instead of
the app's ``status_callback`` (kept with each message), and ``urgent``: true sends its
messages ahead of notifications and marketing, as verification codes go.

A recipient is a ``mobile`` or a ``userid`` (a user of the app: the number bound to the channel
that sends, else the user's default; see ``users``). A batch refuses a recipient alone (its
entry carries error_code and error_message, and a msg_id under which the refusal is kept, as
in the JSMS example) and sends the others; a problem with the request as a whole refuses it
whole and stores nothing. A batch is composed a hundred recipients at a time, giving other
requests (a verification code) their turn in between; its rules are then checked and counted
at once, with no await in between (``rules.SendRules``).
"""

from __future__ import annotations

import asyncio
from json.encoder import encode_basestring
from typing import NamedTuple

from aiohttp import web

from gateway.store import AcceptedRequest, ApiRequest, NewMessage

from .context import (API_KEY, APP, Api, Repeated, answer, dumps, request_callback,
                      request_urgent)
from .errors import ApiError
from .idempotency import Key, idempotent
from .ids import parse_id
from .registry import Template
from .rules import check_length, render, uncut_lengths
from .users import batch_recipients, number, numbers, recipient

SENDABLE = ("notification", "marketing")
MAX_RECIPIENTS = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", send_one)
    app.router.add_post("/v1/messages/batch", send_batch)
    app.router.add_get("/v1/messages/{msg_id}", status)


COMPOSE_CHUNK = 100            # a batch's recipients composed between two turns of the loop


class Late(NamedTuple):
    """A recipient ``Composer.draft`` found no message for: its number and text, for the
    checks that come first (``admit``), and ``error``, the ApiError of its channel or its
    length, raised after them. (A recipient with a message is drafted as the NewMessage,
    whose ``recipient`` and ``text`` are read alike.)"""

    recipient: str
    text: str
    error: ApiError


class Composer:
    """What every recipient of one send shares, worked out once for the send: the channel
    (and whether the app may use it), the signature (or why it may not be used yet: ApiError
    50020, raised for each recipient after its own parameters' errors, as before), the
    channel's length limits, the message's fields. A batch's recipients then cost only what
    is theirs: their text rendered and checked, their message. A text the same as the
    previous recipient's (a template without parameters) is checked for length only once."""

    def __init__(self, api: Api, app, template: Template, callback: str | None = None,
                 urgent: bool = False) -> None:
        self.api, self.app, self.template = api, app, template
        self.callback, self.urgent = callback, urgent
        self.channel = sending_channel(app, template)
        self.template_id = str(template.id)
        try:
            signature, self.unsigned = api.registry.signature_text(app, template), None
        except ApiError as error:
            signature, self.unsigned = "", error
        self.prefix = f"【{signature}】" if signature else ""
        self.limits = api.config.channels[self.channel] if self.channel in app.channels \
            else None
        # Texts this long or shorter go in one SMS, or in max_parts, whatever their encoding.
        self.one, self.uncut = uncut_lengths(self.limits) if self.limits else (0, 0)
        self._checked: tuple[str, ApiError | None] | None = None   # the last text's length

    def draft(self, mobile: str, params) -> NewMessage | Late:
        """The recipient's message: its text rendered, signed and checked for sensitive words
        (ApiError raised); Late when the channel or the length refuse it."""
        text = render(self.template, params, self.prefix)
        if self.unsigned is not None:
            raise ApiError(self.unsigned.code, self.unsigned.detail)
        self.api.rules.check_content(text)
        if self.limits is None:
            return Late(mobile, text, ApiError(50013, "its channel is not one of the app's"))
        if len(text) > self.uncut:
            late = self._length(text)
            if late is not None:
                return Late(mobile, text, ApiError(late.code, late.detail))
        # Only a message that may be cut carries a reference (its parts' UDH).
        reference = self.api.references.next(mobile) if len(text) > self.one else 0
        # Every field by position, idempotency_key None: a thousand calls a batch, and
        # keywords cost a third of the call.
        return NewMessage(self.app.name, self.channel, mobile, text, self.template_id,
                          self.template.type, None, reference, self.callback, self.urgent)

    def _length(self, text: str) -> ApiError | None:
        """``check_length``'s ApiError for ``text`` (one that may not fit: longer than
        ``uncut``), or None; the same text as the last one is not cut again."""
        if self._checked is None or self._checked[0] != text:
            try:
                check_length(text, self.limits)
                self._checked = (text, None)
            except ApiError as error:
                self._checked = (text, error)
        return self._checked[1]


def compose(api: Api, app, template: Template, mobile: str, params, seen=None,
            callback: str | None = None, urgent: bool = False) -> NewMessage:
    """The message for one recipient: rendered, signed, checked (ApiError otherwise)."""
    message, _ = admit(api, template, Composer(api, app, template, callback, urgent).draft(
        mobile, params), seen)
    return message


def admit(api: Api, template: Template, drafted: NewMessage | Late, seen=None
          ) -> tuple[NewMessage, int | None]:
    """The drafted message, past the rules that remember (unsubscribed, repeats: 50024,
    50034) and a repeat within its own batch (``seen``: 50034), with its repeat key (see
    ``SendRules.check_recipient``); else the Late draft's ApiError."""
    key = api.rules.check_recipient(template, drafted.recipient, drafted.text)
    if seen is not None:
        sent = len(seen)
        seen.add((drafted.recipient, drafted.text))
        if len(seen) == sent:
            raise ApiError(50034)
    if type(drafted) is Late:
        raise drafted.error
    return drafted, key


def sending_channel(app, template: Template) -> str:
    """The channel a message from ``template`` goes out on: the template's, else the app's
    first."""
    return template.channel or app.channels[0]


@idempotent
async def send_one(api: Api, app, body: dict, key: Key | None) -> web.Response:
    who = recipient(api, body)
    accepted = await accept_one(api, app, who, body.get("temp_id"), body.get("temp_para"), key,
                                request_callback(body), body)
    return answer(accepted)


async def accept_one(api: Api, app, who, temp_id, params, key: Key | None = None,
                     callback: str | None = None, body: dict | None = None) -> AcceptedRequest:
    """One template message to one recipient (a number, or a user: see ``users.recipient``),
    checked, counted against the rules and stored durably; ApiError as the checks raise
    it. ``body``: the request's, for what it says beyond the message (``urgent``)."""
    template = api.registry.template(app, temp_id, SENDABLE)
    urgent = request_urgent(body or {}, template)
    mobile = await number(api, app, who, sending_channel(app, template))
    message = compose(api, app, template, mobile, params, callback=callback, urgent=urgent)
    api.rules.check_app(app.name)
    recorded = api.rules.record(app.name, [(mobile, message.text)])     # no await since checks
    return await api.accept(ApiRequest(
        app.name, (message,), render=lambda ids, refused: (200, dumps({"msg_id": ids[0]})),
        **keyed(key)), recorded)


def keyed(key: Key | None) -> dict:
    """The ApiRequest fields of an Idempotency-Key (none without one)."""
    return {} if key is None else {"idempotency_key": key.value, "fingerprint": key.fingerprint}


async def send_message(api: Api, app, temp_id, mobile: str, params: dict) -> int:
    """What ``POST /v1/messages`` does for ``app``, without HTTP (the console's test message):
    the same checks, rules and durable write. Returns the message's id; ApiError as the
    endpoint answers it."""
    accepted = await accept_one(api, app, recipient(api, {"mobile": mobile}), temp_id,
                                params)
    return accepted.ids[0]


@idempotent
async def send_batch(api: Api, app, body: dict, key: Key | None) -> web.Response:
    template = api.registry.template(app, body.get("temp_id"), SENDABLE)
    recipients = body.get("recipients")
    if recipients is None or recipients == []:
        raise ApiError(50030)
    if not isinstance(recipients, list):
        raise ApiError(50007, "recipients must be a list")
    if len(recipients) > MAX_RECIPIENTS:
        raise ApiError(50031)
    callback, urgent = request_callback(body), request_urgent(body, template)
    api.rules.check_app(app.name, len(recipients))
    mobiles = await numbers(api, app, batch_recipients(api, recipients),
                            sending_channel(app, template))
    drafts = await _drafts(api, app, template, recipients, mobiles, callback, urgent)
    api.rules.check_app(app.name, len(recipients))       # again: others went meanwhile
    for _ in range(REPEATED_TRIES):
        try:
            return await _submit_batch(api, app, template, recipients, mobiles, drafts, key)
        except Repeated:     # sent through another gateway: admitted again, they are refused
            continue
    raise ApiError(50034)


# A batch some of whose recipients another gateway sent the same text to within the repeat
# window is admitted again, those recipients refused; again if it raced with yet others.
REPEATED_TRIES = 3


async def _submit_batch(api: Api, app, template: Template, recipients: list, mobiles: list,
                        drafts: list, key: Key | None) -> web.Response:
    good, keys, refused, errors = [], [], [], []       # errors: each recipient's, or None
    seen: set = set()
    for entry, mobile, drafted in zip(recipients, mobiles, drafts):
        try:
            if isinstance(drafted, ApiError):
                raise drafted
            message, repeat_key = admit(api, template, drafted, seen)
        except ApiError as error:
            refused.append((_refusal(app, template, entry, mobile), error.code))
            errors.append(error)
            continue
        good.append(message)
        keys.append(repeat_key)
        errors.append(None)

    def render(ids, refused_ids):
        return 200, _batch_answer(recipients, errors, ids, refused_ids)
    recorded = api.rules.record(app.name, [(m.recipient, m.text) for m in good], keys)
    return await api.submit(ApiRequest(app.name, tuple(good), tuple(refused), render=render,
                                       **keyed(key)), recorded)


async def _drafts(api: Api, app, template: Template, recipients: list, mobiles: list,
                  callback: str | None, urgent: bool) -> list:
    """Each recipient's draft (``Composer.draft``), or the ApiError that refused it,
    COMPOSE_CHUNK at a time with a turn of the event loop in between: a verification code
    that arrives meanwhile is not kept waiting for a thousand recipients."""
    composer = Composer(api, app, template, callback, urgent)
    drafts: list = []
    for start in range(0, len(recipients), COMPOSE_CHUNK):
        if start:
            await asyncio.sleep(0)
        for entry, mobile in zip(recipients[start:start + COMPOSE_CHUNK],
                                 mobiles[start:start + COMPOSE_CHUNK]):
            if isinstance(mobile, ApiError):
                drafts.append(mobile)
                continue
            try:
                drafts.append(composer.draft(mobile, entry.get("temp_para")))
            except ApiError as error:
                drafts.append(error)
    return drafts


def _refusal(app, template: Template, entry, mobile) -> NewMessage:
    """The record of a refused recipient: the number it resolved to, else the one given."""
    if not isinstance(mobile, str):
        mobile = entry.get("mobile") if isinstance(entry, dict) else None
    return NewMessage(app.name, sending_channel(app, template),
                      str(mobile)[:32] if mobile is not None else "", "", str(template.id),
                      template.type)


def _named(entry) -> tuple[str, object]:
    """How the answer names a recipient: as the request did, by userid or by mobile."""
    if not isinstance(entry, dict):
        return "mobile", None
    mobile = entry.get("mobile")
    if mobile in (None, "") and entry.get("userid") is not None:
        return "userid", entry["userid"]
    return "mobile", mobile


def _batch_answer(recipients: list, errors: list, ids, refused_ids) -> str:
    """The batch's answer as ``dumps`` writes {"success_count", "failure_count",
    "recipients": [...]}: each recipient sent (its error None) gets the next of ``ids``, each
    refused the next of ``refused_ids``. Its thousand entries are written as text (see
    ``_sent``) and joined once: JSON's text of a list is its items' texts, comma-separated."""
    sent, refused = iter(ids), iter(refused_ids)
    entries = [_sent(next(sent), entry) if error is None
               else dumps(_refused(error, next(refused), entry))
               for entry, error in zip(recipients, errors)]
    return (f'{{"success_count":{len(ids)},"failure_count":{len(refused_ids)},'
            f'"recipients":[{",".join(entries)}]}}')


def _sent(msg_id: int, entry) -> str:
    """``dumps({"msg_id": str(msg_id), name: value})`` for a recipient sent (``_named``),
    written at once when it is named by a mobile given as a string (as JSON's encoder writes
    a string without escaping beyond ASCII: ``encode_basestring``)."""
    mobile = entry.get("mobile") if type(entry) is dict else None
    if type(mobile) is str and mobile:                  # named by it (see ``_named``)
        return f'{{"msg_id":"{msg_id}","mobile":{encode_basestring(mobile)}}}'
    name, value = _named(entry)
    return dumps({"msg_id": str(msg_id), name: value})


def _refused(error: ApiError, msg_id: int, entry) -> dict:
    """A refused recipient's entry: the error, the id under which its refusal is kept, the
    recipient as the request named it, and its parameters."""
    item = error.entry()
    item["msg_id"] = str(msg_id)
    name, value = _named(entry)
    item[name] = value
    if isinstance(entry, dict) and "temp_para" in entry:
        item["temp_para"] = entry["temp_para"]
    return item


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
