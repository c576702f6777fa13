"""The console's pieces on their own: passwords, signed values, the login limiter's bounded
memory, the per-minute samples, the SVG charts, the handset preview and the app form."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from multidict import MultiDict

from gateway.config import APP_SETTINGS, BOOLEAN
from gateway.console import auth, charts
from gateway.console.context import ShownOnce
from gateway.console.forms import app_fields, changed, read_app_form
from gateway.console.handset import preview, signed
from gateway.console.rates import Rates
from gateway.console.sessions import Operator
from gateway.config.file import ChannelConfig

SVG = "{http://www.w3.org/2000/svg}"


def test_a_password_is_kept_as_a_salted_scrypt_record():
    record = auth.hash_password("correct horse battery")
    scheme, n, r, p, salt, digest = record.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1") and len(bytes.fromhex(salt)) == 16
    assert "correct" not in record and record != auth.hash_password("correct horse battery")
    assert auth.check_password("correct horse battery", record)
    assert not auth.check_password("correct horse batterY", record)
    for broken in ("", "plain", "md5$1$2$3$00$00", "scrypt$x$8$1$00$00"):
        assert not auth.check_password("anything", broken)
    assert not auth.check_password("x" * (auth.MAX_PASSWORD + 1), record)
    assert auth.password_problem("short") and auth.password_problem("long enough") is None


def test_signed_values_are_refused_when_changed_or_signed_for_another_purpose():
    signer, other = auth.Signer(b"k" * 32), auth.Signer(b"j" * 32)
    signed_value = signer.sign("session", "token123")
    assert signer.unsign("session", signed_value) == "token123"
    for bad in (signed_value.replace("token123", "token124"), signed_value + "x",
                "token123", "", None, other.sign("session", "token123"),
                signer.sign("login", "token123")):
        assert signer.unsign("session", bad) is None, bad


def test_the_failure_counter_forgets_old_failures_and_the_quietest_keys():
    counter = auth.FailureCounter(limit=2, window=100.0, keys=3)
    counter.fail("a", 0.0)
    assert counter.wait("a", 1.0) == 0
    counter.fail("a", 10.0)
    assert counter.wait("a", 11.0) == 89.0                     # until the first leaves
    assert counter.wait("a", 100.0) == 0                      # the first one left the window
    for key in "bcd":
        counter.fail(key, 20.0)
    assert len(counter) == 3 and counter.wait("a", 11.0) == 0  # "a" was the quietest: gone
    limiter = auth.LoginLimiter(per_account=1, per_source=2)
    limiter.failed("10.0.0.1", None, 0.0)                    # unknown names: the source only
    assert limiter.wait("10.0.0.2", "alice", 1.0) == 0 and len(limiter.accounts) == 0
    limiter.failed("10.0.0.1", "alice", 1.0)
    assert limiter.wait("10.0.0.9", "alice", 2.0) > 0         # the account, from anywhere
    assert limiter.wait("10.0.0.1", "bob", 2.0) > 0           # the source, for any account
    limiter.succeeded("alice")
    assert limiter.wait("10.0.0.9", "alice", 2.0) == 0


def test_a_secret_is_shown_once_to_its_session_within_ten_minutes():
    now = [0.0]
    box = ShownOnce(lambda: now[0])
    alice, other = Operator("alice", "admin", "t1"), Operator("alice", "admin", "t2")
    box.put(alice, "key", "s3cret")
    assert box.take(other, "key") is None and box.take(alice, "other") is None
    assert box.take(alice, "key") == "s3cret" and box.take(alice, "key") is None
    box.put(alice, "key", "s3cret")
    now[0] = 601.0
    assert box.take(alice, "key") is None
    for i in range(300):
        box.put(Operator("a", "admin", f"t{i}"), "key", "x")
    assert len(box._waiting) == 256


def test_rates_give_per_minute_figures_and_the_mix_over_a_window():
    now = [0.0]
    totals = {"submits": {("cmcc", "0"): 0.0}, "receipts": {}, "messages": {},
              "callbacks": {}}
    rates = Rates(lambda: {k: dict(v) for k, v in totals.items()}, lambda: now[0], keep=3)
    rates.sample()
    for minute in (1, 2, 3):
        now[0] = minute * 60.0
        totals["submits"][("cmcc", "0")] += 10 * minute
        totals["receipts"][("cmcc", "default", "delivered")] = 5.0 * minute
        totals["messages"][("cmcc", "delivered")] = 4.0 * minute
        rates.sample()
    now[0] = 200.0
    totals["submits"][("cmcc", "8")] = 2.0
    assert len(rates.samples) == 3                           # bounded
    assert rates.per_minute(60) == [(120.0, 20.0, 5.0, False), (180.0, 30.0, 5.0, False),
                                    (200.0, 2.0, 0.0, True)]
    since, counts = rates.over(60)
    assert since == 120.0 and counts.finals == {("cmcc", "delivered"): 4.0}
    since, counts = rates.over(3600)                          # not that long: the oldest
    assert since == 60.0 and counts.submits == {"cmcc": 52.0}


def test_charts_are_svg_with_a_title_and_a_description_in_words():
    bars = ET.fromstring(str(charts.bars("Per minute", [(0.0, 3, False), (60.0, 7, True)],
                                         "reports")))
    assert bars.get("role") == "img"
    assert bars.find(f"{SVG}title").text == "Per minute"
    assert bars.find(f"{SVG}desc").text == "2 minutes, 10 reports in all, at most 7 in a minute"
    rects = bars.findall(f"{SVG}rect")
    assert [r.get("class") for r in rects] == ["bar", "bar partial"]
    assert float(rects[1].get("height")) == pytest.approx(7 / 10 * 120)    # top: 10
    slot = (600 - 45) / 60                                   # 60 places, the newest right
    assert float(rects[1].get("x")) == pytest.approx(40 + 59 * slot + slot * 0.1, abs=0.05)
    mix = ET.fromstring(str(charts.stacked("Mix", [("cmcc<x>", {"delivered": 3, "expired": 1})],
                                           ["delivered", "expired", "unknown"])))
    assert mix.find(f"{SVG}desc").text == "cmcc<x>: 3 delivered, 1 expired"
    widths = [float(r.get("width")) for r in mix.findall(f"{SVG}rect")]
    assert widths[0] == pytest.approx(3 * widths[1])
    assert [charts.nice_top(v) for v in (0, 1, 3, 7, 11, 230)] == [1, 1, 5, 10, 20, 500]


def channel(**fields) -> ChannelConfig:
    values = dict(name="cmcc", provider="p", host="h", port=1, account="900001", password="x",
                  password_env=None, access_number="10690001", connections=1, window=16,
                  tps=0, service_id="", msg_src="", heartbeat_interval=1, response_timeout=1,
                  max_sends=1, max_parts=10, connect_timeout=1, on_connection_lost="resend",
                  verify_authenticator="warn")
    values.update(fields)
    return ChannelConfig(**values)


def test_the_handset_shows_the_signature_and_counts_parts_as_the_dispatcher_splits():
    short = preview(signed("商城", "您的验证码是{{code}}"), channel())
    assert (short.sender, short.text, short.parts) == \
        ("10690001", "【商城】您的验证码是{{code}}", 1)
    assert short.characters == len("【商城】您的验证码是000000")
    assert "<mark>{{code}}</mark>" in short.marked
    assert preview("字" * 70, channel()).parts == 1 and preview("字" * 71, channel()).parts == 2
    assert preview("字" * 70, channel(center_signature="【中心】")).parts == 2   # its room
    too_long = preview("字" * 700, channel(max_parts=3))
    assert (too_long.parts, too_long.error) == (0, "text needs 11 segments, at most 3 allowed")
    assert "<b>" not in preview("<b>x</b>", None).marked


def test_the_app_form_is_drawn_from_the_configurations_fields_and_read_back():
    fields = app_fields({"whitelist": ["10.0.0.1", "10.0.0.2"], "enabled": False},
                        {"whitelist": "too many"}, ["cmcc", "ctcc"])
    assert [f.name for f in fields] == [f.name for f in APP_SETTINGS]
    by_name = {f.name: f for f in fields}
    assert by_name["whitelist"].widget == "lines" and by_name["whitelist"].value == \
        "10.0.0.1\n10.0.0.2" and by_name["whitelist"].error == "too many"
    assert by_name["channels"].widget == "channels" and by_name["channels"].choices == \
        ("cmcc", "ctcc")
    assert by_name["enabled"].widget == "checkbox" and by_name["status_callback"].widget == "url"
    table = read_app_form(MultiDict([("whitelist", "10.0.0.1,\n 10.0.0.2 "),
                                     ("channels", "ctcc"), ("channels", "cmcc"),
                                     ("signature", " 商城 ")]))
    # Empty text fields are left out (they take their defaults: no URL); checkboxes are read.
    assert table == {"whitelist": ["10.0.0.1", "10.0.0.2"], "channels": ["ctcc", "cmcc"],
                     "signature": "商城", "enabled": False, "mo_receive_time": False}
    assert by_name["callback_format"].widget == "select" and \
        by_name["callback_format"].choices == ("jsms", "signed-json")
    assert changed({"enabled": True, "channels": ["cmcc"]}, table) == [
        "whitelist", "channels", "signature", "enabled"]


def test_after_signing_in_the_console_goes_only_to_its_own_paths():
    from gateway.console.pages.login import _next
    assert _next("/apps?x=1") == "/apps?x=1" and _next("/a/b%2F") == "/a/b%2F"
    for elsewhere in ("//evil.example", "/\\evil.example", "/\t/evil.example",
                      "http://evil.example", "evil", "", None, "/a b"):
        assert _next(elsewhere) == "/", elsewhere


def test_settings_added_to_the_apps_later_slot_into_the_form():
    """A field the configuration gains (a list of numbers with no default, a choice, a
    flag) is drawn and read back by its kind, an empty optional one taking its default."""
    from gateway.config.schema import NUMBER, STRING, Field, Kind
    numbers = Kind("a list of numbers", lambda v: isinstance(v, list))
    later = (Field("callback_retries", numbers, None), Field("callback_format", STRING, "jsms"),
             Field("mo_receive_time", BOOLEAN, False), Field("weight", NUMBER, 1))
    fields = app_fields({"callback_retries": [180, 3600.0]}, {}, [], later)
    assert [(f.widget, f.value) for f in fields] == [
        ("lines", "180\n3600"), ("select", "jsms"), ("checkbox", False), ("number", "1")]
    assert app_fields({}, {}, [], later)[0].value == ""
    assert read_app_form(MultiDict([("callback_retries", "60, 600"), ("callback_format", "x"),
                                    ("mo_receive_time", "on"), ("weight", "2.5")]), later) == {
        "callback_retries": [60, 600], "callback_format": "x", "mo_receive_time": True,
        "weight": 2.5}
    assert "callback_retries" not in read_app_form(MultiDict([("callback_retries", " ")]),
                                                   later)
