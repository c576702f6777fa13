"""The JSMS error codes, with the HTTP status and message of each, as the JSMS documents give
them (reference seeds 002 and 003), and the gateway's own from 50201 on (users and their
numbers, which JSMS leaves to its UMS product). Every error the API answers is one of these:
``{"error": {"code": 50006, "message": "invalid mobile"}}``. ``message`` is always exactly the
table's, because clients match on it; what the gateway can add about the cause is in a field
of its own, ``detail`` (never a secret or a phone number):
``{"error": {"code": 50007, "message": "invalid body", "detail": "not JSON"}}``.
"""

from __future__ import annotations

from aiohttp import web

CODES: dict[int, tuple[int, str]] = {
    50000: (200, "success"),
    50001: (400, "missing auth"),
    50002: (401, "auth failed"),
    50003: (400, "missing body"),
    50004: (400, "missing mobile"),
    50005: (400, "missing temp_id"),
    50006: (403, "invalid mobile"),
    50007: (403, "invalid body"),
    50008: (403, "no sms code auth"),
    50009: (403, "out of freq"),
    50010: (403, "invalid code"),
    50011: (403, "expired code"),
    50012: (403, "verified code"),
    50013: (403, "invalid temp_id"),
    50014: (403, "no money"),
    50015: (400, "missing code"),
    50016: (404, "api not found"),
    50017: (415, "media not supported"),
    50018: (405, "request method not support"),
    50019: (500, "server error"),
    50020: (403, "template auditing"),
    50021: (403, "template not pass"),
    50022: (403, "parameters not all replaced"),
    50023: (403, "parameters is empty"),
    50024: (403, "unsubscribed mobile"),
    50025: (403, "wrong template type"),
    50026: (403, "wrong msg_id"),
    50030: (403, "recipients is empty"),
    50031: (403, "too much recipients"),
    50034: (403, "repeat send"),
    50035: (403, "illegal IP"),
    50036: (403, "app in black"),
    50037: (403, "has black word"),
    50038: (403, "invalid code length"),
    50039: (403, "invalid code type"),
    50040: (403, "invalid voice language type"),
    50041: (403, "invalid ttl value"),
    50101: (403, "invalid image"),
    50102: (403, "invalid sign id"),
    50103: (403, "other signatures in the audit"),
    50104: (403, "invalid signature"),
    50105: (403, "the signature in use cannot be deleted"),
    # The gateway's own, for users bound to numbers (JSMS has no such API): 50201 and up.
    50201: (400, "missing userid"),
    50202: (403, "invalid userid"),
    50203: (403, "unknown userid"),
    50204: (403, "no mobile for channel"),
    50205: (403, "invalid channel key"),
    50206: (403, "too many users"),
}


class ApiError(Exception):
    """A request refused with a JSMS code: ``message`` is the table's, ``detail`` (or None)
    says more about the cause."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = code
        self.status, self.message = CODES[code]
        self.detail = detail or None
        super().__init__(f"{code} {self.text}")

    @property
    def text(self) -> str:
        """The message and the detail in one line, for a person (the console)."""
        return f"{self.message}: {self.detail}" if self.detail else self.message

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.detail:
            error["detail"] = self.detail
        return {"error": error}

    def entry(self) -> dict:
        """The refusal as an entry of a list (a batch's recipient, an upload's user):
        ``error_code`` (a string, as JSMS writes it), ``error_message`` and
        ``error_detail``."""
        entry = {"error_code": str(self.code), "error_message": self.message}
        if self.detail:
            entry["error_detail"] = self.detail
        return entry

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)
