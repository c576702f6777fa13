"""Configuration of the API: [api] limits, [apps.NAME] and [templates.ID], with the exact
error lines a user sees."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, describe_config, parse_config

CHANNEL = """
[channels.cmcc]
provider = "p"
host = "10.1.2.3"
port = 7890
account = "900001"
password = "pw"
access_number = "10690001"
connections = 1
"""
APP = """
[apps.shop]
app_key = "shopkey"
master_secret = "shop-secret-9"
"""


def load(text: str, env=None):
    return parse_config(CHANNEL + text, "gw.toml", env=env or {})


def problems(text: str, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return [str(p) for p in caught.value.problems]


def test_an_app_takes_the_consoles_settings_with_defaults():
    config = load(APP + 'whitelist = ["10.0.0.0/8", "192.0.2.7"]\n'
                  'status_callback = "https://app.example/status"\n')
    app = config.apps["shop"]
    assert (app.app_key, app.master_secret, app.channels) == ("shopkey", "shop-secret-9", ("cmcc",))
    assert app.whitelist == ("10.0.0.0/8", "192.0.2.7") and app.enabled
    assert app.status_callback == "https://app.example/status" and app.mo_callback == ""
    assert config.api.code_length == 6 and config.api.max_body == 1 << 20
    assert (config.api.max_upload, config.api.max_users) == (8 << 20, 1_000_000)
    assert "shop-secret-9" not in repr(app)


def test_callbacks_default_to_the_jsms_format_and_its_retry_schedule():
    config = load(APP + '[apps.legacy]\napp_key = "legacy"\nmaster_secret = "legacy-secret"\n'
                        'callback_format = "signed-json"\nmo_receive_time = true\n'
                        '[apps.quick]\napp_key = "quick"\nmaster_secret = "quick-secret"\n'
                        'callback_format = "signed-json"\ncallback_retries = [1, 2.5]\n')
    shop, legacy, quick = (config.apps[name] for name in ("shop", "legacy", "quick"))
    assert (shop.callback_format, shop.callback_retries, shop.mo_receive_time) == \
        ("jsms", (180, 3600, 43200), False)
    assert (legacy.callback_format, legacy.retry_schedule, legacy.mo_receive_time) == \
        ("signed-json", None, True)                      # exponential backoff, as before
    assert quick.retry_schedule == (1, 2.5)
    assert config.api.callback_verify_interval == 60
    text = describe_config(config)
    assert "callback_format = \"jsms\"\ncallback_retries = [180, 3600, 43200]" in text


def test_a_master_secret_can_come_from_the_environment():
    config = load('[apps.shop]\napp_key = "k1"\nmaster_secret_env = "SHOP_SECRET"\n',
                  env={"SHOP_SECRET": "from-env-123"})
    assert config.apps["shop"].master_secret == "from-env-123"
    assert "from-env-123" in config.secrets()


def test_templates_are_read_with_their_type_and_signature():
    config = load(APP + '[templates.7]\ntype = "code"\ncontent = "验证码{{code}}"\n'
                  'signature = "商城"\ncode_length = 4\n')
    template = config.templates[7]
    assert (template.type, template.content, template.signature, template.code_length) == \
        ("code", "验证码{{code}}", "商城", 4)


def test_the_description_masks_master_secrets():
    text = describe_config(load(APP))
    assert "shop-secret-9" not in text and 'master_secret = "******"' in text
    assert "[apps.shop]" in text and "[api]" in text


BAD = [
    ("no secret", '[apps.shop]\napp_key = "k"\n',
     ['gw.toml: [apps.shop] master_secret: missing required key; add master_secret = "..." '
      'or master_secret_env = "VARIABLE"']),
    ("both secrets", APP + 'master_secret_env = "X"\n',
     ["gw.toml: [apps.shop] master_secret: give master_secret or master_secret_env, not both"]),
    ("secret variable unset", '[apps.shop]\napp_key = "k"\nmaster_secret_env = "NOPE"\n',
     ["gw.toml: [apps.shop] master_secret_env: NOPE is not set in the environment; export it "
      "before starting the gateway"]),
    ("short secret", '[apps.shop]\napp_key = "k"\nmaster_secret = "abc"\n',
     ["gw.toml: [apps.shop] master_secret: the value (hidden) is not accepted; use 8 to 128 "
      "printable ASCII characters"]),
    ("unknown channel", APP + 'channels = ["nope"]\n',
     ["gw.toml: [apps.shop] channels: 'nope' is not a channel; use one of cmcc"]),
    ("bad whitelist entry", APP + 'whitelist = ["10.0.0.0/33"]\n',
     ["gw.toml: [apps.shop] whitelist: an array lists '10.0.0.0/33', which is not an IP "
      "address or CIDR block"]),
    ("eleven whitelist entries", APP + f'whitelist = {[f"10.0.0.{i}" for i in range(11)]}\n'.replace("'", '"'),
     ["gw.toml: [apps.shop] whitelist: an array has more than 10 entries; a whitelist holds up "
      "to 10 IPs or CIDR blocks"]),
    ("callback not a url", APP + 'status_callback = "ftp://x"\n',
     ['gw.toml: [apps.shop] status_callback: "ftp://x" is not accepted; use an http:// or '
      'https:// URL (at most 1024 characters)']),
    ("callback without a host", APP + 'mo_callback = "https:///status"\n',
     ['gw.toml: [apps.shop] mo_callback: "https:///status" is not accepted; use an http:// or '
      'https:// URL (at most 1024 characters)']),
    ("callback with a space", APP + 'status_callback = "http://a.example/x y"\n',
     ['gw.toml: [apps.shop] status_callback: "http://a.example/x y" is not accepted; use an '
      'http:// or https:// URL (at most 1024 characters)']),
    ("callback format", APP + 'callback_format = "json"\n',
     ['gw.toml: [apps.shop] callback_format: "json" is not accepted; use "jsms" or '
      '"signed-json"']),
    ("retry of zero seconds", APP + 'callback_retries = [180, 0]\n',
     ["gw.toml: [apps.shop] callback_retries: an array is not accepted; use at most 10 waits "
      "in seconds, each > 0 and at most 604800 (7 days), e.g. [180, 3600, 43200]"]),
    ("eleven retries", APP + f'callback_retries = {[60] * 11}\n',
     ["gw.toml: [apps.shop] callback_retries: an array is not accepted; use at most 10 waits "
      "in seconds, each > 0 and at most 604800 (7 days), e.g. [180, 3600, 43200]"]),
    ("retries not numbers", APP + 'callback_retries = ["3m"]\n',
     ["gw.toml: [apps.shop] callback_retries: expected a list of numbers, got an array"]),
    ("receive time not a boolean", APP + 'mo_receive_time = 1\n',
     ["gw.toml: [apps.shop] mo_receive_time: expected true or false, got 1"]),
    ("verify interval", '[api]\ncallback_verify_interval = 0\n',
     ["gw.toml: [api] callback_verify_interval: 0 is out of range; use a number of seconds > 0"]),
    ("enabled not a boolean", APP + 'enabled = "yes"\n',
     ['gw.toml: [apps.shop] enabled: expected true or false, got "yes"']),
    ("duplicate app keys", APP + '[apps.other]\napp_key = "shopkey"\nmaster_secret = "other-secret"\n',
     ["gw.toml: [apps] other: app_key is also the key of app 'shop'; keys are unique"]),
    ("template type", APP + '[templates.1]\ntype = "promo"\ncontent = "x"\n',
     ['gw.toml: [templates.1] type: "promo" is not accepted; use "code", "notification" or '
      '"marketing"']),
    ("template id", APP + '[templates.abc]\ntype = "code"\ncontent = "x"\n',
     ["gw.toml: [templates.abc] a template id is a positive integer, e.g. [templates.1]"]),
    ("template of no app", APP + '[templates.1]\napp = "nope"\ntype = "code"\ncontent = "x"\n',
     ["gw.toml: [templates.1] app: 'nope' is not an app; use one of shop"]),
    ("template without content", APP + '[templates.1]\ntype = "code"\n',
     ['gw.toml: [templates.1] content: missing required key; add e.g. content = '
      '"您的订单{{order}}已发货"']),
    ("api typo", '[api]\ncode_lenght = 6\n',
     ["gw.toml: [api] code_lenght: unknown key; did you mean 'code_length'?"]),
    ("api code length", '[api]\ncode_length = 12\n',
     ["gw.toml: [api] code_length: 12 is out of range; use 4..8"]),
    ("trusted proxies", '[api]\ntrusted_proxies = ["10.0.0.1", "proxy.local"]\n',
     ["gw.toml: [api] trusted_proxies: an array lists 'proxy.local', which is not an IP "
      "address or CIDR block"]),
    ("api code attempts", '[api]\ncode_attempts = 0\n',
     ["gw.toml: [api] code_attempts: 0 is out of range; use 1..100"]),
    ("api max_upload", '[api]\nmax_upload = 100\n',
     ["gw.toml: [api] max_upload: 100 is out of range; use 1024..268435456"]),
    ("api max_users", '[api]\nmax_users = 0\n',
     ["gw.toml: [api] max_users: 0 is out of range; use 1..100000000"]),
    ("api bad pattern", '[api]\nmobile_pattern = "("\n',
     ['gw.toml: [api] mobile_pattern: "(" is not a regular expression (missing ), '
      'unterminated subpattern at position 0)']),
    ("api connections per source", '[api]\nmax_connections_per_source = 0\n',
     ["gw.toml: [api] max_connections_per_source: 0 is out of range; use 1..100000"]),
    ("api timeouts", '[api]\nheader_timeout = 0\nbody_timeout = -1\nidle_timeout = "60"\n',
     ["gw.toml: [api] header_timeout: 0 is out of range; use a number of seconds > 0",
      "gw.toml: [api] body_timeout: -1 is out of range; use a number of seconds > 0",
      'gw.toml: [api] idle_timeout: expected a number, got "60"']),
]


def test_the_listener_limits_have_defaults_and_can_be_set():
    assert (load("").api.max_connections_per_source, load("").api.header_timeout,
            load("").api.body_timeout, load("").api.idle_timeout) == (100, 10, 30, 60)
    api = load("[api]\nmax_connections_per_source = 5\nheader_timeout = 0.5\n"
               "body_timeout = 2\nidle_timeout = 3\n").api
    assert (api.max_connections_per_source, api.header_timeout, api.body_timeout,
            api.idle_timeout) == (5, 0.5, 2, 3)


@pytest.mark.parametrize("name,text,expected", BAD, ids=[b[0] for b in BAD])
def test_a_bad_api_configuration_names_each_problem(name, text, expected):
    assert problems(text) == expected
