"""The settings form of an app, drawn from the configuration's own field specs.

Every field of ``gateway.config.APP_SETTINGS`` becomes a form field by its kind (text, lines,
a checkbox, a number; the channels as checkboxes), and the form's values are checked by the
same code that checks an ``[apps.NAME]`` table. A field added to the configuration's apps
appears here with its name as label until ``LABELS`` gives it words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import APP_SETTINGS, BOOLEAN, CALLBACK_FORMATS

# Fields whose value is one of a few words, shown as a list to choose from.
CHOICES = {"callback_format": CALLBACK_FORMATS}

LABELS = {
    "whitelist": ("IP whitelist", "Up to 10 IP addresses or CIDR blocks that may call the API, "
                  "one per line or separated by commas. Empty: any address."),
    "status_callback": ("Status report URL", "Receives each message's final status (a signed "
                        "JSON POST). Empty: no status callbacks."),
    "mo_callback": ("Uplink (MO) URL", "Receives the handsets' replies (a signed JSON POST). "
                    "Empty: no MO callbacks."),
    "channels": ("Channels", "The channels the app may send on; the first ticked is its "
                 "default. None ticked: every channel."),
    "signature": ("Signature", "Put in front of every message as 【signature】; up to 20 "
                  "characters, no spaces. Empty: the templates' own."),
    "enabled": ("Enabled", "A disabled app's calls are refused with 50036."),
    # The per-app callback settings of the JSMS-format callbacks, when the configuration has
    # them (a label here for a field it does not have is never used).
    "callback_format": ("Callback format", "jsms (JSMS's form-encoded, SHA-1-signed callbacks) "
                        "or signed-json (JSON with an HMAC header)."),
    "callback_retries": ("Callback retries", "Seconds to wait before each retry of a failed "
                         "callback, one per line. Empty: the format's own schedule."),
    "mo_receive_time": ("Uplink send time", "signed-json MO callbacks carry the time the "
                        "reply was received (seed 004's option)."),
}


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    help: str
    widget: str                 # text, url, lines, checkbox, number, channels, select
    value: object
    error: str = ""
    choices: tuple[str, ...] = ()


def _widget(field) -> str:
    if field.name == "channels":
        return "channels"
    if field.name in CHOICES:
        return "select"
    if field.kind is BOOLEAN:
        return "checkbox"
    if field.kind.noun.startswith("a list of"):
        return "lines"
    if field.kind.noun in ("an integer", "a number"):
        return "number"
    return "url" if field.name.endswith("_callback") else "text"


def app_fields(values: dict, errors: dict[str, str], channels,
               fields=APP_SETTINGS) -> list[FormField]:
    """The form's fields with ``values`` (as stored) and the problems found, by field."""
    out = []
    for field in fields:
        label, help_text = LABELS.get(field.name, (field.name, ""))
        value = values.get(field.name, field.default)
        widget = _widget(field)
        if widget in ("lines", "number", "text", "url"):
            value = "\n".join(map(_plain, value)) if isinstance(value, (list, tuple)) else \
                ("" if value is None else _plain(value))
        choices = CHOICES.get(field.name, tuple(channels))
        out.append(FormField(field.name, label, help_text, widget, value,
                             errors.get(field.name, ""), tuple(choices)))
    return out


def read_app_form(form, fields=APP_SETTINGS) -> dict:
    """The posted fields as the TOML would hold them: lists split on commas and line ends
    (their items numbers for a list of numbers), checkboxes as booleans, numbers as numbers
    where they parse (the check reports the rest). An empty or missing field (but a checkbox
    or the channels) is left out, so that it takes its default."""
    table = {}
    for field in fields:
        widget, raw = _widget(field), form.get(field.name, "")
        if widget not in ("checkbox", "channels") and not str(raw).strip():
            continue
        if widget == "checkbox":
            table[field.name] = raw == "on"
        elif widget == "channels":
            table[field.name] = [str(v) for v in form.getall(field.name, [])]
        elif widget == "lines":
            items = [v for v in re.split(r"[\s,]+", str(raw)) if v]
            table[field.name] = [_number(v) for v in items] \
                if field.kind.noun == "a list of numbers" else items
        elif widget == "number":
            table[field.name] = _number(str(raw).strip())
        else:
            table[field.name] = str(raw).strip()
    return table


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _plain(value) -> str:
    """A value as the form shows it: 3 rather than 3.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def changed(before: dict, after: dict) -> list[str]:
    """The names of the settings that differ."""
    return [f.name for f in APP_SETTINGS
            if before.get(f.name, f.default) != after.get(f.name, f.default)]
