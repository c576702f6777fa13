"""Users bound to numbers per channel (seed 000, "Upload Mobile Numbers") over real HTTP:
uploads as JSON, CSV and XLSX, one user's GET/PUT/DELETE, isolation between apps, and sends
to a userid on every endpoint, against a running gateway and the simulator."""

from __future__ import annotations

import contextlib
import io
import logging
import zipfile

import aiohttp
import openpyxl
import pytest

from tests import api_stack
from tests.aio import eventually, run
from tests.api_stack import KEY, OTHER, SECRET, error

pytestmark = pytest.mark.usefixtures("api_store")

CONFIG = """
[gateway]
store = "@STORE@"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = @PORT@
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
[channels.unicom]
provider = "default"
host = "127.0.0.1"
port = @PORT@
account = "900001"
password = "secret"
access_number = "10690002"
connections = 1
[api]
@API@
[apps.shop]
app_key = "@KEY@"
master_secret = "@SECRET@"
[apps.other]
app_key = "otherkey"
master_secret = "other-secret"
[templates.1]
type = "notification"
content = "您的订单{{order}}已发货"
[templates.2]
type = "code"
content = "验证码{{code}}"
[templates.3]
type = "marketing"
content = "限时优惠，回TD退订"
[templates.5]
type = "notification"
content = "联通通知{{n}}"
channel = "unicom"
"""
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@contextlib.asynccontextmanager
async def stack(tmp_path, api: str = ""):
    """The API stack with two channels (cmcc, the apps' first, and unicom) on one simulator,
    told apart by their access numbers."""
    async with api_stack.stack(tmp_path, api, config=CONFIG) as s:
        await s.gateway.pools["unicom"].wait_ready()
        yield s.api, s.gateway, s.sim


def sent(sim) -> list[tuple[str, str]]:
    """(access number, handset) of every SUBMIT the simulator got."""
    return [(s.submit.src_id, s.submit.dest_terminal_ids[0]) for s in sim.submits]


async def upload_file(api, content: bytes, content_type: str, *, auth=(KEY, SECRET)):
    status, body, _ = await api.call("POST", "/v1/users", data=content,
                                     headers={"Content-Type": content_type}, auth=auth)
    return status, body


async def upload_form(api, content: bytes, filename: str, content_type="application/octet-stream"):
    form = aiohttp.FormData()
    form.add_field("file", content, filename=filename, content_type=content_type)
    status, body, _ = await api.call("POST", "/v1/users", data=form)
    return status, body


async def user(api, userid: str, auth=(KEY, SECRET)):
    status, body, _ = await api.call("GET", f"/v1/users/{userid}", auth=auth)
    return status, body


def xlsx(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def stored_users(gateway) -> list[tuple]:
    return await gateway.store.query("SELECT app, userid, phones FROM users ORDER BY app, userid")


# ----------------------------------------------------------------------------- JSON

def test_the_seeds_json_uploads_a_user_who_is_then_read_merged_replaced_and_deleted(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            seed = [{"userid": "zhangsan", "phone": {"cmcc": "18756432567"}}]
            status, body, _ = await api.call("POST", "/v1/users", seed)
            assert (status, body) == (200, {"success_count": 1, "failure_count": 0,
                                            "users": [{"userid": "zhangsan"}]})
            assert await user(api, "zhangsan") == (200, {"userid": "zhangsan",
                                                         "phone": {"cmcc": "18756432567"}})
            more = [{"userid": "zhangsan", "phone": {"default": "+8613800138000"}}]
            assert (await api.call("POST", "/v1/users", more))[0] == 200       # merged in
            assert (await user(api, "zhangsan"))[1]["phone"] == {"cmcc": "18756432567",
                                                                 "default": "13800138000"}
            status, body, _ = await api.call("PUT", "/v1/users/zhangsan",
                                             {"phone": {"unicom": 8613900139000}})
            assert (status, body) == (200, {"userid": "zhangsan",
                                            "phone": {"unicom": "13900139000"}})
            assert (await user(api, "zhangsan"))[1]["phone"] == {"unicom": "13900139000"}
            status, body, _ = await api.call("DELETE", "/v1/users/zhangsan")
            assert (status, body) == (200, None)
            assert error(50203, 403)(await user(api, "zhangsan"))
            assert error(50203, 403)(await api.call("DELETE", "/v1/users/zhangsan"))
            lisi = {"userid": "lisi", "phone": {"default": "13700137000"}}
            status, body, _ = await api.call("PUT", "/v1/users/lisi", lisi)      # PUT creates
            assert status == 200 and (await user(api, "lisi"))[0] == 200
    run(scenario)


def test_a_json_upload_stores_the_good_users_and_refuses_each_bad_one_alone(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            users = [{"userid": "ok1", "phone": {"cmcc": "13800138000", "unicom": "13900139000"}},
                     {"userid": "bad-number", "phone": {"cmcc": "1380013800"}},
                     {"userid": "bad-key", "phone": {"telecom": "13800138000"}},
                     {"phone": {"cmcc": "13800138000"}},
                     {"userid": "has space", "phone": {"cmcc": "13800138000"}},
                     {"userid": "no-phone"},
                     "zhangsan",
                     {"userid": "张三", "phone": {"default": "13700137000"}}]
            status, body, _ = await api.call("POST", "/v1/users", users)
            assert status == 200 and (body["success_count"], body["failure_count"]) == (2, 6)
            codes = [entry.get("error_code") for entry in body["users"]]
            assert codes == [None, "50006", "50205", "50201", "50202", "50004", "50007", None]
            assert body["users"][1] == {"error_code": "50006", "userid": "bad-number",
                                        "error_message": "invalid mobile",
                                        "error_detail": "for cmcc"}
            assert body["users"][2]["error_message"] == "invalid channel key"
            assert "telecom" in body["users"][2]["error_detail"]
            assert [row[1] for row in await stored_users(gateway)] == ["ok1", "张三"]
    run(scenario)


@pytest.mark.parametrize("body,code", [
    ({"userid": "zhangsan", "phone": {"cmcc": "13800138000"}}, 50007),     # not an array
    ([], 50007),
    ([{"userid": f"u{i}", "phone": {"default": "13800138000"}} for i in range(1001)], 50206),
])
def test_a_json_upload_that_is_not_1_to_1000_users_is_refused_whole(tmp_path, body, code):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert error(code, 403)(await api.call("POST", "/v1/users", body))
            assert await stored_users(gateway) == []
    run(scenario)


def test_a_put_is_checked_like_an_upload(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert error(50006, 403)(await api.call("PUT", "/v1/users/a", {"phone": {"cmcc": "1"}}))
            assert error(50004, 400)(await api.call("PUT", "/v1/users/a", {"phone": {}}))
            other = {"userid": "b", "phone": {"cmcc": "13800138000"}}
            assert error(50007, 403)(await api.call("PUT", "/v1/users/a", other))
            assert error(50202, 403)(await api.call("PUT", "/v1/users/a%20b",
                                                    {"phone": {"cmcc": "13800138000"}}))
            assert error(50202, 403)(await user(api, "x" * 65))
            assert await stored_users(gateway) == []
    run(scenario)


def test_an_app_holds_at_most_max_users(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="max_users = 2") as (api, gateway, sim):
            users = [{"userid": f"u{i}", "phone": {"default": "13800138000"}} for i in range(3)]
            status, body, _ = await api.call("POST", "/v1/users", users)
            assert [e.get("error_code") for e in body["users"]] == [None, None, "50206"]
            assert (await api.call("POST", "/v1/users", users[:2]))[1]["failure_count"] == 0
            assert error(50206, 403)(await api.call("PUT", "/v1/users/u2", users[2]))
            await api.call("DELETE", "/v1/users/u0")
            assert (await api.call("PUT", "/v1/users/u2", users[2]))[0] == 200
            other = [{"userid": "u0", "phone": {"default": "13800138000"}}]     # per app
            assert (await api.call("POST", "/v1/users", other, auth=OTHER))[1]["success_count"] == 1
    run(scenario)


# ----------------------------------------------------------------------------- files

CSV = ("userid,phone,cmcc,unicom\n"
       "zhangsan,13800138000,18756432567,\n"
       "lisi,,1875643256,13900139000\n"       # row 3: a cmcc number one digit short
       "\n"
       ",13700137000,,\n"                     # row 5: no userid
       "wangwu,+8613600136000,,\n").encode()


def test_a_csv_file_stores_its_users_and_reports_each_refused_row(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            status, body = await upload_file(api, CSV, "text/csv")
            assert status == 200, body
            assert body == {"success_count": 2, "failure_count": 2, "rows": 4, "refused": [
                {"row": 3, "userid": "lisi", "error_code": "50006",
                 "error_message": "invalid mobile", "error_detail": "for cmcc"},
                {"row": 5, "userid": "", "error_code": "50201", "error_message": "missing userid"}]}
            assert (await user(api, "zhangsan"))[1]["phone"] == {"cmcc": "18756432567",
                                                                 "default": "13800138000"}
            assert (await user(api, "wangwu"))[1]["phone"] == {"default": "13600136000"}
            assert error(50203, 403)(await user(api, "lisi"))
            # Excel on a Chinese Windows saves CSV as GB18030; a form upload names the file.
            chinese = "userid,phone\n张三,13500135000\n".encode("gb18030")
            status, body = await upload_form(api, chinese, "用户.csv")
            assert (status, body["success_count"]) == (200, 1), body
            assert (await user(api, "张三"))[1]["phone"] == {"default": "13500135000"}
    run(scenario)


def test_an_xlsx_file_stores_its_users_and_reports_each_refused_row(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            content = xlsx([["userid", "phone", "cmcc"],
                            ["zhangsan", 18756432567, None],        # a number cell
                            ["lisi", "13800138000", "12345"],
                            [],
                            ["wangwu", None, "13900139000", "stray"],
                            [1001, "13700137000", None]])
            status, body = await upload_file(api, content, XLSX_TYPE)
            assert status == 200, body
            assert (body["rows"], body["success_count"], body["failure_count"]) == (4, 2, 2)
            assert [(r["row"], r["userid"], r["error_code"]) for r in body["refused"]] == \
                [(3, "lisi", "50006"), (5, "wangwu", "50007")]
            assert (await user(api, "zhangsan"))[1]["phone"] == {"default": "18756432567"}
            assert (await user(api, "1001"))[1]["phone"] == {"default": "13700137000"}
            unicom = xlsx([["userid", "unicom"], ["lisi", "13800138000"]])
            status, body = await upload_form(api, unicom, "users.xlsx")
            assert (status, body["success_count"]) == (200, 1), body
            assert (await user(api, "lisi"))[1]["phone"] == {"unicom": "13800138000"}
    run(scenario)


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def entity_bomb() -> bytes:
    """A real XLSX whose sheet declares an XML entity (a billion-laughs in small)."""
    with zipfile.ZipFile(io.BytesIO(xlsx([["userid", "phone"], ["a", "13800138000"]]))) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    assert entries[sheet].startswith(b"<worksheet ")
    entries[sheet] = (b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                      + entries[sheet].replace(b">a<", b">&b;<"))
    return zip_of(entries)


BAD_FILES = {
    "not a zip": (b"userid,phone\n", XLSX_TYPE, 50007, 403),
    "a zip without a workbook": (zip_of({"hello.txt": b"hi"}), XLSX_TYPE, 50007, 403),
    "XML entities": (entity_bomb(), XLSX_TYPE, 50007, 403),
    "a column that is no channel": (b"userid,phone,telecom\na,13800138000,\n", "text/csv",
                                    50205, 403),
    "no userid column": (b"phone,cmcc\n13800138000,\n", "text/csv", 50201, 400),
    "no number column": (b"userid\na\n", "text/csv", 50004, 400),
    "a column twice": (b"userid,phone,default\na,13800138000,\n", "text/csv", 50007, 403),
    "not text": (b"userid,phone\n\xff\xff\xff,1\n", "text/csv", 50007, 403),
    "a header only": (b"", "text/csv", 50003, 400),
    "an XLS file": (b"\xd0\xcf\x11\xe0", "application/vnd.ms-excel", 50017, 415),
    "plain text": (b"userid,phone\n", "text/plain", 50017, 415),
}


def test_an_xlsx_that_unpacks_to_over_64_mib_is_refused_before_it_is_read(tmp_path):
    with zipfile.ZipFile(io.BytesIO(xlsx([["userid", "phone"], ["a", "13800138000"]]))) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    bomb = zip_of({**entries, "xl/media/padding.bin": b"\0" * (64 << 20)})

    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            answer = await upload_file(api, bomb, XLSX_TYPE)
            assert error(50007, 403)(answer) and "64 MiB" in answer[1]["error"]["detail"]
            assert await stored_users(gateway) == []
            assert (await upload_file(api, zip_of(entries), XLSX_TYPE))[0] == 200
    run(scenario, timeout=60)


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_file_that_cannot_be_read_is_a_clear_error_and_stores_nothing(tmp_path, name, caplog):
    content, content_type, code, status = BAD_FILES[name]

    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            answer = await upload_file(api, content, content_type)
            assert error(code, status)(answer), answer
            assert await stored_users(gateway) == []
    run(scenario, timeout=60)
    assert "Traceback" not in caplog.text and "server error" not in caplog.text


def test_upload_limits_are_clear_errors(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="max_upload = 4096") as (api, gateway, sim):
            big = b"userid,phone\n" + b"".join(b"u%d,13800138000\n" % i for i in range(400))
            answer = await upload_file(api, big, "text/csv")
            assert error(50007, 403)(answer) and "4096" in answer[1]["error"]["detail"]
            assert error(50007, 403)(await upload_form(api, big, "users.csv"))

            async def chunked():                  # no Content-Length: counted as it comes
                for start in range(0, len(big), 1000):
                    yield big[start:start + 1000]
            assert error(50007, 403)(await upload_file(api, chunked(), "text/csv"))
            assert error(50017, 415)(await upload_form(api, b"x", "users.xls"))
            status, body, _ = await api.call("POST", "/v1/users", data=aiohttp.FormData(
                {"name": "no file here"}, default_to_multipart=True))
            assert error(50007, 403)((status, body))
            assert await stored_users(gateway) == []
    run(scenario)


def test_a_file_over_max_body_but_within_max_upload_is_read(tmp_path):
    """A users file has its own limit: the API's body limit (here 4 KiB) does not cut it."""
    async def scenario():
        async with stack(tmp_path, api="max_body = 4096") as (api, gateway, sim):
            rows = b"userid,phone\n" + b"".join(b"u%d,13800138000\n" % i for i in range(1000))
            assert len(rows) > 4096
            for answer in (await upload_file(api, rows, "text/csv"),
                           await upload_form(api, rows, "users.csv")):
                assert answer[0] == 200 and answer[1]["success_count"] == 1000, answer
    run(scenario)


def test_a_file_over_50000_users_is_refused_whole(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            rows = b"userid,phone\n" + b"".join(b"u%d,13800138000\n" % i for i in range(50_001))
            answer = await upload_file(api, rows, "text/csv")
            assert error(50206, 403)(answer) and "50000" in answer[1]["error"]["detail"]
            assert await stored_users(gateway) == []
            saves, save_users = [], gateway.store.save_users
            gateway.store.save_users = lambda app, users, *rest: \
                saves.append(len(users)) or save_users(app, users, *rest)
            status, body = await upload_file(api, rows[:rows.index(b"u50000,")], "text/csv")
            assert (status, body["success_count"], body["refused"]) == (200, 50_000, [])
            # In chunks, each its own operation, so that sends are not held back meanwhile.
            assert sum(saves) == 50_000 and max(saves) <= 5000
    run(scenario, timeout=120)


# ----------------------------------------------------------------------------- isolation

def test_one_app_never_reads_or_sends_to_another_apps_users(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            mine = [{"userid": "zhangsan", "phone": {"default": "13800138000"}}]
            assert (await api.call("POST", "/v1/users", mine))[0] == 200
            assert error(50203, 403)(await user(api, "zhangsan", auth=OTHER))
            assert error(50203, 403)(await api.call("DELETE", "/v1/users/zhangsan", auth=OTHER))
            send = {"userid": "zhangsan", "temp_id": 1, "temp_para": {"order": "1"}}
            assert error(50203, 403)(await api.call("POST", "/v1/messages", send, auth=OTHER))
            theirs = [{"userid": "zhangsan", "phone": {"default": "13900139000"}}]
            assert (await api.call("POST", "/v1/users", theirs, auth=OTHER))[0] == 200
            assert (await user(api, "zhangsan"))[1]["phone"] == {"default": "13800138000"}
            assert (await user(api, "zhangsan", auth=OTHER))[1]["phone"] == \
                {"default": "13900139000"}
            assert (await api.call("POST", "/v1/messages", send, auth=OTHER))[0] == 200
            await eventually(lambda: sent(sim) == [("10690001", "13900139000")])
    run(scenario)


# ----------------------------------------------------------------------------- sending

USERS = [{"userid": "both", "phone": {"cmcc": "13800138001", "unicom": "13800138002",
                                      "default": "13800138003"}},
         {"userid": "default-only", "phone": {"default": "13800138004"}},
         {"userid": "unicom-only", "phone": {"unicom": "13800138005"}}]


def test_a_send_to_a_userid_goes_to_the_number_bound_to_its_channel_else_the_default(
        tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert (await api.call("POST", "/v1/users", USERS))[1]["failure_count"] == 0

            async def one(userid, temp_id=1, **para):
                body = {"userid": userid, "temp_id": temp_id,
                        "temp_para": para or {"order": userid}}
                return await api.call("POST", "/v1/messages", body)
            assert (await one("both"))[0] == 200                          # cmcc: its binding
            assert (await one("both", 5, n="1"))[0] == 200                # unicom: its binding
            assert (await one("default-only"))[0] == 200                  # cmcc: the default
            assert (await one("unicom-only", 5, n="2"))[0] == 200
            assert error(50204, 403)(await one("unicom-only"))           # no cmcc, no default
            assert error(50203, 403)(await one("nobody"))
            both = {"userid": "both", "mobile": "13800138000", "temp_id": 1,
                    "temp_para": {"order": "x"}}
            assert error(50007, 403)(await api.call("POST", "/v1/messages", both))
            await eventually(lambda: len(sim.submits) == 4)
            assert sorted(sent(sim)) == [("10690001", "13800138001"), ("10690001", "13800138004"),
                                         ("10690002", "13800138002"), ("10690002", "13800138005")]
            assert sum((await gateway.store.status_counts()).values()) == 4

            batch = {"temp_id": 1, "recipients": [
                {"userid": "both", "temp_para": {"order": "b1"}},
                {"userid": "default-only", "temp_para": {"order": "b2"}},
                {"userid": "unicom-only", "temp_para": {"order": "b3"}},
                {"mobile": "13900139000", "temp_para": {"order": "b4"}},
                {"userid": "nobody", "temp_para": {"order": "b5"}}]}
            status, body, _ = await api.call("POST", "/v1/messages/batch", batch)
            assert (status, body["success_count"], body["failure_count"]) == (200, 3, 2)
            first, second, no_number, by_mobile, unknown = body["recipients"]
            assert set(first) == {"msg_id", "userid"} and first["userid"] == "both"
            assert by_mobile["mobile"] == "13900139000"
            assert (no_number["error_code"], no_number["userid"]) == ("50204", "unicom-only")
            assert no_number["temp_para"] == {"order": "b3"}
            assert unknown["error_code"] == "50203"
            await eventually(lambda: len(sim.submits) == 7)
            assert sorted(sent(sim)[4:]) == [("10690001", "13800138001"),
                                             ("10690001", "13800138004"),
                                             ("10690001", "13900139000")]
            view = (await api.call("GET", f"/v1/messages/{second['msg_id']}"))[1]
            assert view["mobile"] == "13800138004" and view["channel"] == "cmcc"

            for userid, expected in (("both", "13800138001"), ("default-only", "13800138004")):
                code = {"userid": userid, "temp_id": 2}
                status, body, _ = await api.call("POST", "/v1/codes", code)
                assert status == 200, body
                await eventually(lambda: sent(sim)[-1] == ("10690001", expected))
            assert error(50204, 403)(await api.call("POST", "/v1/codes",
                                                    {"userid": "unicom-only", "temp_id": 2}))
    run(scenario)
    numbers = [n for u in USERS for n in u["phone"].values()]
    assert not [r for r in caplog.records if any(n in r.getMessage() for n in numbers)]


def test_a_td_unsubscribes_the_number_whoever_it_is_bound_to(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            users = [{"userid": "a", "phone": {"cmcc": "13800138000"}},
                     {"userid": "b", "phone": {"default": "13800138000"}},
                     {"userid": "c", "phone": {"cmcc": "13900139000"}}]
            assert (await api.call("POST", "/v1/users", users))[1]["failure_count"] == 0
            sim.send_mo("900001", "8613800138000", "10690001", "TD")
            await eventually(lambda: "13800138000" in gateway.api.rules.unsubscribed)
            for userid in ("a", "b"):
                assert error(50024, 403)(await api.call("POST", "/v1/messages",
                                                        {"userid": userid, "temp_id": 3}))
            batch = {"temp_id": 3, "recipients": [{"userid": "a"}, {"userid": "c"}]}
            status, body, _ = await api.call("POST", "/v1/messages/batch", batch)
            assert [r.get("error_code") for r in body["recipients"]] == ["50024", None]
            notice = {"userid": "a", "temp_id": 1, "temp_para": {"order": "1"}}
            assert (await api.call("POST", "/v1/messages", notice))[0] == 200   # not marketing
    run(scenario)
