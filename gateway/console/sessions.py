"""Operators' sessions: a signed cookie naming a session kept in the store.

The cookie holds a random 256-bit token and its HMAC under the session key (HttpOnly,
SameSite=Strict, Path=/, and Secure when ``[console] secure_cookies`` is set). The store
keeps only the token's SHA-256, the operator, and when the session began and was last seen:
a session ends after ``idle_timeout`` without a request or ``session_lifetime`` after it
began, whichever comes first, on sign-out, and when the operator's account is changed or
removed. "Last seen" is written at most once a minute, so idle expiry is exact to a minute.

Every form carries a CSRF token: the HMAC of the session token for the purpose "csrf" (no
second secret to keep). The login form, before any session, carries the HMAC of a random
value kept in a short cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.config import ConsoleSettings
from gateway.store import AuditNote

from .auth import Signer

SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class Operator:
    """The signed-in operator of a request."""

    name: str
    role: str
    token: str = ""
    csrf: str = ""

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def session_id(token: str) -> str:
    """How the store names a session: the token's hash, so the store holds no live token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, store, settings: ConsoleSettings, signer: Signer, clock) -> None:
        self.store, self.settings, self.signer, self.clock = store, settings, signer, clock

    async def begin(self, response: web.StreamResponse, user: str, source: str) -> None:
        """A new session for ``user``, its cookie set on ``response``; audited."""
        token = secrets.token_urlsafe(32)
        await self.store.create_session(
            session_id(token), user, AuditNote(user, "signed in", "console", f"from {source}"),
            self.clock(), self.settings.idle_timeout, self.settings.session_lifetime)
        self._set_cookie(response, SESSION_COOKIE, self.signer.sign("session", token))
        response.del_cookie(LOGIN_COOKIE, path="/")

    async def find(self, request: web.Request) -> Operator | None:
        """The operator of the request's session, or None (no cookie, a bad signature, an
        ended or expired session; an expired one is deleted)."""
        token = self.signer.unsign("session", request.cookies.get(SESSION_COOKIE))
        if token is None:
            return None
        key, now = session_id(token), self.clock()
        found = await self.store.session(key)
        if found is None:
            return None
        if now >= found.created_at + self.settings.session_lifetime or \
                now >= found.seen_at + self.settings.idle_timeout:
            await self.store.end_session(key, None, now)
            return None
        if now - found.seen_at >= min(TOUCH_EVERY, self.settings.idle_timeout / 4):
            await self.store.touch_session(key, now)
        return Operator(found.user, found.role, token, self.signer.mac("csrf", token))

    async def end(self, response: web.StreamResponse, operator: Operator) -> None:
        await self.store.end_session(session_id(operator.token),
                                     AuditNote(operator.name, "signed out", "console"),
                                     self.clock())
        response.del_cookie(SESSION_COOKIE, path="/")

    # ------------------------------------------------------------------------- CSRF

    def csrf_ok(self, operator: Operator, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(operator.csrf, given)

    def login_token(self, request: web.Request) -> tuple[str, str | None]:
        """The CSRF token of the login form, and the login cookie to set with the form when
        the request has none yet (else None)."""
        value = self.signer.unsign("login", request.cookies.get(LOGIN_COOKIE))
        cookie = None
        if value is None:
            value = secrets.token_urlsafe(16)
            cookie = self.signer.sign("login", value)
        return self.signer.mac("login-csrf", value), cookie

    def set_login_cookie(self, response: web.StreamResponse, cookie: str | None) -> None:
        if cookie is not None:
            self._set_cookie(response, LOGIN_COOKIE, cookie)

    def login_csrf_ok(self, request: web.Request, given: str | None) -> bool:
        value = self.signer.unsign("login", request.cookies.get(LOGIN_COOKIE))
        return value is not None and bool(given) and \
            hmac.compare_digest(self.signer.mac("login-csrf", value), given)

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, path="/", httponly=True, samesite="Strict",
                            secure=self.settings.secure_cookies)
