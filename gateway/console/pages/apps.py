"""Applications (seed 004's application management): the list, a new app, an app's settings,
its secret rotated, enabled or disabled.

An app made here gets a generated app key (24 hex digits) and master secret (32 hex digits,
from ``secrets``), lives in the store, and is served by the API at once (and by every
instance sharing the store within two seconds). Its secret is shown once, right after it is
made or rotated; after a rotation the old secret keeps working for ``[console]
secret_grace`` seconds (an hour by default) so that callers can switch without failing,
while callbacks are signed with the new one at once. Apps of the configuration file are
shown read-only, never with their secret.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.config import (
    APP_SETTINGS,
    CONSOLE_APP_NAME,
    CONSOLE_APP_NAME_RULE,
    read_app_settings,
)
from gateway.store import StoredApp

from ..forms import app_fields, changed, read_app_form
from ..security import CONSOLE, FORM, Refused, admin, operator_of, redirect, render
from . import Section

SECTION = Section("apps", "/apps", "Applications")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/apps", app_list)
    router.add_get("/apps/new", new_app)
    router.add_post("/apps", create_app)
    router.add_get("/apps/{key}", app_page)
    router.add_post("/apps/{key}", update_app)
    router.add_post("/apps/{key}/rotate", rotate_secret)
    router.add_post("/apps/{key}/enabled", set_enabled)
    router.add_get("/apps/{key}/secret", show_secret)


def _page(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    return render(template, request, {
        "section": SECTION.key, **context}, status=status)


async def app_list(request: web.Request) -> web.Response:
    directory = request.app[CONSOLE].apps
    rows = [{"app": app, "configured": directory.is_configured(name),
             "stored": directory.stored.get(name)} for name, app in sorted(directory.items())]
    return _page(request, "apps.html", title="Applications", rows=rows)


@admin
async def new_app(request: web.Request) -> web.Response:
    return _form(request, "", {}, {})


def _form(request, name: str, values: dict, errors: dict, status: int = 200) -> web.Response:
    channels = list(request.app[CONSOLE].config.channels)
    return _page(request, "app_new.html", status, title="New application", name=name,
                 name_rule=CONSOLE_APP_NAME_RULE, errors=errors,
                 fields=app_fields(values, errors, channels))


async def create_app(request: web.Request) -> web.Response:
    console, form = request.app[CONSOLE], request[FORM]
    name = str(form.get("name", "")).strip()
    table = read_app_form(form)
    errors = _check(console, table)
    if not CONSOLE_APP_NAME.fullmatch(name):
        errors["name"] = f"use {CONSOLE_APP_NAME_RULE}"
    elif name in console.apps or name in console.apps.stored:
        errors["name"] = "an app of this name exists; choose another"
    if errors:
        return _form(request, name, table, errors, 400)
    settings = read_app_settings(table, lambda key, message: None, console.config.channels)
    key, secret, now = _new_key(console), secrets.token_hex(16), console.clock()
    operator = operator_of(request)
    app = StoredApp(name, key, secret, settings, now, now)
    note = console.note(operator, "app created", name, _summary(settings))
    if not await console.store.create_app(app, note):
        return _form(request, name, table, {"name": "an app of this name exists"}, 400)
    await console.services.apps_changed()
    console.shown_once.put(operator, key, secret)
    return redirect(f"/apps/{key}/secret")


def _check(console, table: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    read_app_settings(table, lambda key, message: errors.setdefault(key, message),
                      console.config.channels)
    return errors


def _new_key(console) -> str:
    while True:
        key = secrets.token_hex(12)
        if console.apps.by_key(key) is None:
            return key


def _summary(settings: dict) -> str:
    return "; ".join(f"{f.name}={_shown(settings.get(f.name))}" for f in APP_SETTINGS)


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(value) or "(none)"
    return str(value).lower() if isinstance(value, bool) else (value or "(none)")


def _find(request: web.Request):
    """(AppConfig, StoredApp or None when configured) of the URL's key; 404 otherwise."""
    directory = request.app[CONSOLE].apps
    app = directory.by_key(request.match_info["key"])
    if app is None:
        raise Refused(404, "There is no app with this key.")
    return app, None if directory.is_configured(app.name) else directory.stored.get(app.name)


async def app_page(request: web.Request, errors: dict | None = None,
                   values: dict | None = None, status: int = 200) -> web.Response:
    console = request.app[CONSOLE]
    app, stored = _find(request)
    fields = None
    if stored is not None:
        fields = app_fields(values if values is not None else stored.settings, errors or {},
                            list(console.config.channels))
    return _page(request, "app.html", status, title=app.name, app=app, stored=stored,
                 fields=fields, errors=errors or {}, source=console.config.source,
                 grace=console.settings.secret_grace, now=console.clock(),
                 saved=request.query.get("saved"))


def _changeable(request: web.Request) -> StoredApp:
    app, stored = _find(request)
    if stored is None:
        raise Refused(403, f"App {app.name} comes from the configuration file; change it "
                           "there and reload the gateway.")
    return stored


async def update_app(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    stored = _changeable(request)
    table = read_app_form(request[FORM])
    errors = _check(console, table)
    if errors:
        return await app_page(request, errors, table, 400)
    settings = read_app_settings(table, lambda key, message: None, console.config.channels)
    what = changed(stored.settings, settings)
    if what:
        note = console.note(operator_of(request), "app changed", stored.name,
                            "; ".join(f"{name}={_shown(settings[name])}" for name in what))
        await console.store.update_app_settings(stored.name, settings, note, console.clock())
        await console.services.apps_changed()
    return redirect(f"/apps/{stored.app_key}?saved=1")


async def rotate_secret(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    stored = _changeable(request)
    secret, now, grace = secrets.token_hex(16), console.clock(), console.settings.secret_grace
    note = console.note(operator_of(request), "secret rotated", stored.name,
                        f"the previous secret works for {grace:g} s more")
    await console.store.rotate_app_secret(stored.name, secret, now + grace, note, now)
    await console.services.apps_changed()
    console.shown_once.put(operator_of(request), stored.app_key, secret)
    return redirect(f"/apps/{stored.app_key}/secret")


async def set_enabled(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    stored = _changeable(request)
    enabled = request[FORM].get("enabled") == "true"
    if stored.settings.get("enabled", True) != enabled:
        note = console.note(operator_of(request), "app enabled" if enabled else "app disabled",
                            stored.name)
        await console.store.update_app_settings(stored.name, {**stored.settings,
                                                              "enabled": enabled},
                                                note, console.clock())
        await console.services.apps_changed()
    return redirect(f"/apps/{stored.app_key}?saved=1")


@admin
async def show_secret(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    app, stored = _find(request)
    secret = console.shown_once.take(operator_of(request), app.app_key)
    return _page(request, "app_secret.html", title=f"{app.name}: secret", app=app,
                 secret=secret, grace=console.settings.secret_grace,
                 rotated=bool(stored and stored.previous_secret))
