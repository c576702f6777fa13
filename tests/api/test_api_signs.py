"""Signatures and templates over real HTTP, reviewed by the command line while the gateway
runs (tests.api_stack)."""

from __future__ import annotations

import pytest

from gateway.api import templates_signs
from gateway.api.registry import FIRST_API_TEMPLATE
from gateway.cli.review import review
from tests.aio import eventually, run
from tests.api_stack import (
    JPEG,
    OTHER,
    PNG,
    TINY_GIF,
    assert_in_step,
    error,
    form,
    new_sign,
    new_template,
    nothing_stored,
    operator,
    stack,
    status_becomes,
    stored_images,
    write_config,
)

pytestmark = pytest.mark.usefixtures("api_store")


@pytest.fixture(autouse=True)
def quick_reviews(monkeypatch):
    """The gateway re-reads review statuses every 50 ms instead of every 2 s."""
    monkeypatch.setattr(templates_signs, "REVIEW_POLL", 0.05)


# ----------------------------------------------------------------------------- signatures

def test_a_signature_waits_for_review_until_the_operator_approves_it(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送", ("image0", PNG), ("image1", JPEG),
                                     ("image2", TINY_GIF))
            path = f"/v1/sign/{sign_id}"
            assert (await s.api.call("GET", path))[:2] == \
                (200, {"sign_id": sign_id, "sign": "极光推送", "status": 0, "use_status": 0})
            assert await stored_images(s) == [(sign_id, 0, "image/png", PNG),
                                        (sign_id, 1, "image/jpeg", JPEG),
                                        (sign_id, 2, "image/gif", TINY_GIF)]
            assert await operator(s, "sign", sign_id, "approve") == 0
            assert (await status_becomes(s.api, path, 1))["sign"] == "极光推送"
            await assert_in_step(s.gateway)
    run(scenario)


def test_the_operator_command_says_what_it_did(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            temp_id = await new_template(s.api, {"type": 2, "template": "通知{{order}}"})
            assert await operator(s, "sign", sign_id, "reject") == 0
            assert await operator(s, "template", temp_id, "approve") == 0
            out = capsys.readouterr().out
            assert f"signature {sign_id} '极光推送' of app shop: refused (was waiting for " \
                   "review)" in out
            assert f"template {temp_id} (notification) of app shop: approved (was waiting " \
                   "for review)" in out
            await status_becomes(s.api, f"/v1/sign/{sign_id}", 2)
            await status_becomes(s.api, f"/v1/templates/{temp_id}", 1)
    run(scenario)


def test_reviewing_an_id_that_is_not_in_the_store_exits_1(tmp_path, capsys):
    async def scenario():
        async with stack(tmp_path) as s:
            assert await operator(s, "sign", 999, "approve") == 1
            assert "no signature 999 in the store" in capsys.readouterr().out
            assert await operator(s, "template", 1, "reject") == 1    # a configured one
            out = capsys.readouterr().out
            assert "no template 1 in the store" in out and "configuration" in out
            assert (await s.api.call("GET", "/v1/templates/1"))[1]["status"] == 1
    run(scenario)


def test_reviewing_without_a_store_or_a_valid_configuration_fails(tmp_path, capsys):
    missing = write_config(tmp_path / "missing.toml", tmp_path / "none.sqlite", 7890)
    assert review(str(missing), "sign", 1, "approve") == 1
    assert "no store at" in capsys.readouterr().out
    assert not (tmp_path / "none.sqlite").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n", encoding="utf-8")
    assert review(str(broken), "template", 1, "approve") == 2


def test_a_modified_signature_goes_back_to_review_by_put_or_post(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送", ("image0", PNG), ("image1", PNG))
            assert await operator(s, "sign", sign_id, "reject") == 0
            await status_becomes(s.api, f"/v1/sign/{sign_id}", 2)
            put = await s.api.call("PUT", f"/v1/sign/{sign_id}",
                                   data=form(("sign", "极光短信"), ("image0", JPEG)))
            assert put[:2] == (200, {"sign_id": sign_id})
            assert (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1] == \
                {"sign_id": sign_id, "sign": "极光短信", "status": 0, "use_status": 0}
            assert await stored_images(s) == [(sign_id, 0, "image/jpeg", JPEG)]   # replaced
            post = await s.api.call("POST", f"/v1/sign/{sign_id}", data=form(("sign", "JPush")))
            assert post[:2] == (200, {"sign_id": sign_id})
            assert (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1]["sign"] == "JPush"
            assert await stored_images(s) == [(sign_id, 0, "image/jpeg", JPEG)]   # kept
            await assert_in_step(s.gateway)
    run(scenario)


def test_a_signature_auto_approved_signs_at_once(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="auto_approve_signatures = true") as s:
            sign_id = await new_sign(s.api, "极光推送")
            assert (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1]["status"] == 1
            temp_id = await new_template(s.api, {"type": 2, "template": "您的取件码{{number}}",
                                                 "sign_id": sign_id})
            assert (await s.api.call("GET", f"/v1/templates/{temp_id}"))[1]["status"] == 1
            status, body, _ = await s.api.call("POST", "/v1/messages", {
                "mobile": "13800138000", "temp_id": temp_id, "temp_para": {"number": "741627"}})
            assert status == 200
            await eventually(lambda: s.sim.submits)
            assert s.sim.submits[0].submit.msg_content.decode("utf-16-be") == \
                "【极光推送】您的取件码741627"
            assert await new_sign(s.api, "JPush") > sign_id          # none waits: no 50103
            assert error(50104, 403)(await s.api.call("POST", "/v1/sign",
                                                      data=form(("sign", "极光推送"))))
    run(scenario)


def test_a_template_is_signed_only_once_its_signature_is_approved(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            temp_id = await new_template(s.api, {"type": "notification", "sign_id": sign_id,
                                                 "template": "您的订单{{order}}已发货"})
            send = {"mobile": "13800138000", "temp_id": temp_id, "temp_para": {"order": "A1"}}
            assert error(50020, 403)(await s.api.call("POST", "/v1/messages", send))
            assert await operator(s, "template", temp_id, "approve") == 0
            await status_becomes(s.api, f"/v1/templates/{temp_id}", 1)
            status, body, _ = await s.api.call("POST", "/v1/messages", send)
            assert error(50020, 403)((status, body)) and "signature" in body["error"]["detail"]
            assert sum((await s.gateway.store.status_counts()).values()) == 0
            assert await operator(s, "sign", sign_id, "approve") == 0
            await status_becomes(s.api, f"/v1/sign/{sign_id}", 1)
            assert (await s.api.call("POST", "/v1/messages", send))[0] == 200
            await eventually(lambda: s.sim.submits)
            assert s.sim.submits[0].submit.msg_content.decode("utf-16-be") == \
                "【极光推送】您的订单A1已发货"
    run(scenario)


def test_another_signature_cannot_be_submitted_while_one_waits(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            first = await new_sign(s.api, "极光推送")
            refused = await s.api.call("POST", "/v1/sign", data=form(("sign", "JPush")))
            assert error(50103, 403)(refused) and str(first) in refused[1]["error"]["detail"]
            assert [row["id"] for row in await s.gateway.store.signatures()] == [first]
            assert (await s.api.call("PUT", f"/v1/sign/{first}",
                                     data=form(("sign", "极光短信"))))[0] == 200   # itself
            assert await operator(s, "sign", first, "approve") == 0
            await status_becomes(s.api, f"/v1/sign/{first}", 1)
            second = await new_sign(s.api, "JPush")
            assert error(50103, 403)(await s.api.call("PUT", f"/v1/sign/{first}",
                                                      data=form(("sign", "极光"))))
            assert (await s.api.call("GET", f"/v1/sign/{first}"))[1]["sign"] == "极光短信"
            assert second != first
    run(scenario)


def test_a_signature_in_use_cannot_be_deleted_or_renamed(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送", ("image0", PNG))
            temp_id = await new_template(s.api, {"type": 3, "template": "周末特惠",
                                                 "sign_id": sign_id})
            path = f"/v1/sign/{sign_id}"
            assert (await s.api.call("GET", path))[1]["use_status"] == 1
            assert error(50105, 403)(await s.api.call("DELETE", path))
            assert error(50105, 403)(await s.api.call("PUT", path, data=form(("sign", "JPush"))))
            same = await s.api.call("PUT", path, data=form(("sign", "极光推送"), ("image0", JPEG)))
            assert same[0] == 200 and await stored_images(s) == [(sign_id, 0, "image/jpeg", JPEG)]
            assert (await s.api.call("DELETE", f"/v1/templates/{temp_id}"))[0] == 200
            assert (await s.api.call("GET", path))[1]["use_status"] == 0
            status, body, headers = await s.api.call("DELETE", path)
            assert (status, body, headers["Content-Length"]) == (200, None, "0")
            assert headers["Content-Type"].startswith("application/json")
            assert error(50102, 403)(await s.api.call("GET", path))
            assert await nothing_stored(s)
            assert await new_sign(s.api, "极光推送") == sign_id + 1   # the id is not reused
    run(scenario)


XYZ_FORM = {"Content-Type": "multipart/form-data; boundary=xyz"}
PART_SIGN = 'Content-Disposition: form-data; name="sign"\r\n\r\n极光\r\n--xyz--\r\n'.encode()
BAD_FORMS = [
    ("json", dict(body={"sign": "极光推送"}), 50017, 415),
    ("urlencoded", dict(data={"sign": "极光推送"}), 50017, 415),
    ("no body", dict(data=b"", headers=XYZ_FORM), 50003, 400),
    ("no fields", dict(data=b"--xyz--\r\n", headers=XYZ_FORM), 50003, 400),
    ("malformed", dict(data=b"garbage\r\n", headers=XYZ_FORM), 50007, 403),
    ("no boundary", dict(data=b"--xyz--\r\n", headers={"Content-Type": "multipart/form-data"}),
     50007, 403),
    ("too many part headers", dict(data=b"--xyz\r\n" + b"X-Note: a\r\n" * 200 + PART_SIGN,
                                   headers=XYZ_FORM), 50007, 403),
    ("no sign", dict(fields=[("image0", PNG)]), 50104, 403),
    ("empty sign", dict(fields=[("sign", "")]), 50104, 403),
    ("one character", dict(fields=[("sign", "极")]), 50104, 403),
    ("nine characters", dict(fields=[("sign", "极光推送极光推送极")]), 50104, 403),
    ("brackets", dict(fields=[("sign", "【极光】")]), 50104, 403),
    ("a space", dict(fields=[("sign", "极光 推送")]), 50104, 403),
    ("punctuation", dict(fields=[("sign", "极光!")]), 50104, 403),
    ("a long field", dict(fields=[("sign", "极" * 200)]), 50104, 403),
    ("the app's configured signature", dict(fields=[("sign", "商城")]), 50104, 403),
    ("a configured template's signature", dict(fields=[("sign", "官方")]), 50104, 403),
    ("not an image", dict(fields=[("sign", "极光"), ("image0", b"hello, world")]), 50101, 403),
    ("an image over 2 MiB", dict(fields=[("sign", "极光"), ("image1", PNG + bytes(2 << 20))]),
     50101, 403),
    ("a fifth image", dict(fields=[("sign", "极光"), ("image4", PNG)]), 50101, 403),
    ("an unknown field", dict(fields=[("sign", "极光"), ("note", "x")]), 50007, 403),
    ("type 0", dict(fields=[("sign", "极光"), ("type", "0")]), 50007, 403),
    ("type 8", dict(fields=[("sign", "极光"), ("type", "8")]), 50007, 403),
    ("type a word", dict(fields=[("sign", "极光"), ("type", "app")]), 50007, 403),
    ("remark over 100", dict(fields=[("sign", "极光"), ("remark", "说" * 101)]), 50007, 403),
    ("type twice", dict(fields=[("sign", "极光"), ("type", "1"), ("type", "2")]), 50007, 403),
    ("five images", dict(fields=[("sign", "极光"), *[("images", PNG)] * 5]), 50101, 403),
    ("sign twice", dict(fields=[("sign", "极光"), ("sign", "推送")]), 50007, 403),
    ("an image twice", dict(fields=[("sign", "极光"), ("image0", PNG), ("image0", PNG)]),
     50007, 403),
]


@pytest.mark.parametrize("name,request_,code,status", BAD_FORMS, ids=[f[0] for f in BAD_FORMS])
def test_bad_signature_forms_get_their_code_and_store_nothing(tmp_path, name, request_, code,
                                                              status):
    async def scenario():
        async with stack(tmp_path) as s:
            kwargs = dict(request_)
            if "fields" in kwargs:
                kwargs["data"] = form(*kwargs.pop("fields"))
            assert error(code, status)(await s.api.call("POST", "/v1/sign", **kwargs))
            assert await nothing_stored(s)
    run(scenario)


def test_type_and_remark_as_the_official_clients_send_them_are_kept_and_read(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            remark = "用于订单通知" * 16 + "四个字符"                        # 100 characters
            sign_id = await new_sign(s.api, "极光推送", ("type", "3"), ("remark", remark))
            status, body, _ = await s.api.call("GET", f"/v1/sign/{sign_id}")
            assert (status, body["type"], body["remark"]) == (200, 3, remark)
            # A modification without them keeps them; with them, replaces them.
            assert (await s.api.call("PUT", f"/v1/sign/{sign_id}",
                                     data=form(("sign", "极光推送"))))[0] == 200
            assert (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1]["type"] == 3
            assert (await s.api.call("POST", f"/v1/sign/{sign_id}",
                                     data=form(("sign", "极光推送"), ("type", "7"),
                                               ("remark", "其他"))))[0] == 200
            body = (await s.api.call("GET", f"/v1/sign/{sign_id}"))[1]
            assert (body["type"], body["remark"]) == (7, "其他")
            assert [(r["type"], r["remark"]) for r in await s.gateway.store.signatures()] == \
                [(7, "其他")]
            await assert_in_step(s.gateway)
    run(scenario)


def test_the_java_clients_images_fields_take_the_next_free_slots(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送", ("type", "1"), ("remark", "null"),
                                     ("images", PNG), ("images", JPEG))
            assert await stored_images(s) == [(sign_id, 0, "image/png", PNG),
                                        (sign_id, 1, "image/jpeg", JPEG)]
    run(scenario)


def test_an_empty_image_field_is_ignored(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送", ("image0", PNG), ("image3", b""))
            assert await stored_images(s) == [(sign_id, 0, "image/png", PNG)]
    run(scenario)


def test_signature_ids_that_are_not_the_apps_are_50102(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            theirs = await new_sign(s.api, "别家", auth=OTHER)
            for path in (f"/v1/sign/{theirs}", "/v1/sign/999", "/v1/sign/abc", "/v1/sign/-1"):
                assert error(50102, 403)(await s.api.call("GET", path))
                assert error(50102, 403)(await s.api.call("DELETE", path))
                for method in ("PUT", "POST"):
                    assert error(50102, 403)(await s.api.call(method, path,
                                                              data=form(("sign", "极光"))))
            assert error(50102, 403)(await s.api.call("POST", "/v1/templates", {
                "type": 2, "template": "通知", "sign_id": theirs}))
            assert (await s.api.call("GET", f"/v1/sign/{theirs}", auth=OTHER))[1] == \
                {"sign_id": theirs, "sign": "别家", "status": 0, "use_status": 0}
            assert await new_sign(s.api, "别家") != theirs     # the text is per app
            await assert_in_step(s.gateway)
    run(scenario)


# ----------------------------------------------------------------------------- templates

def test_templates_are_created_read_modified_and_deleted(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            notice = await new_template(s.api, {"type": 2, "template": "您的订单{{order}}已发货",
                                                "sign_id": sign_id})
            code = await new_template(s.api, {"type": "code", "code_length": 4, "ttl": 120,
                                              "template": "验证码{{code}}，{{ttl}}分钟内有效"})
            marketing = await new_template(s.api, {"type": 3, "template": "周末特惠，回TD退订"})
            assert (notice, code, marketing) == (FIRST_API_TEMPLATE, FIRST_API_TEMPLATE + 1,
                                                 FIRST_API_TEMPLATE + 2)
            assert (await s.api.call("GET", f"/v1/templates/{notice}"))[:2] == (200, {
                "temp_id": notice, "type": 2, "template": "您的订单{{order}}已发货",
                "sign_id": sign_id, "sign": "极光推送", "status": 0, "from_config": False})
            assert (await s.api.call("GET", f"/v1/templates/{code}"))[1] == {
                "temp_id": code, "type": 1, "template": "验证码{{code}}，{{ttl}}分钟内有效",
                "sign_id": None, "sign": "商城", "status": 0, "from_config": False,
                "code_length": 4, "ttl": 120}
            assert await operator(s, "template", notice, "approve") == 0
            await status_becomes(s.api, f"/v1/templates/{notice}", 1)
            put = await s.api.call("PUT", f"/v1/templates/{notice}",
                                   {"type": "notification", "template": "订单{{order}}已签收"})
            assert put[:2] == (200, {"temp_id": notice})
            view = (await s.api.call("GET", f"/v1/templates/{notice}"))[1]
            assert (view["template"], view["sign_id"], view["status"]) == \
                ("订单{{order}}已签收", None, 0)
            status, body, headers = await s.api.call("DELETE", f"/v1/templates/{marketing}")
            assert (status, body, headers["Content-Length"]) == (200, None, "0")
            assert error(50013, 403)(await s.api.call("GET", f"/v1/templates/{marketing}"))
            again = await new_template(s.api, {"type": 3, "template": "周末特惠，回TD退订"})
            assert again == marketing + 1             # a deleted id never names another
            await assert_in_step(s.gateway)
    run(scenario)


def test_an_api_code_template_sends_codes_of_its_length(tmp_path):
    async def scenario():
        async with stack(tmp_path, api="auto_approve_signatures = true") as s:
            temp_id = await new_template(s.api, {"type": 1, "template": "验证码{{code}}",
                                                 "code_length": 4})
            status, body, _ = await s.api.call("POST", "/v1/codes",
                                               {"mobile": "13800138000", "temp_id": temp_id})
            assert status == 200
            await eventually(lambda: s.sim.submits)
            text = s.sim.submits[0].submit.msg_content.decode("utf-16-be")
            assert text.startswith("【商城】验证码") and len(text.removeprefix("【商城】验证码")) == 4
            assert error(50025, 403)(await s.api.call("POST", "/v1/messages",
                                                      {"mobile": "13800138000",
                                                       "temp_id": temp_id}))
    run(scenario)


def test_a_template_rejected_by_the_operator_answers_50021(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            temp_id = await new_template(s.api, {"type": 2, "template": "通知{{order}}"})
            send = {"mobile": "13800138000", "temp_id": temp_id, "temp_para": {"order": "1"}}
            assert error(50020, 403)(await s.api.call("POST", "/v1/messages", send))
            assert await operator(s, "template", temp_id, "reject") == 0
            await status_becomes(s.api, f"/v1/templates/{temp_id}", 2)
            assert error(50021, 403)(await s.api.call("POST", "/v1/messages", send))
    run(scenario)


def test_configured_templates_can_be_read_but_not_changed(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            assert (await s.api.call("GET", "/v1/templates/4"))[1] == {
                "temp_id": 4, "type": 2, "template": "活动通知", "sign_id": None, "sign": "官方",
                "status": 1, "from_config": True}
            body = {"type": 2, "template": "改"}
            assert error(50013, 403)(await s.api.call("PUT", "/v1/templates/1", body))
            assert error(50013, 403)(await s.api.call("DELETE", "/v1/templates/1"))
            assert error(50013, 403)(await s.api.call("GET", "/v1/templates/3"))   # other's
            assert (await s.api.call("GET", "/v1/templates/3", auth=OTHER))[0] == 200
            assert await nothing_stored(s)
    run(scenario)


def test_template_ids_that_are_not_the_apps_are_50013(tmp_path):
    async def scenario():
        async with stack(tmp_path) as s:
            theirs = await new_template(s.api, {"type": 2, "template": "别家通知"}, auth=OTHER)
            body = {"type": 2, "template": "改"}
            for path in (f"/v1/templates/{theirs}", "/v1/templates/9999", "/v1/templates/x1"):
                assert error(50013, 403)(await s.api.call("GET", path))
                assert error(50013, 403)(await s.api.call("PUT", path, body))
                assert error(50013, 403)(await s.api.call("DELETE", path))
            assert error(50013, 403)(await s.api.call("POST", "/v1/messages",
                                                      {"mobile": "13800138000",
                                                       "temp_id": theirs}))
            assert (await s.api.call("GET", f"/v1/templates/{theirs}", auth=OTHER))[1][
                "template"] == "别家通知"
            await assert_in_step(s.gateway)
    run(scenario)


BAD_TEMPLATES = [
    ("no type", {"template": "通知"}, 50025),
    ("type 4", {"type": 4, "template": "通知"}, 50025),
    ("type true", {"type": True, "template": "通知"}, 50025),
    ("type sms", {"type": "sms", "template": "通知"}, 50025),
    ("no template", {"type": 2}, 50007),
    ("blank template", {"type": 2, "template": "  "}, 50007),
    ("template not text", {"type": 2, "template": 5}, 50007),
    ("template too long", {"type": 2, "template": "长" * 501}, 50007),
    ("signature in the text", {"type": 2, "template": "【极光】通知"}, 50007),
    ("code without {{code}}", {"type": 1, "template": "验证码"}, 50007),
    ("code with another parameter", {"type": 1, "template": "{{code}}{{name}}"}, 50007),
    ("unknown field", {"type": 2, "template": "通知", "channel": "cmcc"}, 50007),
    ("code_length 3", {"type": 1, "template": "{{code}}", "code_length": 3}, 50038),
    ("code_length text", {"type": 1, "template": "{{code}}", "code_length": "6"}, 50038),
    ("negative ttl", {"type": 1, "template": "{{code}}", "ttl": -1}, 50041),
    ("ttl over a day", {"type": 1, "template": "{{code}}", "ttl": 86401}, 50041),
    ("ttl for a notification", {"type": 2, "template": "通知", "ttl": 60}, 50007),
    ("unknown sign_id", {"type": 2, "template": "通知", "sign_id": 77}, 50102),
    ("sign_id not a number", {"type": 2, "template": "通知", "sign_id": [1]}, 50102),
    ("sensitive word", {"type": 3, "template": "赌博优惠"}, 50037),
]


@pytest.mark.parametrize("name,body,code", BAD_TEMPLATES, ids=[t[0] for t in BAD_TEMPLATES])
def test_bad_templates_get_their_code_and_store_nothing(tmp_path, name, body, code):
    async def scenario():
        async with stack(tmp_path) as s:
            assert error(code, 403)(await s.api.call("POST", "/v1/templates", body))
            assert await nothing_stored(s)
    run(scenario)


BAD_BODIES = [
    ("empty", dict(data=b"", headers={"Content-Type": "application/json"}), 50003, 400),
    ("not json", dict(data=b"{type", headers={"Content-Type": "application/json"}), 50007, 403),
    ("a list", dict(body=[1]), 50007, 403),
    ("text", dict(data=b"type=2", headers={"Content-Type": "text/plain"}), 50017, 415),
]


@pytest.mark.parametrize("name,kwargs,code,status", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_template_bodies_are_refused_on_create_and_modify(tmp_path, name, kwargs, code,
                                                              status):
    async def scenario():
        async with stack(tmp_path) as s:
            assert error(code, status)(await s.api.call("POST", "/v1/templates", **kwargs))
            assert await nothing_stored(s)
            temp_id = await new_template(s.api, {"type": 2, "template": "通知"})
            assert error(code, status)(await s.api.call("PUT", f"/v1/templates/{temp_id}",
                                                        **kwargs))
            assert (await s.api.call("GET", f"/v1/templates/{temp_id}"))[1]["template"] == "通知"
    run(scenario)


def test_a_review_by_the_operator_reaches_every_app_view(tmp_path):
    """The daemon's registry follows the store: after the operator's change it holds what the
    store holds, without any API call in between."""
    async def scenario():
        async with stack(tmp_path) as s:
            sign_id = await new_sign(s.api, "极光推送")
            temp_id = await new_template(s.api, {"type": 2, "template": "通知",
                                                 "sign_id": sign_id})
            assert await operator(s, "sign", sign_id, "approve") == 0
            assert await operator(s, "template", temp_id, "approve") == 0
            registry = s.gateway.api.registry
            await eventually(lambda: registry.signatures[sign_id].status == 1 and
                             registry.templates[temp_id].status == 1)
            await assert_in_step(s.gateway)
    run(scenario)
