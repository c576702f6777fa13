"""Configuration of the operator's console ([console]) and of the apps made in it, with the
exact error lines a user sees."""

from __future__ import annotations

import pytest

from gateway.config import (
    APP_SETTINGS,
    CONSOLE_APP_NAME,
    ConfigError,
    app_from_settings,
    describe_config,
    parse_config,
    read_app_settings,
)

CHANNELS = """
[channels.cmcc]
provider = "p"
host = "10.1.2.3"
port = 7890
account = "900001"
password = "pw"
access_number = "10690001"
connections = 1
[channels.ctcc]
provider = "q"
host = "10.1.2.4"
port = 7890
account = "900002"
password = "pw"
access_number = "10690002"
connections = 1
"""
KEY = "k" * 40


def load(text: str, env=None):
    return parse_config(CHANNELS + text, "gw.toml", env=env or {})


def problems(text: str, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return [str(p) for p in caught.value.problems]


def test_the_console_is_off_unless_it_has_an_address():
    config = load("")
    assert not config.console.enabled and config.console.listen == ""
    assert config.console.idle_timeout == 1800 and config.console.session_lifetime == 43200
    assert config.console.secret_grace == 3600 and config.console.session_key is None
    assert "[console]" not in describe_config(config)


def test_a_console_with_its_own_port_and_a_key_from_the_environment():
    config = load('[console]\nlisten = "0.0.0.0:8090"\nsession_key_env = "CONSOLE_KEY"\n'
                  "idle_timeout = 600\nsecure_cookies = true\n", {"CONSOLE_KEY": KEY})
    console = config.console
    assert console.enabled and console.listen == "0.0.0.0:8090" and console.secure_cookies
    assert console.session_key == KEY and KEY not in repr(console)
    assert KEY in config.secrets()                      # the log redactor hides it
    described = describe_config(config)
    assert 'listen = "0.0.0.0:8090"' in described and KEY not in described


def test_the_console_never_shares_the_apis_or_the_metrics_port():
    assert problems('[console]\nlisten = "0.0.0.0:8080"\n') == [
        "gw.toml: [console] listen: uses port 8080, the port of [gateway] api_listen; the "
        "console needs a port of its own (never the API's)"]
    assert problems('[gateway]\nmetrics_listen = "127.0.0.1:9200"\n'
                    '[console]\nlisten = "127.0.0.1:9200"\n') == [
        "gw.toml: [console] listen: uses port 9200, the port of [gateway] metrics_listen; "
        "the console needs a port of its own (never the API's)"]


def test_console_settings_are_checked_with_the_key_and_the_fix():
    assert problems('[console]\nlisten = "nowhere"\nidle_timeout = 10\n'
                    'session_key_env = "NOT SET"\nsecret_grace = -1\n'
                    'login_failures_per_account = 0\nsecure_cookies = "yes"\ncolour = 1\n') == [
        'gw.toml: [console] listen: "nowhere" is not accepted; use host:port with a port in '
        '1..65535, e.g. "127.0.0.1:8080" or "[::1]:8080"',
        "gw.toml: [console] idle_timeout: 10 is out of range; use a number of seconds in "
        "60..86400",
        'gw.toml: [console] session_key_env: "NOT SET" is not accepted; use an environment '
        "variable name",
        "gw.toml: [console] secret_grace: -1 is out of range; use a number of seconds in "
        "0..604800",
        "gw.toml: [console] login_failures_per_account: 0 is out of range; use 1..100",
        'gw.toml: [console] secure_cookies: expected true or false, got "yes"',
        "gw.toml: [console] colour: unknown key; use one of listen, session_key_env, "
        "idle_timeout, session_lifetime, secret_grace, login_failures_per_account, "
        "login_failures_per_source, secure_cookies"]


def test_a_session_key_must_be_set_and_long_and_outlive_idle():
    env_missing = problems('[console]\nlisten = "127.0.0.1:8090"\nsession_key_env = "K"\n')
    assert env_missing == [
        "gw.toml: [console] session_key_env: K is not set in the environment; export at least "
        "32 random characters, e.g. from `openssl rand -hex 32`"]
    assert "K is too short" in problems('[console]\nlisten = "127.0.0.1:8090"\n'
                                        'session_key_env = "K"\n', {"K": "short"})[0]
    assert problems('[console]\nidle_timeout = 3600\nsession_lifetime = 600\n') == [
        "gw.toml: [console] session_lifetime: is shorter than idle_timeout; make it at least "
        "as long"]


def test_console_app_names_take_seed_004s_characters_up_to_30():
    assert CONSOLE_APP_NAME.fullmatch("Shop!@$%^-_=+[{}]:,./?~#*;|") and \
        CONSOLE_APP_NAME.fullmatch("x" * 30)
    for bad in ("", "x" * 31, "has space", "中文", "quote\"", "back\\slash"):
        assert not CONSOLE_APP_NAME.fullmatch(bad), bad


def test_console_app_settings_are_checked_like_the_tomls():
    reported = []
    settings = read_app_settings({"whitelist": ["10.0.0.1"] * 11, "status_callback": "ftp://x",
                                  "channels": ["nope"], "enabled": "yes"},
                                 lambda key, message: reported.append((key, message)),
                                 {"cmcc": None})
    assert settings is None
    assert reported == [
        ("whitelist", "an array has more than 10 entries; a whitelist holds up to 10 IPs or "
                      "CIDR blocks"),
        ("status_callback", '"ftp://x" is not accepted; use an http:// or https:// URL '
                            "(at most 1024 characters)"),
        ("enabled", 'expected true or false, got "yes"'),
        ("channels", "'nope' is not a channel; use one of cmcc")]
    good = read_app_settings({"whitelist": ["192.0.2.0/24"], "channels": ["cmcc"]},
                             lambda *problem: pytest.fail(str(problem)), {"cmcc": None})
    assert set(good) == {f.name for f in APP_SETTINGS} and good["mo_callback"] == ""


def test_a_stored_app_becomes_an_app_config_whatever_this_version_knows():
    channels = {"cmcc": None, "ctcc": None}
    app = app_from_settings("Shop!", "key1", "secret-1", {
        "whitelist": ["192.0.2.7"], "channels": ["ctcc", "gone"], "enabled": False,
        "a_later_setting": 3}, channels)
    assert (app.name, app.app_key, app.master_secret, app.master_secret_env) == \
        ("Shop!", "key1", "secret-1", None)
    assert app.whitelist == ("192.0.2.7",) and app.channels == ("ctcc",) and not app.enabled
    assert app.status_callback == "" and app.signature == ""       # missing: the defaults
    everywhere = app_from_settings("x", "k", "s", {"channels": ["gone"]}, channels)
    assert everywhere.channels == ("cmcc", "ctcc")
