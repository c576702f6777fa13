"""The console's Users section over HTTP: uploading a users file the way POST /v1/users takes
it, with its report; the file form's CSRF check before the file is read; an oversized upload
refused at once; searching page by page; numbers masked until an admin reveals them; deleting;
what a viewer may do; and the audit trail of each, which never holds a number."""

from __future__ import annotations

import asyncio
import html
import re

import aiohttp
import pytest

from tests.aio import run
from tests.api.test_users import xlsx
from tests.console_stack import CONFIG, VIEWER, between, signed_in, stack

pytestmark = pytest.mark.usefixtures("console_store")

CSV = ("userid,phone,cmcc\r\n"
       "zhangsan,13800138000,18756432567\r\n"
       "lisi,,1875643256\r\n"
       "wangwu,13900139000,\r\n").encode()
SMALL = CONFIG.replace("[console]", "[api]\nmax_upload = 4096\n[console]")


def multipart(fields: list[tuple[str, object]]) -> aiohttp.FormData:
    """A form as a browser sends it, in this order: (name, text) or (name, (filename, type,
    bytes))."""
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields:
        if isinstance(value, tuple):
            filename, content_type, content = value
            form.add_field(name, content, filename=filename, content_type=content_type)
        else:
            form.add_field(name, value)
    return form


async def upload(browser, content: bytes, filename: str = "users.csv", app: str = "shop",
                 token: str | None = "page", content_type: str = "text/csv",
                 headers: dict | None = None) -> tuple[int, str]:
    fields: list[tuple[str, object]] = []
    if token is not None:
        fields.append(("csrf_token", browser.tokens["csrf_token"] if token == "page" else token))
    fields += [("app", app), ("file", (filename, content_type, content))]
    async with browser.http.post(browser.base + "/users/upload", data=multipart(fields),
                                 allow_redirects=False, headers=headers or {}) as response:
        return response.status, await response.text()


async def audit(s) -> list[tuple[str, str, str, str]]:
    return [(e.operator, e.action, e.target, e.detail)
            for e in await s.gateway.store.audit_page(None, 50)]


def cells(page: str, table: str) -> list[list[str]]:
    body = between(page, f'<table id="{table}">', "</table>").split("<tbody>", 1)[1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_an_admin_uploads_a_file_and_sees_each_refused_row_and_the_upload_is_audited(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            store = s.gateway.store
            async with signed_in(s) as browser:
                page = (await browser.get("/users"))[1]
                assert 'enctype="multipart/form-data"' in page and "shop holds 0 users" in page
                status, page = await upload(browser, CSV)
                assert status == 200, page
                assert re.findall(r"<dt>(\w[\w ]*)</dt><dd>(\d+)</dd>", page) == \
                    [("Rows read", "3"), ("Stored", "2"), ("Refused", "1")]
                assert cells(page, "refused") == [["3", "lisi", "50006",
                                                   "invalid mobile: for cmcc"]]
                assert await store.user("shop", "zhangsan") == {"default": "13800138000",
                                                                "cmcc": "18756432567"}
                assert await store.user("shop", "lisi") is None
                sheet = xlsx([["userid", "cmcc"], ["zhaoliu", 13700137000]])
                status, page = await upload(browser, sheet, "more.xlsx",
                                            content_type="application/octet-stream")
                assert status == 200 and "Every row was stored" in page, page
                assert await store.user("shop", "zhaoliu") == {"cmcc": "13700137000"}
            entries = await audit(s)
            assert entries[:2] == [
                ("alice", "users uploaded", "app shop",
                 f"file 'more.xlsx' ({len(sheet)} bytes): rows=1, stored=1, refused=0"),
                ("alice", "users uploaded", "app shop",
                 f"file 'users.csv' ({len(CSV)} bytes): rows=3, stored=2, refused=1")]
            assert not re.search(r"1\d{10}", str(await store.query("SELECT * FROM audit")))
    run(scenario, timeout=60)


def test_a_file_refused_whole_stores_nothing_and_says_why_under_the_file(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                await browser.get("/users")
                other_channel, xls = b"userid,telecom\r\na,13800138000\r\n", b"\xd0\xcf\x11\xe0"
                for content, filename, words in (
                        (other_channel, "users.csv",
                         "invalid channel key: column 'telecom' is neither userid, phone nor "
                         "a channel of this app (cmcc) (50205); nothing was stored"),
                        (xls, "users.xls", "(50017); nothing was stored"),
                        (b"", "users.csv", "choose a CSV or XLSX file")):
                    status, page = await upload(browser, content, filename,
                                                content_type="application/vnd.ms-excel")
                    assert status == 400, filename
                    assert words in html.unescape(between(page, 'id="file-error">', "</p>"))
                    assert 'aria-describedby="file-help file-error"' in page
                status, page = await upload(browser, CSV, app="nobody")
                assert status == 400 and "choose an app" in page
            assert await s.gateway.store.user_count("shop") == 0
            refused = [e for e in await audit(s) if e[1] == "users upload refused"]
            assert [e[3] for e in refused] == [
                f"file 'users.xls' ({len(xls)} bytes): 50017 media not supported: send JSON, a "
                "CSV file or an XLSX file (save an XLS file as XLSX)",
                f"file 'users.csv' ({len(other_channel)} bytes): 50205 invalid channel key: "
                "column 'telecom' is neither userid, phone nor a channel of this app (cmcc)"]
    run(scenario, timeout=60)


def test_an_upload_without_the_sessions_csrf_token_stores_nothing(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            async with signed_in(s) as browser:
                await browser.get("/users")
                for token in (None, "forged"):
                    status, page = await upload(browser, CSV, token=token)
                    assert status == 403 and "did not come from this console" in page
                status, page = await upload(browser, CSV,
                                            headers={"Origin": "http://evil.example"})
                assert status == 403 and "sent from another site" in page
                # The token after the file: refused, as the file is not read without it.
                form = multipart([("app", "shop"), ("file", ("users.csv", "text/csv", CSV)),
                                  ("csrf_token", browser.tokens["csrf_token"])])
                async with browser.http.post(browser.base + "/users/upload",
                                             data=form) as response:
                    assert response.status == 403
                assert await s.gateway.store.user_count("shop") == 0
                assert (await upload(browser, CSV))[0] == 200        # the real form works
    run(scenario, timeout=60)


async def raw_post(s, browser, head: dict[str, str], body: bytes,
                   at_once: int) -> tuple[int, str, int]:
    """POST /users/upload with ``head``'s headers and this browser's cookies, its ``body``'s
    first ``at_once`` bytes at once, then the rest 512 bytes every 50 ms, as a slow link
    sends them. The answer, and how much of the body had been sent when it came (the rest is
    sent then, so that the server, which reads what it did not want and throws it away,
    finishes with the connection before the test ends)."""
    host, port = s.console.removeprefix("http://").split(":")
    cookies = "; ".join(f"{c.key}={c.value}" for c in browser.http.cookie_jar)
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = ["POST /users/upload HTTP/1.1", f"Host: {host}:{port}", f"Cookie: {cookies}",
             *(f"{k}: {v}" for k, v in head.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body[:at_once])
    sent = [at_once]

    async def send_slowly() -> None:
        while sent[0] < len(body):
            await asyncio.sleep(0.05)
            writer.write(body[sent[0]:sent[0] + 512])
            sent[0] += 512
    sending = asyncio.get_running_loop().create_task(send_slowly())
    try:
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        text = (await reader.readexactly(length)).decode()
        answered_at = min(sent[0], len(body))
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    writer.write(body[sent[0]:])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return status, text, answered_at


def test_an_oversized_upload_is_refused_at_once_and_a_forged_one_before_its_file(tmp_path):
    async def scenario():
        async with stack(tmp_path, config=SMALL) as s:
            async with signed_in(s) as browser:
                await browser.get("/users")
                form = {"Content-Type": "multipart/form-data; boundary=b"}
                # A Content-Length over max_upload: the answer comes before any of the body.
                body = b"x" * (200 << 10)
                status, page, answered_at = await asyncio.wait_for(raw_post(
                    s, browser, {**form, "Content-Length": str(len(body))}, body, 0), 30)
                assert status == 413 and answered_at == 0
                assert "larger than 4096 bytes, the most a users file may be ([api] " \
                       "max_upload); nothing was stored" in html.unescape(page)
                # A forged token: refused as the file's part begins, while the file is still
                # on its way (80 KiB at 10 KiB/s), not after it was read.
                start = (b"--b\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
                         b"forged\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; "
                         b"filename=\"users.csv\"\r\nContent-Type: text/csv\r\n\r\n")
                body = start + b"x" * (80 << 10)
                status, page, answered_at = await asyncio.wait_for(raw_post(
                    s, browser, {**form, "Content-Length": str(len(body))}, body,
                    len(start)), 30)
                assert status == 403 and "did not come from this console" in page
                assert answered_at < len(body)
                # A body within the form's room whose file is not: cut off at max_upload.
                big = CSV + b"".join(b"user%05d,13800138000,\r\n" % n for n in range(400))
                status, page = await upload(browser, big)
                assert status == 413 and "larger than 4096 bytes" in page
                assert (await upload(browser, CSV))[0] == 200           # within it: taken
            assert await s.gateway.store.user_count("shop") == 2
    run(scenario, timeout=60)


def test_users_are_searched_a_page_at_a_time_by_the_beginning_of_their_userid(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            users = [(f"user{n:03d}", {"default": f"13800{n:06d}"}) for n in range(120)]
            users += [("zhangsan", {"cmcc": "18756432567"}),
                      ("zhangsi", {"default": "13900139000"})]
            await s.gateway.store.save_users("shop", users, False, 1000, 1.0)
            async with signed_in(s, VIEWER) as viewer:
                page = (await viewer.get("/users?app=shop"))[1]
                assert "shop holds 122 users" in page
                rows = cells(page, "users")
                assert [r[0] for r in rows] == [f"user{n:03d}" for n in range(50)]
                assert rows[0][1] == "default 138****0000"
                more = html.unescape(between(page, '<a href="/users?', '">More users'))
                assert more == "app=shop&prefix=&after=user049"
                page = (await viewer.get(f"/users?{more}"))[1]
                assert [r[0] for r in cells(page, "users")][::49] == ["user050", "user099"]
                page = (await viewer.get("/users?app=shop&prefix=user1"))[1]
                assert len(cells(page, "users")) == 20 and "More users" not in page
                page = (await viewer.get("/users?app=shop&prefix=zhang"))[1]
                assert [row[:2] for row in cells(page, "users")] == [
                    ["zhangsan", "cmcc 187****2567"], ["zhangsi", "default 139****9000"]]
                page = (await viewer.get("/users?app=shop&prefix=nobody"))[1]
                assert "No user whose userid begins so" in page
                status, page, _ = await viewer.get("/users?app=shop&prefix=" + "x" * 65)
                assert status == 200 and "a userid is at most 64 characters" in page
                assert "there is no such app" in (await viewer.get("/users?app=none"))[1]
    run(scenario, timeout=60)


def test_numbers_are_masked_until_an_admin_reveals_them_and_the_reveal_is_audited(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            await s.gateway.store.save_users("shop", [
                ("13700137000", {"default": "13800138000", "cmcc": "18756432567",
                                 "gone": "13600136000"})], False, 10, 1.0)
            user = "/users/user?app=shop&userid=13700137000"
            async with signed_in(s) as admin:
                page = (await admin.get(user))[1]
                assert cells(page, "numbers") == [["cmcc", "187****2567", "cmcc"],
                                                  ["default", "138****8000",
                                                   "none: every channel has its own"],
                                                  ["gone", "136****6000",
                                                   "none: not a channel of this app"]]
                status, page, headers = await admin.post("/users/user/reveal", {
                    "app": "shop", "userid": "13700137000"})
                assert status == 200 and headers["Cache-Control"] == "no-store"
                assert [r[1] for r in cells(page, "numbers")] == ["18756432567", "13800138000",
                                                                  "13600136000"]
                assert "18756432567" not in (await admin.get(user))[1]      # not kept shown
                assert (await admin.post("/users/user/reveal", {
                    "app": "shop", "userid": "nobody"}))[0] == 404
            assert (await audit(s))[0] == ("alice", "user's numbers revealed",
                                           "user 137****7000 of app shop", "")
            async with signed_in(s, VIEWER) as viewer:
                page = (await viewer.get(user))[1]
                assert "187****2567" in page and "Reveal" not in page and "Delete" not in page
                assert "18756432567" not in page
                for path, form in (("/users/user/reveal", {"app": "shop",
                                                           "userid": "13700137000"}),
                                   ("/users/user/delete", {"app": "shop",
                                                           "userid": "13700137000"})):
                    status, page, _ = await viewer.post(path, form)
                    assert status == 403 and "you can look, not change" in page, path
                    assert "18756432567" not in page
                page = (await viewer.get("/users"))[1]
                assert "Upload" not in page and "/users/upload" not in page
                status, page = await upload(viewer, CSV)
                assert status == 403 and "you can look, not change" in page
            assert await s.gateway.store.user("shop", "13700137000") is not None
            assert await s.gateway.store.user("shop", "zhangsan") is None
    run(scenario, timeout=60)


def test_an_admin_deletes_a_user_and_the_deletion_is_audited(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            await s.gateway.store.save_users("shop", [("zhangsan", {"default": "13800138000"})],
                                             False, 10, 1.0)
            async with signed_in(s) as admin:
                page = (await admin.get("/users/user?app=shop&userid=zhangsan"))[1]
                assert 'data-confirm="Delete user zhangsan of shop?' in page
                status, _, headers = await admin.post("/users/user/delete", {
                    "app": "shop", "userid": "zhangsan"})
                assert status == 303
                assert headers["Location"] == "/users?app=shop&deleted=zhangsan"
                page = (await admin.get(headers["Location"]))[1]
                assert "User zhangsan of shop was deleted." in page
                assert (await admin.get("/users/user?app=shop&userid=zhangsan"))[0] == 404
                assert (await admin.post("/users/user/delete", {
                    "app": "shop", "userid": "zhangsan"}))[0] == 404
            assert await s.gateway.store.user("shop", "zhangsan") is None
            assert [e for e in await audit(s) if e[1] == "user deleted"] == [
                ("alice", "user deleted", "user zhangsan of app shop", "")]
    run(scenario, timeout=60)
