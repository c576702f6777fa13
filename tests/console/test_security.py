"""The console's security rules over HTTP: signing in, sessions and their expiry, CSRF,
roles, the login limit, headers, secrets shown once, numbers masked and reveals audited."""

from __future__ import annotations

import re

import pytest
from yarl import URL

from gateway.console.sessions import SESSION_COOKIE
from tests.aio import run
from tests.console_stack import ADMIN, VIEWER, between, signed_in, stack

pytestmark = pytest.mark.usefixtures("console_store")


async def audit(s) -> list[tuple[str, str, str]]:
    rows = await s.gateway.store.audit_page(None, 100)
    return [(e.operator, e.action, e.target) for e in reversed(rows)]


def test_pages_need_a_session_and_signing_in_and_out_works(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            browser = s.browser()
            try:
                status, _, headers = await browser.get("/apps?x=1")
                assert status == 303 and headers["Location"] == "/login?next=%2Fapps%3Fx%3D1"
                status, _, _ = await browser.get("/login?next=%2Fapps")
                status, _, headers = await browser.post("/login", {
                    "name": ADMIN[0], "password": ADMIN[1], "next": "/apps",
                    "login_token": browser.tokens["login_token"]}, token=False)
                assert status == 303 and headers["Location"] == "/apps"
                cookie = headers.getall("Set-Cookie")
                session = next(c for c in cookie if c.startswith(SESSION_COOKIE))
                assert "HttpOnly" in session and "SameSite=Strict" in session
                assert "Path=/" in session and "Secure" not in session
                status, page, _ = await browser.get("/apps")
                assert status == 200 and "alice" in page and "Sign out" in page
                old = browser.http.cookie_jar.filter_cookies(URL(s.console))[SESSION_COOKIE].value
                status, _, headers = await browser.post("/logout", {})
                assert status == 303 and headers["Location"] == "/login"
                assert (await browser.get("/apps"))[0] == 303
                thief = s.browser()                       # the old cookie is dead too
                thief.http.cookie_jar.update_cookies({SESSION_COOKIE: old})
                assert (await thief.get("/apps"))[0] == 303
                await thief.close()
            finally:
                await browser.close()
            assert await audit(s) == [("test", "console user added", "alice"),
                                      ("test", "console user added", "victor"),
                                      ("alice", "signed in", "console"),
                                      ("alice", "signed out", "console")]
    run(scenario, timeout=60)


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            browser = s.browser()
            try:
                wrong = await browser.login(ADMIN[0], "not-the-password")
                unknown = await browser.login("mallory", "not-the-password")
                assert wrong[0] == unknown[0] == 401
                assert "Wrong name or password." in wrong[1] and \
                    "Wrong name or password." in unknown[1]
                assert SESSION_COOKIE not in browser.http.cookie_jar.filter_cookies(URL(s.console))
                status, _, _ = await browser.post("/login", {
                    "name": ADMIN[0], "password": ADMIN[1], "login_token": "forged"},
                    token=False)
                assert status == 403                     # the login form's own CSRF token
            finally:
                await browser.close()
    run(scenario, timeout=60)


def test_failed_logins_are_limited_per_account_and_per_source(tmp_path):
    async def scenario():
        async with stack(tmp_path, "login_failures_per_account = 3\n"
                                   "login_failures_per_source = 5\n") as s:
            browser = s.browser()
            try:
                for _ in range(3):
                    assert (await browser.login(ADMIN[0], "wrong-password"))[0] == 401
                status, page, _ = await browser.login(*ADMIN)      # the right one, too late
                assert status == 429 and "Too many failed sign-ins" in page
                # Names that are not accounts count only against the source.
                assert (await browser.login("nobody1", "x"))[0] == 401
                assert (await browser.login(*VIEWER))[0] == 303     # another account is fine
                again = s.browser()
                assert (await again.login("nobody2", "x"))[0] == 401
                assert (await again.login(*VIEWER))[0] == 429       # the source's 5 failures
                await again.close()
            finally:
                await browser.close()
    run(scenario, timeout=60)


def test_sessions_end_when_idle_and_when_old(tmp_path):
    now = [1_000_000.0]

    async def scenario():
        async with stack(tmp_path, "idle_timeout = 600\nsession_lifetime = 3600\n",
                         clock=lambda: now[0]) as s:
            async with signed_in(s) as browser:
                now[0] += 599
                assert (await browser.get("/"))[0] == 200            # seen: idle restarts
                now[0] += 599
                assert (await browser.get("/"))[0] == 200
                now[0] += 601
                assert (await browser.get("/"))[0] == 303            # idle too long
            async with signed_in(s) as browser:
                for _ in range(7):
                    now[0] += 500
                    assert (await browser.get("/"))[0] == 200
                now[0] += 500                                        # 4,000 s after sign-in
                assert (await browser.get("/"))[0] == 303
    run(scenario, timeout=60)


def test_a_post_without_the_sessions_csrf_token_or_from_elsewhere_changes_nothing(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                form = {"name": "Evil", "channels": "cmcc", "enabled": "on"}
                for token in (None, "forged"):
                    fields = dict(form) if token is None else {**form, "csrf_token": token}
                    status, page, _ = await browser.post("/apps", fields, token=False)
                    assert status == 403 and "did not come from this console" in page
                status, page, _ = await browser.post(
                    "/apps", form, headers={"Origin": "http://evil.example"})
                assert status == 403 and "sent from another site" in page
                async with signed_in(s) as other:                # another session's token
                    status, _, _ = await browser.post(
                        "/apps", {**form, "csrf_token": other.tokens["csrf_token"]},
                        token=False)
                    assert status == 403
                assert "Evil" not in s.gateway.apps and await s.gateway.store.apps() == []
                status, _, headers = await browser.post("/apps", form)
                assert status == 303 and "Evil" in s.gateway.apps       # the real form works
    run(scenario, timeout=60)


def test_a_viewer_sees_everything_and_changes_or_reveals_nothing(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as admin:
                await admin.post("/apps", {"name": "Made", "channels": "cmcc", "enabled": "on"})
            key = s.gateway.apps["Made"].app_key
            async with signed_in(s, VIEWER) as viewer:
                for path in ("/", "/apps", f"/apps/{key}", "/reviews", "/messages", "/audit"):
                    status, page, _ = await viewer.get(path)
                    assert status == 200, path
                    assert "Rotate" not in page and "New application" not in page
                for path in ("/apps/new", "/messages/send", f"/apps/{key}/secret"):
                    assert (await viewer.get(path))[0] == 403, path
                posts = [("/apps", {"name": "V", "channels": "cmcc"}),
                         (f"/apps/{key}", {"channels": "cmcc"}),
                         (f"/apps/{key}/rotate", {}),
                         (f"/apps/{key}/enabled", {"enabled": "false"}),
                         ("/reviews/template/1001", {"decision": "approve"}),
                         ("/messages/1/reveal", {}), ("/messages/send", {"app": "shop"})]
                for path, form in posts:
                    status, page, _ = await viewer.post(path, form)
                    assert status == 403 and "you can look, not change" in page, path
                [stored] = await s.gateway.store.apps()
                assert stored.master_secret == s.gateway.apps["Made"].master_secret
                assert s.gateway.apps["Made"].enabled and "V" not in s.gateway.apps
                assert (await viewer.post("/logout", {}))[0] == 303     # this it may do
    run(scenario, timeout=60)


def test_every_answer_carries_the_security_headers(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                for path, status in (("/", 200), ("/nowhere", 404), ("/login", 303),
                                     ("/static/console.css", 200)):
                    got, page, headers = await browser.get(path)
                    assert got == status, path
                    csp = headers["Content-Security-Policy"]
                    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                    assert "frame-ancestors 'none'" in csp and headers["X-Frame-Options"] == "DENY"
                    assert headers["X-Content-Type-Options"] == "nosniff"
                    static = path.startswith("/static/")
                    assert (headers.get("Cache-Control") == "no-store") != static, path
                _, page, _ = await browser.get("/")
                assert "<script>" not in page and " style=" not in page and "onclick" not in page
    run(scenario, timeout=60)


def test_a_new_apps_secret_is_shown_once_and_never_on_its_pages(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                status, _, headers = await browser.post(
                    "/apps", {"name": "Once", "channels": "cmcc", "enabled": "on"})
                secret_page = headers["Location"]
                status, page, headers = await browser.get(secret_page)
                secret = s.gateway.apps["Once"].master_secret
                assert status == 200 and secret in page and headers["Cache-Control"] == "no-store"
                status, again, _ = await browser.get(secret_page)
                assert status == 200 and secret not in again and "shown already" in again
                key = s.gateway.apps["Once"].app_key
                for path in ("/apps", f"/apps/{key}", "/audit", "/"):
                    assert secret not in (await browser.get(path))[1], path
                async with signed_in(s) as other:               # not shown to another session
                    await browser.post(f"/apps/{key}/rotate", {})
                    rotated = s.gateway.apps["Once"].master_secret
                    assert rotated not in (await other.get(secret_page))[1]
                assert rotated in (await browser.get(secret_page))[1]
                assert "shop-master-secret" not in (await browser.get("/apps/shopkey"))[1]
    run(scenario, timeout=60)


def test_numbers_are_masked_until_an_admin_reveals_one_and_the_reveal_is_audited(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                status, _, headers = await browser.post("/messages/send", {
                    "app": "shop", "template": "1", "mobile": "13812345678", "p.order": "A1"})
                assert status == 303
                message = headers["Location"].split("?")[0]
                for path in (message, "/messages", "/messages?number=13812345678", "/audit"):
                    page = (await browser.get(path))[1]
                    page = page.replace('value="13812345678"', "")     # the search typed
                    assert "13812345678" not in page and "138****5678" in page, path
                    # the text, not "A1" alone: a page's CSRF token (base64) may hold "A1"
                    assert "订单A1" not in page or path == "/audit", path
                status, page, headers = await browser.post(f"{message}/reveal", {})
                assert status == 200 and "13812345678" in page and "您的订单A1已发货" in page
                assert headers["Cache-Control"] == "no-store"
                assert "13812345678" not in (await browser.get(message))[1]   # not kept shown
                entries = (await s.gateway.store.audit_page(None, 10))
                assert (entries[0].operator, entries[0].action, entries[0].target,
                        entries[0].detail) == ("alice", "number and text revealed",
                                               message.replace("/messages/", "message "),
                                               "to 138****5678")
                assert "13812345678" not in str(await s.gateway.store.query("SELECT * FROM audit"))
                assert re.search(r"test message sent", between((await browser.get("/audit"))[1],
                                                               "<tbody>", "</tbody>"))
    run(scenario, timeout=60)
