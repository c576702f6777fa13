"""The console in a real browser: the distribution's headless Chromium driven by selenium.

The gateway, the simulator and the console run on loopback in a thread of their own; one
Chromium (a fresh profile, no network beyond loopback, nothing downloaded) signs in and out,
is refused a forged form, makes an app and sends with its credentials through the API,
approves a template and sends with it, uploads a users file with one bad row and finds,
reveals and deletes one of its users, and finds a message and its receipt. Every section
is saved as a screenshot in ``test-artifacts/console/`` (and one page at a phone's width).

Where Chromium or chromedriver is not installed (``apt-get install chromium
chromium-driver``), these tests say so and are skipped; with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.console_stack import ADMIN, SHOP, stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1280,900")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


MISSING = _missing()
if MISSING:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the console's browser tests need Chromium: {MISSING}", pytrace=False)
    pytest.skip(f"no browser for the console's tests: {MISSING}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


class Background:
    """The gateway stack on an event loop in a thread of its own."""

    def __init__(self, tmp_path: Path, store: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._stack = stack(tmp_path, report_delay=0.2, store=store)
        self.s = self.call(self._stack.__aenter__())

    def call(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self._stack.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(request, tmp_path_factory, store_settings):
    """One gateway for the module's tests, which go on from each other's state: the module
    runs once per store backend."""
    directory = tmp_path_factory.mktemp("console-browser")
    with store_settings(request.param, directory) as store:
        background = Background(directory, store)
        yield background
        background.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def gone(element) -> bool:
    """True once ``element`` left the document (a new page replaced it). ChromeDriver may say
    so with an "unhandled inspector error" (the node does not belong to the document) rather
    than a stale reference when asked in the middle of the navigation."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


class Page:
    """What a test does with the browser, in an operator's words."""

    def __init__(self, driver, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, css: str, timeout: float = 15):
        return WebDriverWait(self.driver, timeout).until(
            seen.presence_of_element_located((By.CSS_SELECTOR, css)))

    def heading(self) -> str:
        return self.wait("h1").text

    def fill(self, field_id: str, text: str) -> None:
        element = self.driver.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(text)

    def click(self, css: str) -> None:
        """Click something that stays on the page (a checkbox)."""
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def submit(self, css: str) -> None:
        """Click a button or link that loads another page, and wait until it has."""
        self.follow(self.driver.find_element(By.CSS_SELECTOR, css))

    def follow(self, element) -> None:
        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(self.driver, 20).until(lambda _: gone(old))
        self.wait("h1")

    def text(self, css: str = "main") -> str:
        return self.wait(css).text

    def sign_in(self, name: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.fill("name", name)
        self.fill("password", password)
        self.submit("form[action='/login'] button")
        assert "/login" not in self.driver.current_url

    def shot(self, name: str) -> Path:
        path = ARTEFACTS / f"{name}.png"
        height = self.driver.execute_script("return document.body.scrollHeight")
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, min(max(900, height + 120), 4000))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(width, 900)
        return path


@pytest.fixture
def page(browser, gateway):
    return Page(browser, gateway.s.console)


def api(gateway, path: str, body: dict, auth: tuple[str, str] = SHOP) -> tuple[int, dict]:
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(gateway.s.api + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json",
                                      "Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def until(predicate, timeout: float = 20.0, step: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def test_an_operator_signs_in_and_out(page):
    page.driver.delete_all_cookies()
    page.open("/apps")
    assert page.heading() == "Sign in" and "next=%2Fapps" in page.driver.current_url
    page.shot("01-login")
    page.fill("name", ADMIN[0])
    page.fill("password", "wrong-password")
    page.submit("form[action='/login'] button")
    assert "Wrong name or password." in page.text("#login-error")
    page.fill("name", ADMIN[0])
    page.fill("password", ADMIN[1])
    page.submit("form[action='/login'] button")
    assert page.heading() == "Applications"                  # where it was going
    assert "alice" in page.text("header .who")
    page.open("/")
    assert page.heading() == "Overview"
    page.shot("02-overview")
    page.submit("form.signout button")
    assert page.heading() == "Sign in"
    page.open("/")
    assert page.heading() == "Sign in"


def test_a_form_with_a_forged_csrf_token_is_refused(page, gateway):
    page.sign_in(*ADMIN)
    page.open("/apps/new")
    page.fill("f-name", "Forged")
    page.driver.execute_script(
        "document.querySelector('form[action=\"/apps\"] input[name=csrf_token]').value"
        " = 'forged'")
    page.submit("form[action='/apps'] button[type=submit]")
    assert page.heading() == "403"
    assert "did not come from this console" in page.text()
    page.shot("03-csrf-refused")
    assert "Forged" not in gateway.s.gateway.apps


def test_an_app_made_in_the_console_sends_through_the_api(page, gateway):
    page.sign_in(*ADMIN)
    page.open("/apps/new")
    page.fill("f-name", "Browser-App")
    page.fill("f-whitelist", "127.0.0.1\n::1")
    page.click("input[name=channels][value=cmcc]")
    page.fill("f-signature", "测试")
    page.shot("04-app-new")
    page.submit("form[action='/apps'] button[type=submit]")
    assert page.heading() == "Browser-App: master secret"
    key = page.text("dl.secret dd code")
    secret = page.text("#secret")
    assert len(key) == 24 and len(secret) == 32
    page.shot("05-app-secret")
    status, body = api(gateway, "/v1/messages", {"mobile": "13800138000", "temp_id": 1,
                                                 "temp_para": {"order": "B1"}}, (key, secret))
    assert status == 200, body
    page.open(f"/apps/{key}/secret")
    assert secret not in page.text() and "shown already" in page.text()
    page.open("/apps")
    assert "Browser-App" in page.text("table")
    page.shot("06-apps")
    page.open(f"/apps/{key}")
    page.shot("07-app")


def test_a_template_approved_in_the_console_can_be_sent_at_once(page, gateway):
    status, body = api(gateway, "/v1/templates", {"type": 2, "template": "包裹{{code_no}}已到"})
    assert status == 200, body
    temp_id = body["temp_id"]
    send = {"mobile": "13700137000", "temp_id": temp_id, "temp_para": {"code_no": "P7"}}
    assert api(gateway, "/v1/messages", send)[1]["error"]["code"] == 50020
    page.sign_in(*ADMIN)
    page.open("/reviews")
    card = page.wait(f"#template-{temp_id}")
    assert "【商城】包裹{{code_no}}已到" in card.text and "1 SMS" in card.text
    page.shot("08-reviews")
    page.follow(card.find_element(By.CSS_SELECTOR, "button[value=approve]"))
    assert "Decided: template" in page.text(".notice")
    assert until(lambda: api(gateway, "/v1/messages", send)[0] == 200, timeout=10)


def test_a_message_and_its_receipt_are_found(page, gateway):
    page.sign_in(*ADMIN)
    page.open("/messages/send")
    Select(page.wait("#app")).select_by_visible_text("shop")
    Select(page.wait("#template")).select_by_value("1")       # each choice reloads the form
    page.wait("#mobile")
    page.fill("mobile", "13600136000")
    page.fill("p-order", "C3")
    page.shot("09-send")
    page.submit("form[method=post][action='/messages/send'] button[type=submit]")
    heading = page.heading()
    assert heading.startswith("Message ")
    message_id = heading.split()[1]

    def delivered() -> bool:
        page.driver.refresh()
        return "delivered" in page.text("dl.props")
    assert until(delivered, timeout=20, step=0.3)
    segments = page.text("main table")
    assert "DELIVRD" in segments and "cmcc#0" in segments
    assert "136****6000" in page.text("dl.props") and "13600136000" not in page.text()
    page.shot("10-message")
    page.open("/messages")
    page.fill("number", "13600136000")
    page.submit("form.search button")
    rows = page.text("main table tbody")
    assert message_id in rows and "136****6000" in rows and "delivered" in rows
    page.shot("11-messages")
    page.submit(f"a[href='/messages/{message_id}']")
    page.submit("form[action$='/reveal'] button")
    assert "13600136000" in page.text("dl.props") and "您的订单C3已发货" in page.text("dl.props")
    page.open("/audit")
    assert "number and text revealed" in page.text("table")
    page.shot("12-audit")
    page.open("/")
    mix = page.text("section[aria-labelledby=mix-h]")
    assert "No message reached" not in mix.split("Last day")[0] and "default" in mix
    page.shot("15-overview")


def test_a_users_file_with_one_bad_row_is_uploaded_and_a_user_found_revealed_and_deleted(
        page, gateway, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("userid,phone,cmcc\nbrowser-zhang,13800138000,18756432567\n"
                     "browser-li,,1875643256\nbrowser-wang,13900139000,\n", encoding="utf-8")
    page.sign_in(*ADMIN)
    page.open("/users")
    assert page.heading() == "Users"
    Select(page.wait("#upload-app")).select_by_visible_text("shop")
    page.driver.find_element(By.ID, "file").send_keys(str(users))
    page.submit("form[action='/users/upload'] button[type=submit]")
    assert page.heading() == "Users of shop: upload"
    assert page.text("#report").split() == ["Rows", "read", "3", "Stored", "2", "Refused", "1"]
    refused = page.text("#refused tbody")
    assert refused.split(maxsplit=3) == ["3", "browser-li", "50006", "invalid mobile: for cmcc"]
    page.shot("16-users-report")
    page.submit("main a[href^='/users?app=shop']")
    page.fill("prefix", "browser-")
    page.submit("form.search button")
    found = page.text("#users tbody")
    assert "browser-wang" in found and "browser-zhang" in found and "browser-li" not in found
    assert "138****8000" in found and "13800138000" not in found
    page.shot("17-users")
    page.submit("#users a[href$='userid=browser-zhang']")
    assert page.heading() == "User browser-zhang"
    assert "187****2567" in page.text("#numbers") and "18756432567" not in page.text()
    page.submit("form[action='/users/user/reveal'] button")
    assert "18756432567" in page.text("#numbers") and "13800138000" in page.text("#numbers")
    page.shot("18-user")
    old = page.driver.find_element(By.TAG_NAME, "html")
    page.click("form[action='/users/user/delete'] button")
    WebDriverWait(page.driver, 10).until(seen.alert_is_present()).accept()   # data-confirm
    WebDriverWait(page.driver, 20).until(lambda _: gone(old))
    assert "User browser-zhang of shop was deleted." in page.text(".notice")
    assert "browser-zhang" not in page.text("#users tbody")

    async def stored(userid: str):
        return await gateway.s.gateway.store.user("shop", userid)
    assert gateway.call(stored("browser-zhang")) is None
    assert gateway.call(stored("browser-wang")) == {"default": "13900139000"}
    page.open("/audit")
    trail = page.text("table")
    assert "users uploaded" in trail and "user's numbers revealed" in trail
    assert "user deleted" in trail and "13800138000" not in trail


def test_every_section_is_readable_on_a_phone(page):
    page.sign_in(*ADMIN)
    page.driver.set_window_size(390, 844)
    try:
        for path, name in (("/", "13-phone-overview"), ("/messages", "14-phone-messages"),
                           ("/users", "19-phone-users")):
            page.open(path)
            page.wait("h1")
            width = page.driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
            page.driver.save_screenshot(str(ARTEFACTS / f"{name}.png"))
    finally:
        page.driver.set_window_size(1280, 900)
