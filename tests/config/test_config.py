"""gateway.config: the TOML file is validated whole, every problem is named with its fix, and
the password never shows."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

import gateway.status
from gateway.cli.check_config import add_check_config_command, check_config_main
from gateway.config import (
    ChannelConfig,
    ConfigError,
    GatewaySettings,
    describe_config,
    load_config,
    mask_secret,
    parse_config,
    world_readable_warning,
)
from gateway.config.schema import CHANNEL_FIELDS, GATEWAY_FIELDS, split_host_port

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
SECRET = "Zq7-unmistakable-secret"
SEVEN = {  # the UMS channel form, as raw TOML values
    "provider": '"cmcc-gd"',
    "host": '"10.1.2.3"',
    "port": "7890",
    "account": '"900001"',
    "password": f'"{SECRET}"',
    "access_number": '"10690001"',
    "connections": "4",
}


def channel(name: str = "cmcc", **keys: str | None) -> str:
    """A [channels.NAME] table: the seven required keys, changed, added or (None) removed."""
    items = {**SEVEN, **keys}
    return f"[channels.{name}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()
                                            if v is not None)


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.toml", env={} if env is None else env)
    lines = [str(p) for p in caught.value.problems]
    assert str(caught.value) == "\n".join(lines)
    return lines


C = "gw.toml: [channels.cmcc] "
BAD_FILES = [
    ("port out of range", channel(port="70000"),
     [C + "port: 70000 is out of range; use 1..65535"]),
    ("port zero", channel(port="0"), [C + "port: 0 is out of range; use 1..65535"]),
    ("port a string", channel(port='"7890"'), [C + 'port: expected an integer, got "7890"']),
    ("port a float", channel(port="7890.0"), [C + "port: expected an integer, got 7890.0"]),
    ("connections a string", channel(connections='"4"'),
     [C + 'connections: expected an integer, got "4"']),
    ("a boolean is not an integer", channel(connections="true"),
     [C + "connections: expected an integer, got true"]),
    ("connections below 1", channel(connections="0"),
     [C + "connections: 0 is out of range; use 1..64"]),
    ("connections above 64", channel(connections="65"),
     [C + "connections: 65 is out of range; use 1..64"]),
    ("account of 5 digits", channel(account='"90001"'),
     [C + 'account: "90001" is not accepted; use exactly 6 ASCII digits (the SP_Id)']),
    ("account of full-width digits", channel(account='"９００００１"'),
     [C + 'account: "９００００１" is not accepted; use exactly 6 ASCII digits (the SP_Id)']),
    ("account a number", channel(account="900001"),
     [C + "account: expected a string, got 900001"]),
    ("access number not digits", channel(access_number='"1069abc"'),
     [C + 'access_number: "1069abc" is not accepted; use 1 to 21 ASCII digits '
          '(the SP access code)']),
    ("access number of 22 digits", channel(access_number='"1069000100010001000100"'),
     [C + 'access_number: "1069000100010001000100" is not accepted; use 1 to 21 ASCII digits '
          '(the SP access code)']),
    ("unknown key with did-you-mean", channel(windw="16"),
     [C + "windw: unknown key; did you mean 'window'?"]),
    ("unknown key far from any", channel(colour='"red"'),
     [C + "colour: unknown key; use one of provider, host, port, account, password, "
          "password_env, access_number, connections, window, tps, service_id, msg_src, "
          "heartbeat_interval, response_timeout, max_sends, max_parts, connect_timeout, "
          "on_connection_lost, verify_authenticator, center_signature, retry_for"]),
    ("unknown sub-table of a channel", channel() + "[channels.cmcc.limits]\ntps = 5\n",
     [C + "limits: unknown table; use one of provider, host, port, account, password, "
          "password_env, access_number, connections, window, tps, service_id, msg_src, "
          "heartbeat_interval, response_timeout, max_sends, max_parts, connect_timeout, "
          "on_connection_lost, verify_authenticator, center_signature, retry_for"]),
    ("unknown gateway key", "[gateway]\nlog_levle = \"info\"\n" + channel(),
     ["gw.toml: [gateway] log_levle: unknown key; did you mean 'log_level'?"]),
    ("unknown table", "[gatway]\nlog_level = \"info\"\n" + channel(),
     ["gw.toml: [gatway] unknown table; did you mean 'gateway'?"]),
    ("unknown top-level key", "chanels = 1\n" + channel(),
     ["gw.toml: chanels: unknown key; did you mean 'channels'?"]),
    ("missing required key", channel(host=None),
     [C + 'host: missing required key; add e.g. host = "10.1.2.3"']),
    ("all required keys missing", "[channels.cmcc]\n",
     [C + 'provider: missing required key; add e.g. provider = "cmcc-gd"',
      C + 'host: missing required key; add e.g. host = "10.1.2.3"',
      C + "port: missing required key; add e.g. port = 7890",
      C + 'account: missing required key; add e.g. account = "900001"',
      C + 'access_number: missing required key; add e.g. access_number = "10690001"',
      C + "connections: missing required key; add e.g. connections = 4",
      C + 'password: missing required key; add password = "..." or '
          'password_env = "VARIABLE"']),
    ("both password and password_env", channel(password_env='"CMCC_PASSWORD"'),
     [C + "password: give password or password_env, not both"]),
    ("password_env variable unset", channel(password=None, password_env='"CMCC_PASSWORD"'),
     [C + "password_env: CMCC_PASSWORD is not set in the environment; export it before "
          "starting the gateway"]),
    ("password_env not a variable name", channel(password=None, password_env='"CMCC PASS"'),
     [C + 'password_env: "CMCC PASS" is not accepted; use an environment variable name: '
          "letters, digits and _"]),
    ("empty password", channel(password='""'),
     [C + "password: the value (hidden) is not accepted; use 1 to 64 ASCII characters"]),
    ("password of 65 characters", channel(password='"' + "x" * 65 + '"'),
     [C + "password: the value (hidden) is not accepted; use 1 to 64 ASCII characters"]),
    ("password a number is not shown", channel(password="123456"),
     [C + "password: expected a string, got an integer"]),
    ("window 0", channel(window="0"), [C + "window: 0 is out of range; use 1..256"]),
    ("window above 256", channel(window="257"), [C + "window: 257 is out of range; use 1..256"]),
    ("bad on_connection_lost", channel(on_connection_lost='"drop"'),
     [C + 'on_connection_lost: "drop" is not accepted; use "resend" or "report"']),
    ("bad verify_authenticator", channel(verify_authenticator='"ignore"'),
     [C + 'verify_authenticator: "ignore" is not accepted; use "warn" or "refuse"']),
    ("max_sends above 10", channel(max_sends="11"),
     [C + "max_sends: 11 is out of range; use 1..10"]),
    ("max_parts 0", channel(max_parts="0"), [C + "max_parts: 0 is out of range; use 1..255"]),
    ("negative tps", channel(tps="-1"),
     [C + "tps: -1 is out of range; use a number >= 0 (0 means no limit)"]),
    ("infinite tps", channel(tps="inf"),
     [C + "tps: inf is out of range; use a number >= 0 (0 means no limit)"]),
    ("zero response timeout", channel(response_timeout="0"),
     [C + "response_timeout: 0 is out of range; use a number of seconds > 0"]),
    ("negative retry_for", channel(retry_for="-1"),
     [C + "retry_for: -1 is out of range; use a number of seconds > 0"]),
    ("heartbeat interval a string", channel(heartbeat_interval='"3m"'),
     [C + 'heartbeat_interval: expected a number, got "3m"']),
    ("service_id of 11 characters", channel(service_id='"ABCDEFGHIJK"'),
     [C + 'service_id: "ABCDEFGHIJK" is not accepted; use at most 10 ASCII characters']),
    ("msg_src of 7 characters", channel(msg_src='"9000011"'),
     [C + 'msg_src: "9000011" is not accepted; use at most 6 ASCII characters']),
    ("host with a space", channel(host='"10.1.2.3 "'),
     [C + 'host: "10.1.2.3 " is not accepted; use a host name or IP address: no spaces, '
          "at most 253 characters"]),
    ("empty provider", channel(provider='""'),
     [C + 'provider: "" is not accepted; use 1 to 64 letters, digits, _ . or -']),
    ("TOML syntax error", "[channels.cmcc]\nport 7890\n",
     ["gw.toml: TOML syntax error: Expected '=' after a key in a key/value pair "
      "(at line 2, column 6)"]),
    ("no channels", "[gateway]\nlog_level = \"info\"\n",
     ["gw.toml: [channels] no channel is configured; add a [channels.NAME] table with "
      "provider, host, port, account, password, access_number and connections"]),
    ("empty file", "", ["gw.toml: [channels] no channel is configured; add a [channels.NAME] "
                        "table with provider, host, port, account, password, access_number "
                        "and connections"]),
    ("channels not a table", "channels = 5\n",
     ["gw.toml: channels: expected a table of channels, got 5"]),
    ("a channel not a table", "[channels]\ncmcc = 5\n",
     ["gw.toml: [channels] cmcc: expected a table, got 5"]),
    ("gateway not a table", 'gateway = "on"\n' + channel(),
     ['gw.toml: gateway: expected a table, got "on"']),
    ("bad channel name", channel(name='"cmcc gd"'),
     ['gw.toml: [channels."cmcc gd"] not a valid channel name; use 1 to 32 letters, digits, '
      "_ or -"]),
    ("channel name of 33 characters", channel(name="c" * 33),
     [f"gw.toml: [channels.{'c' * 33}] not a valid channel name; use 1 to 32 letters, "
      "digits, _ or -"]),
    ("a channel named default", channel(name="default"),
     ['gw.toml: [channels.default] a channel cannot be named "default": that key is a '
      "user's default number in uploads; choose another name"]),
    ("bad api_listen", '[gateway]\napi_listen = "localhost"\n' + channel(),
     ['gw.toml: [gateway] api_listen: "localhost" is not accepted; use host:port with a port '
      'in 1..65535, e.g. "127.0.0.1:8080" or "[::1]:8080"']),
    ("api_listen port out of range", '[gateway]\napi_listen = "[::1]:65536"\n' + channel(),
     ['gw.toml: [gateway] api_listen: "[::1]:65536" is not accepted; use host:port with a '
      'port in 1..65535, e.g. "127.0.0.1:8080" or "[::1]:8080"']),
    ("IPv6 metrics_listen without brackets", '[gateway]\nmetrics_listen = "::1:9108"\n' + channel(),
     ['gw.toml: [gateway] metrics_listen: "::1:9108" is not accepted; use host:port with a '
      'port in 1..65535, e.g. "127.0.0.1:8080" or "[::1]:8080"']),
    ("bad log_level", '[gateway]\nlog_level = "verbose"\n' + channel(),
     ['gw.toml: [gateway] log_level: "verbose" is not accepted; use "debug", "info", '
      '"warning" or "error"']),
    ("negative drain_timeout", "[gateway]\ndrain_timeout = -1\n" + channel(),
     ["gw.toml: [gateway] drain_timeout: -1 is out of range; use a number of seconds >= 0"]),
    ("empty store", '[gateway]\nstore = ""\n' + channel(),
     ['gw.toml: [gateway] store: the value (hidden) is not accepted; use a file path, or '
      '"postgresql://user@host:5432/database"']),
    ("store URL with a password", '[gateway]\nstore = "postgresql://gw:pw-Zq9@db/sms"\n'
     + channel(),
     ["gw.toml: [gateway] store: the value (hidden) holds a password; take it out of the URL "
      "and name the environment variable that holds it with store_password_env"]),
    ("store URL with a password parameter",
     '[gateway]\nstore = "postgresql://gw@db/sms?password=pw-Zq9"\n' + channel(),
     ["gw.toml: [gateway] store: the value (hidden) holds a password; take it out of the URL "
      "and name the environment variable that holds it with store_password_env"]),
    ("store URL without a database", '[gateway]\nstore = "postgresql://gw@db"\n' + channel(),
     ["gw.toml: [gateway] store: the value (hidden) is not accepted; use "
      "postgresql://user@host:5432/database (host and database)"]),
    ("store_password_env for an SQLite store",
     '[gateway]\nstore = "gw.sqlite"\nstore_password_env = "GW_DB"\n' + channel(),
     ['gw.toml: [gateway] store_password_env: is only for a PostgreSQL store; set store = '
      '"postgresql://user@host:5432/database", or remove it']),
    ("store_password_env not set",
     '[gateway]\nstore = "postgresql://gw@db/sms"\nstore_password_env = "GW_DB"\n' + channel(),
     ["gw.toml: [gateway] store_password_env: GW_DB is not set in the environment; export it "
      "before starting the gateway"]),
    ("several problems reported together",
     '[gateway]\nlog_level = "loud"\n[gatway]\n'
     + channel(port="70000", windw="16", account='"12"')
     + channel(name="ct", host=None, password=None, password_env='"CT_PASSWORD"'),
     ['gw.toml: [gateway] log_level: "loud" is not accepted; use "debug", "info", "warning" '
      'or "error"',
      "gw.toml: [gatway] unknown table; did you mean 'gateway'?",
      C + "port: 70000 is out of range; use 1..65535",
      C + 'account: "12" is not accepted; use exactly 6 ASCII digits (the SP_Id)',
      C + "windw: unknown key; did you mean 'window'?",
      'gw.toml: [channels.ct] host: missing required key; add e.g. host = "10.1.2.3"',
      "gw.toml: [channels.ct] password_env: CT_PASSWORD is not set in the environment; "
      "export it before starting the gateway"]),
]


@pytest.mark.parametrize("text, expected", [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_is_refused_with_each_problem_named(text, expected):
    assert problems_of(text) == expected
    assert all(SECRET not in line for line in expected)


def test_problems_come_in_file_order_not_schema_order():
    text = channel(max_sends="11", window="0") + '[gateway]\nlog_level = "loud"\n'
    assert problems_of(text) == [
        C + "max_sends: 11 is out of range; use 1..10",
        C + "window: 0 is out of range; use 1..256",
        'gw.toml: [gateway] log_level: "loud" is not accepted; use "debug", "info", "warning" '
        'or "error"']


def test_a_problem_has_file_section_key_and_message():
    with pytest.raises(ConfigError) as caught:
        parse_config(channel(port="70000"), "gw.toml", env={})
    (problem,) = caught.value.problems
    assert (problem.file, problem.section, problem.key, problem.message) == (
        "gw.toml", "channels.cmcc", "port", "70000 is out of range; use 1..65535")


def test_defaults_are_the_specs():
    config = parse_config(channel(), env={})
    cmcc = config.channels["cmcc"]
    assert (cmcc.window, cmcc.response_timeout, cmcc.max_sends, cmcc.heartbeat_interval) == \
        (16, 60, 3, 180)
    assert (cmcc.tps, cmcc.service_id, cmcc.max_parts, cmcc.connect_timeout) == (0, "", 10, 10)
    assert (cmcc.on_connection_lost, cmcc.verify_authenticator) == ("resend", "warn")
    assert cmcc.retry_for == 86400
    gateway = config.gateway
    assert (gateway.api_listen, gateway.metrics_listen, gateway.log_level) == \
        ("127.0.0.1:8080", "127.0.0.1:9108", "info")
    assert (gateway.report_timeout, gateway.drain_timeout) == (259200, 30)
    assert gateway.store == os.path.join(os.getcwd(), "cmpp-gateway.sqlite")


def test_the_seven_required_items_are_read_as_given():
    cmcc = parse_config(channel(), env={}).channels["cmcc"]
    assert (cmcc.name, cmcc.provider, cmcc.host, cmcc.port, cmcc.account, cmcc.password,
            cmcc.access_number, cmcc.connections) == \
        ("cmcc", "cmcc-gd", "10.1.2.3", 7890, "900001", SECRET, "10690001", 4)
    assert cmcc.password_env is None


def test_optional_keys_override_the_defaults():
    cmcc = parse_config(channel(window="32", tps="12.5", response_timeout="30",
                                on_connection_lost='"report"'), env={}).channels["cmcc"]
    assert (cmcc.window, cmcc.tps, cmcc.response_timeout, cmcc.on_connection_lost) == \
        (32, 12.5, 30, "report")


def test_msg_src_defaults_to_the_account_and_can_be_set():
    assert parse_config(channel(), env={}).channels["cmcc"].msg_src == "900001"
    assert parse_config(channel(msg_src='"SRC001"'), env={}).channels["cmcc"].msg_src == "SRC001"


def test_password_env_is_read_from_the_environment():
    text = channel(password=None, password_env='"CMCC_PASSWORD"')
    cmcc = parse_config(text, env={"CMCC_PASSWORD": SECRET}).channels["cmcc"]
    assert (cmcc.password, cmcc.password_env) == (SECRET, "CMCC_PASSWORD")


def test_password_env_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("CMCC_PASSWORD", SECRET)
    text = channel(password=None, password_env='"CMCC_PASSWORD"')
    assert parse_config(text).channels["cmcc"].password == SECRET


def test_an_unusable_password_in_the_environment_is_refused_without_showing_it():
    text = channel(password=None, password_env='"CMCC_PASSWORD"')
    bad = "密码" + SECRET
    assert problems_of(text, env={"CMCC_PASSWORD": bad}) == [
        C + "password_env: the value of CMCC_PASSWORD is not accepted; use 1 to 64 ASCII "
            "characters"]


def test_a_listen_address_is_split_into_host_and_port():
    assert split_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_host_port("[::1]:9108") == ("::1", 9108)
    assert split_host_port("metrics.local:1") == ("metrics.local", 1)
    for bad in ("127.0.0.1", ":8080", "[::1]", "host:0", "host:65536", "a b:80", "::1:80"):
        with pytest.raises(ValueError):
            split_host_port(bad)


def test_an_ipv6_listen_address_in_brackets_is_accepted():
    text = '[gateway]\napi_listen = "[::1]:8080"\nmetrics_listen = "[::]:9108"\n' + channel()
    gateway = parse_config(text, env={}).gateway
    assert (gateway.api_listen, gateway.metrics_listen) == ("[::1]:8080", "[::]:9108")


def test_a_relative_store_is_resolved_against_the_config_files_directory(tmp_path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "gw.toml"
    path.write_text('[gateway]\nstore = "data/gw.sqlite"\n' + channel(), encoding="utf-8")
    assert load_config(path, env={}).gateway.store == str(tmp_path / "etc" / "data" / "gw.sqlite")


def test_an_absolute_or_in_memory_store_is_kept(tmp_path):
    absolute = str(tmp_path / "gw.sqlite")
    text = f'[gateway]\nstore = "{absolute}"\n' + channel()
    assert parse_config(text, "/elsewhere/gw.toml", env={}).gateway.store == absolute
    text = '[gateway]\nstore = ":memory:"\n' + channel()
    assert parse_config(text, "/elsewhere/gw.toml", env={}).gateway.store == ":memory:"


def test_a_postgresql_store_is_kept_as_its_url_with_the_password_from_the_environment():
    text = ('[gateway]\nstore = "postgresql://gw@db.example:5433/sms?sslmode=require"\n'
            'store_password_env = "GW_DB"\n' + channel())
    config = parse_config(text, "/etc/gw.toml", env={"GW_DB": "db-Secret-42"})
    assert config.gateway.store == "postgresql://gw@db.example:5433/sms?sslmode=require"
    assert config.gateway.store_password == "db-Secret-42"
    assert "db-Secret-42" in config.secrets()                  # the log redactor hides it
    assert "db-Secret-42" not in describe_config(config) + repr(config)
    assert 'store_password_env = "GW_DB"' in describe_config(config)


def test_the_store_may_come_from_the_variable_store_env_names():
    """Where a Kubernetes Secret holds the database URL: the value is the store setting,
    checked as store is, and described with the variable's name beside it."""
    text = '[gateway]\nstore_env = "GW_URL"\nstore_password_env = "GW_DB"\n' + channel()
    env = {"GW_URL": "postgresql://gw@db.example/sms", "GW_DB": "db-Secret-42"}
    config = parse_config(text, "/etc/gw.toml", env=env)
    assert config.gateway.store == "postgresql://gw@db.example/sms"
    assert config.gateway.store_env == "GW_URL" and config.gateway.store_password == "db-Secret-42"
    assert 'store_env = "GW_URL"' in describe_config(config)
    sqlite = parse_config('[gateway]\nstore_env = "GW_URL"\n' + channel(), "/etc/gw.toml",
                          env={"GW_URL": "data/gw.sqlite"})
    assert sqlite.gateway.store == "/etc/data/gw.sqlite"


@pytest.mark.parametrize("table, env, expected", [
    ('store = "gw.sqlite"\nstore_env = "GW_URL"\n', {"GW_URL": "postgresql://gw@db/sms"},
     "store_env: give store or store_env, not both; remove one of them"),
    ('store_env = "GW_URL"\nstore_password_env = "GW_DB"\n', {"GW_DB": "pw"},
     "store_env: GW_URL is not set in the environment; export it before starting the gateway"),
    ('store_env = "GW_URL"\nstore_password_env = "GW_DB"\n',
     {"GW_URL": f"postgresql://gw:{SECRET}@db/sms", "GW_DB": "pw"},
     "store_env: the value of GW_URL holds a password; take it out of the URL and name the "
     "environment variable that holds it with store_password_env"),
    ('store_env = "GW_URL"\n', {"GW_URL": "postgresql://gw@db"},
     "store_env: the value of GW_URL is not accepted; use postgresql://user@host:5432/database "
     "(host and database)"),
], ids=["both", "unset", "password in the URL", "no database"])
def test_a_store_env_that_cannot_be_used_is_one_problem_naming_the_variable(table, env,
                                                                               expected):
    """One problem each (store_password_env is not blamed for a store that was refused), and
    the variable's value never shown."""
    assert problems_of("[gateway]\n" + table + channel(), env) == [f"gw.toml: [gateway] {expected}"]


def test_the_secret_never_appears_in_describe_config_or_repr():
    text = channel() + channel(name="ct", password=None, password_env='"CT_PASSWORD"')
    config = parse_config(text, "gw.toml", env={"CT_PASSWORD": SECRET + "-ct"})
    description = describe_config(config)
    assert SECRET not in description and SECRET not in repr(config)
    assert 'password = "******"' in description
    assert 'password_env = "CT_PASSWORD"' in description


def test_mask_secret_tells_nothing_about_the_secret():
    assert mask_secret(SECRET) == mask_secret("x") == "******"


def test_describe_config_lists_every_resolved_setting_as_toml():
    text = channel(tps="2.5") + channel(name="ct", password=None, password_env='"CT_PASSWORD"')
    config = parse_config(text, "gw.toml", env={"CT_PASSWORD": SECRET})
    shown = tomllib.loads(describe_config(config))
    assert shown["gateway"] == {k: v for k, v in dataclasses.asdict(config.gateway).items()
                                if v is not None and k != "store_password"}
    for name, chan in config.channels.items():
        expected = {k: v for k, v in dataclasses.asdict(chan).items() if v is not None}
        del expected["name"]
        if chan.password_env:
            del expected["password"]
        else:
            expected["password"] = "******"
        assert shown["channels"][name] == expected
    assert describe_config(config).startswith("# gw.toml: 2 channels\n")


def test_the_dataclasses_have_exactly_the_schemas_keys():
    assert [f.name for f in dataclasses.fields(GatewaySettings)] == \
        [f.name for f in GATEWAY_FIELDS] + ["store_password"]
    assert [f.name for f in dataclasses.fields(ChannelConfig)] == \
        ["name"] + [f.name for f in CHANNEL_FIELDS]


def test_the_configs_are_frozen():
    config = parse_config(channel(), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.channels["cmcc"].port = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gateway.log_level = "debug"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_check_config_prints_the_description_and_returns_0(tmp_path, capsys):
    path = write(tmp_path, channel())
    assert check_config_main(str(path)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {path}: 1 channel\n[gateway]\n")
    assert "[channels.cmcc]" in out and 'password = "******"' in out
    assert SECRET not in out and "warning" not in out


def test_check_config_prints_every_problem_and_returns_1(tmp_path, capsys):
    path = write(tmp_path, channel(port="70000", windw="16"))
    assert check_config_main(str(path)) == 1
    assert capsys.readouterr().out == (
        f"{path}: [channels.cmcc] port: 70000 is out of range; use 1..65535\n"
        f"{path}: [channels.cmcc] windw: unknown key; did you mean 'window'?\n")


def test_check_config_never_prints_the_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CT_PASSWORD", SECRET + "-ct")
    good = channel() + channel(name="ct", password=None, password_env='"CT_PASSWORD"')
    assert check_config_main(str(write(tmp_path, good))) == 0
    assert check_config_main(str(write(tmp_path, channel(port="0") + "[gatway]\n"))) == 1
    assert check_config_main(str(write(tmp_path, channel(password='"é' + SECRET + '"')))) == 1
    assert SECRET not in capsys.readouterr().out


def test_check_config_of_a_missing_file_returns_1(tmp_path, capsys):
    path = tmp_path / "absent.toml"
    assert check_config_main(str(path)) == 1
    assert capsys.readouterr().out == f"{path}: cannot read the file: No such file or directory\n"


def test_check_config_warns_when_the_file_is_world_readable(tmp_path, capsys):
    path = write(tmp_path, channel(), mode=0o644)
    assert check_config_main(str(path)) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"\nwarning: {path} is world-readable and holds secrets; chmod 600 it\n")


def test_check_config_does_not_warn_when_the_file_is_private(tmp_path, capsys):
    path = write(tmp_path, channel(), mode=0o600)
    assert check_config_main(str(path)) == 0
    assert "world-readable" not in capsys.readouterr().out


def test_check_config_warns_about_a_world_readable_file_with_errors_too(tmp_path, capsys):
    path = write(tmp_path, channel(port="0"), mode=0o604)
    assert check_config_main(str(path)) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: [channels.cmcc] port: 0 is out of range; use 1..65535",
        f"warning: {path} is world-readable and holds secrets; chmod 600 it"]


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_bytes(channel().encode("utf-8") + b"# \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    offset = len(channel().encode("utf-8")) + 2
    assert str(caught.value) == (f"{path}: not UTF-8 text (byte {offset} is 0xFF); save the "
                                 "file as UTF-8")


def test_the_check_config_command_runs_check_config_main(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="cmpp-gateway")
    add_check_config_command(parser.add_subparsers(dest="command", required=True))
    path = write(tmp_path, channel())
    args = parser.parse_args(["check-config", str(path)])
    assert (args.command, args.file) == ("check-config", str(path))
    assert args.func(args) == 0
    assert "[channels.cmcc]" in capsys.readouterr().out


def test_the_example_loads_with_its_password_in_the_environment():
    config = load_config(FIXTURES / "example.toml", env={"CMPP_BJ_PASSWORD": SECRET})
    assert list(config.channels) == ["cmcc-gd", "cmcc-bj"]
    gd, bj = config.channels.values()
    assert gd.provider != bj.provider
    assert (gd.password_env, bj.password_env, bj.password) == (None, "CMPP_BJ_PASSWORD", SECRET)
    assert config.gateway.store == str(FIXTURES / "cmpp-gateway.sqlite")


def test_the_example_is_refused_without_its_password_in_the_environment():
    with pytest.raises(ConfigError) as caught:
        load_config(FIXTURES / "example.toml", env={})
    assert [p.key for p in caught.value.problems] == ["password_env"]


def test_the_minimal_file_holds_only_the_seven_required_keys_and_loads():
    document = tomllib.loads((FIXTURES / "minimal.toml").read_text(encoding="utf-8"))
    assert list(document) == ["channels"]
    (table,) = document["channels"].values()
    assert set(table) == set(SEVEN)
    config = load_config(FIXTURES / "minimal.toml", env={})
    (cmcc,) = config.channels.values()
    assert (cmcc.window, cmcc.connections) == (16, 1)


def test_a_world_readable_file_whose_secrets_are_all_in_the_environment_is_not_warned_about(
        tmp_path, capsys):
    text = channel(password=None, password_env='"CMPP_PASSWORD"')
    path = tmp_path / "gw.toml"
    path.write_text(text)
    path.chmod(0o644)
    assert world_readable_warning(str(path)) is None
    path.write_text(channel())
    assert world_readable_warning(str(path)).endswith("holds secrets; chmod 600 it")


def test_check_config_names_each_channels_receipt_table_and_refuses_bad_tables(tmp_path, capsys):
    tables = tmp_path / "providers"
    tables.mkdir()
    (tables / "cmcc-gd.toml").write_text('extends = "default"\n')
    path = write(tmp_path, f'[gateway]\nproviders = "{tables}"\n' + channel() +
                 channel("other", provider='"acme"'), mode=0o600)
    assert check_config_main(str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        f"# channel cmcc: receipt codes of provider 'cmcc-gd' from {tables / 'cmcc-gd.toml'}",
        "# channel other: receipt codes of provider 'acme' from "
        f"{Path(gateway.status.__file__).parent / 'providers' / 'default.toml'}"]
    (tables / "cmcc-gd.toml").write_text('extends = "nothing"\n')
    assert check_config_main(str(path)) == 1
    assert "cmcc-gd.toml: extends: no table named 'nothing'" in capsys.readouterr().out


def test_unmatched_reports_are_kept_for_the_report_timeout_unless_set():
    config = parse_config("[gateway]\nreport_timeout = 600\n" + channel(), env={})
    assert (config.gateway.unmatched_report_timeout, config.gateway.retention) == (600, 30 * 86400)
    config = parse_config("[gateway]\nunmatched_report_timeout = 60\nretention = 3600\n" +
                          channel(), env={})
    assert (config.gateway.unmatched_report_timeout, config.gateway.retention) == (60, 3600)
    assert config.api.idempotency_window == 86400 and config.api.repeat_keys == 1_000_000


@pytest.mark.parametrize("table, key, value, message", [
    ("gateway", "retention", "0", "0 is out of range; use a number of seconds > 0"),
    ("gateway", "unmatched_report_timeout", "-1",
     "-1 is out of range; use a number of seconds > 0"),
    ("api", "idempotency_window", "0", "0 is out of range; use a number of seconds > 0"),
    ("api", "repeat_keys", "10", "10 is out of range; use 1000..100000000"),
])
def test_the_ceiling_settings_are_checked(table, key, value, message):
    assert problems_of(f"[{table}]\n{key} = {value}\n" + channel()) == \
        [f"gw.toml: [{table}] {key}: {message}"]
