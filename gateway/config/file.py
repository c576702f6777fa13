"""The daemon's configuration: one TOML file, read at start into frozen dataclasses.

Every problem in the file is collected before anything is refused, and each one names the
file, the table, the key and what would be accepted, so that one run of
``cmpp-gateway check-config FILE`` shows everything to fix. Passwords may come from the
environment (``password_env``); they never appear in messages, reprs or descriptions.
The field specs (types, defaults, checks) live in ``gateway.config.schema``.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .api import (
    ApiSettings,
    AppConfig,
    TemplateConfig,
    check_unique_keys,
    read_api,
    read_app,
    read_template,
)
from .console import CONSOLE_FIELDS, ConsoleSettings, read_console
from .schema import (
    CHANNEL_FIELDS,
    GATEWAY_FIELDS,
    Report,
    is_database_url,
    read_table,
    store_setting,
    toml_key,
    toml_value,
    unknown_key_message,
)

TABLES = ("gateway", "channels", "api", "apps", "templates", "console")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
PASSWORD_CHECK = next(f.check for f in CHANNEL_FIELDS if f.name == "password")
NO_CHANNEL = ("no channel is configured; add a [channels.NAME] table with provider, host, port, "
              "account, password, access_number and connections")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file. ``section`` is the table ("gateway",
    "channels.cmcc"), empty for the file as a whole; ``key`` is empty for a whole table."""

    file: str
    section: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"[{self.section}] " if self.section else ""
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}: {where}{key}{self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used: ``problems`` lists all that is wrong in it, and
    ``str()`` gives one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class GatewaySettings:
    """The [gateway] table: daemon-wide settings. ``store`` is an absolute path (or
    ":memory:"), or a postgresql:// URL whose password, if any, is ``store_password`` (read
    from the variable ``store_password_env`` names; left out of repr); it was read from the
    variable ``store_env`` names when that is set. Timeouts are in seconds."""

    store: str
    api_listen: str
    metrics_listen: str
    log_level: str
    report_timeout: float
    drain_timeout: float
    providers: str = ""
    unmatched_report_timeout: float = 259200
    retention: float = 30 * 86400
    store_password_env: str | None = None
    store_env: str | None = None
    store_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ChannelConfig:
    """One [channels.NAME] table: the UMS channel form's seven items and the session's tuning.

    ``password`` is the shared secret, whether written in the file or read from the variable
    named by ``password_env`` (None when it was written in the file); it is left out of repr.
    ``msg_src`` is the account unless set.
    """

    name: str
    provider: str
    host: str
    port: int
    account: str
    password: str = field(repr=False)
    password_env: str | None
    access_number: str
    connections: int
    window: int
    tps: float
    service_id: str
    msg_src: str
    heartbeat_interval: float
    response_timeout: float
    max_sends: int
    max_parts: int
    connect_timeout: float
    on_connection_lost: str
    verify_authenticator: str
    center_signature: str = ""
    retry_for: float = 86400.0

    @property
    def signature_room(self) -> int:
        """Bytes the first part of a long message keeps free for ``center_signature``: the
        signature in UCS2, as the center adds it."""
        return len(self.center_signature.encode("utf-16-be"))


@dataclass(frozen=True)
class Config:
    """A whole, valid configuration; ``source`` is the file it came from."""

    gateway: GatewaySettings
    channels: dict[str, ChannelConfig]
    source: str
    api: ApiSettings = ApiSettings()
    apps: dict[str, AppConfig] = field(default_factory=dict)
    templates: dict[int, TemplateConfig] = field(default_factory=dict)
    console: ConsoleSettings = ConsoleSettings()

    def secrets(self) -> list[str]:
        """Every secret in the configuration, for the log redactor."""
        return [c.password for c in self.channels.values()] + \
            [a.master_secret for a in self.apps.values()] + \
            [p for p in (self.gateway.store_password, self.console.session_key) if p]


class _Section:
    """Collects the problems of one table of the file, and remembers whether there were any."""

    def __init__(self, problems: list[Problem], file: str, name: str) -> None:
        self.problems, self.file, self.name = problems, file, name
        self.failed = False

    def report(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.name, key, message))
        self.failed = True


def load_config(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the TOML file at ``path``; see parse_config.

    ConfigError also when the file cannot be read or is not UTF-8 text.
    """
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError([Problem(source, "", "", f"cannot read the file: {error.strerror}")]) \
            from None
    except UnicodeDecodeError as error:
        raise ConfigError([Problem(source, "", "", f"not UTF-8 text (byte {error.start} is "
                                                   f"0x{error.object[error.start]:02X}); save "
                                                   "the file as UTF-8")]) from None
    return parse_config(text, source, env)


def parse_config(text: str, source: str = "<string>",
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate the TOML ``text`` of the file ``source`` into a Config.

    ``env`` (os.environ by default) supplies the passwords named by ``password_env``. A
    relative ``store`` is taken relative to the directory of ``source`` (of the working
    directory when source is a "<pseudo-name>"). ConfigError lists every problem found: a TOML
    syntax error alone, or else all the unknown, missing and invalid keys of every table.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([Problem(source, "", "", f"TOML syntax error: {error}")]) from None
    env = os.environ if env is None else env
    problems: list[Problem] = []
    gateway, channels = None, {}
    # Tables in file order, so that problems are too; then the absent ones, as empty tables.
    for key in [*document, *(table for table in TABLES if table not in document)]:
        value = document.get(key, {})
        if key == "gateway":
            gateway = _read_gateway(value, source, problems, env)
        elif key == "channels":
            channels = _read_channels(value, source, problems, env)
        elif key not in TABLES:
            _report_unknown_table(key, value, source, problems)
    api = _read_api(document.get("api", {}), source, problems)
    apps = _read_apps(document.get("apps", {}), source, problems, env, channels)
    templates = _read_templates(document.get("templates", {}), source, problems, apps, channels)
    console = _read_console(document.get("console", {}), source, problems, env, gateway)
    if problems:
        raise ConfigError(problems)
    return Config(gateway, channels, source, api, apps, templates, console)


def _subtables(value, name: str, source: str, problems: list[Problem]) -> dict:
    if isinstance(value, dict):
        return value
    _Section(problems, source, "").report(name, f"expected a table, got {toml_value(value)}")
    return {}


def _read_api(table, source: str, problems: list[Problem]) -> ApiSettings:
    table = _subtables(table, "api", source, problems)
    return read_api(table, _Section(problems, source, "api").report) or ApiSettings()


def _read_console(table, source: str, problems: list[Problem], env,
                  gateway: GatewaySettings | None) -> ConsoleSettings:
    table = _subtables(table, "console", source, problems)
    report = _Section(problems, source, "console").report
    taken = {} if gateway is None else {"[gateway] api_listen": gateway.api_listen,
                                        "[gateway] metrics_listen": gateway.metrics_listen}
    values = read_table(table, CONSOLE_FIELDS, report)
    return read_console(values, report, env, taken) or ConsoleSettings()


def _named_tables(tables, kind: str, source: str, problems: list[Problem]):
    """(KEY, table, report) of each [kind.KEY]; one that is not a table is reported and
    skipped."""
    for key, table in _subtables(tables, kind, source, problems).items():
        section = _Section(problems, source, f"{kind}.{toml_key(key)}")
        if isinstance(table, dict):
            yield key, table, section.report
        else:
            section.report("", f"expected a table, got {toml_value(table)}")


def _read_apps(tables, source, problems, env, channels) -> dict[str, AppConfig]:
    apps = {}
    for name, table, report in _named_tables(tables, "apps", source, problems):
        app = read_app(name, table, report, env, channels)
        if app is not None:
            apps[name] = app
    check_unique_keys(apps, _Section(problems, source, "apps").report)
    return apps


def _read_templates(tables, source, problems, apps, channels) -> dict[int, TemplateConfig]:
    templates = {}
    for key, table, report in _named_tables(tables, "templates", source, problems):
        template = read_template(key, table, report, apps, channels)
        if template is not None:
            templates[template.id] = template
    return templates


def _report_unknown_table(key: str, value, source: str, problems: list[Problem]) -> None:
    """A top-level table or key other than [gateway] and [channels]."""
    message = unknown_key_message(key, TABLES, isinstance(value, dict))
    if isinstance(value, dict):
        _Section(problems, source, toml_key(key)).report("", message)
    else:
        _Section(problems, source, "").report(toml_key(key), message)


def _read_gateway(table, source: str, problems: list[Problem],
                  env: Mapping[str, str]) -> GatewaySettings | None:
    if not isinstance(table, dict):
        _Section(problems, source, "").report("gateway", f"expected a table, got "
                                                         f"{toml_value(table)}")
        return None
    section = _Section(problems, source, "gateway")
    values = read_table(table, GATEWAY_FIELDS, section.report)
    if values.get("store_env") is not None:
        _store_from_env(table, values, env, section.report)
    password = _store_password(values, env, section.report)
    if section.failed:
        return None
    providers = values["providers"] and _resolve_store(values["providers"], source)
    unmatched = values["unmatched_report_timeout"]
    return GatewaySettings(**{**values, "store": _resolve_store(values["store"], source),
                              "providers": providers, "store_password": password,
                              "unmatched_report_timeout":
                              values["report_timeout"] if unmatched is None else unmatched})


def _store_from_env(table: dict, values: dict, env: Mapping[str, str], report: Report) -> None:
    """Put in ``values["store"]`` the value of the variable store_env names (where a
    Kubernetes Secret puts a database URL, say), checked as ``store`` is; otherwise leave
    ``store`` out of ``values`` and report why (the variable's value is never shown)."""
    variable = values["store_env"]
    values.pop("store", None)
    if "store" in table:
        report("store_env", "give store or store_env, not both; remove one of them")
    elif not env.get(variable):
        report("store_env", f"{variable} is not set in the environment; export it before "
                            "starting the gateway")
    elif problem := store_setting(env[variable]):
        report("store_env", f"the value of {variable} {problem}")
    else:
        values["store"] = env[variable]


def _store_password(values: dict, env: Mapping[str, str], report: Report) -> str | None:
    """The PostgreSQL store's password, from the variable store_password_env names (None
    when not named: then libpq's PGPASSWORD or ~/.pgpass may still give one; None too when
    ``store`` itself was refused, which was reported)."""
    variable = values.get("store_password_env")
    if variable is None or "store" not in values:
        return None
    if not is_database_url(values.get("store") or ""):
        report("store_password_env", "is only for a PostgreSQL store; set store = "
                                     '"postgresql://user@host:5432/database", or remove it')
        return None
    secret = env.get(variable)
    if not secret:
        report("store_password_env", f"{variable} is not set in the environment; export it "
                                     "before starting the gateway")
    return secret


def _resolve_store(store: str, source: str) -> str:
    """A path (the store, the providers directory) made absolute against the config file's
    directory; a database URL as it is."""
    if store == ":memory:" or os.path.isabs(store) or is_database_url(store):
        return store
    pseudo = source.startswith("<") and source.endswith(">")
    base = os.getcwd() if pseudo else os.path.dirname(os.path.abspath(source))
    return os.path.join(base, store)


def _read_channels(tables, source: str, problems: list[Problem],
                   env: Mapping[str, str]) -> dict[str, ChannelConfig]:
    if not isinstance(tables, dict):
        _Section(problems, source, "").report("channels", "expected a table of channels, got "
                                                          f"{toml_value(tables)}")
        return {}
    if not tables:
        _Section(problems, source, "channels").report("", NO_CHANNEL)
    channels = {}
    for name, table in tables.items():
        channel = _read_channel(name, table, _Section(problems, source, "channels"), env)
        if channel is not None:
            channels[name] = channel
    return channels


def _read_channel(name: str, table, parent: _Section,
                  env: Mapping[str, str]) -> ChannelConfig | None:
    """The channel NAME, or None when a problem was reported for it."""
    if not isinstance(table, dict):
        parent.report(toml_key(name), f"expected a table, got {toml_value(table)}")
        return None
    section = _Section(parent.problems, parent.file, f"channels.{toml_key(name)}")
    if not CHANNEL_NAME.fullmatch(name):
        section.report("", "not a valid channel name; use 1 to 32 letters, digits, _ or -")
    elif name == "default":
        section.report("", 'a channel cannot be named "default": that key is a user\'s '
                           "default number in uploads; choose another name")
    values = read_table(table, CHANNEL_FIELDS, section.report)
    password = _resolve_password(table, values, env, section.report)
    if section.failed:
        return None
    return ChannelConfig(name=name, **{**values, "password": password,
                                       "msg_src": values["msg_src"] or values["account"]})


def _resolve_password(table: dict, values: dict, env: Mapping[str, str],
                      report: Report) -> str | None:
    """The channel's secret: from the file or from the environment; exactly one must be
    given. None (and a problem reported) when it cannot be had."""
    given = [key for key in ("password", "password_env") if key in table]
    if len(given) == 2:
        report("password", "give password or password_env, not both")
    elif not given:
        report("password", 'missing required key; add password = "..." or '
                           'password_env = "VARIABLE"')
    elif values.get("password") is not None:
        return values["password"]
    elif values.get("password_env") is not None:
        return _password_from_env(values["password_env"], env, report)
    return None


def _password_from_env(variable: str, env: Mapping[str, str], report: Report) -> str | None:
    secret = env.get(variable)
    if secret is None:
        report("password_env", f"{variable} is not set in the environment; export it before "
                               "starting the gateway")
        return None
    reason = PASSWORD_CHECK(secret)
    if reason is not None:
        report("password_env", f"the value of {variable} {reason}")
        return None
    return secret


def mask_secret(secret: str) -> str:
    """A stand-in for ``secret`` that tells nothing about it, not even its length."""
    return "******"


def describe_config(config: Config) -> str:
    """The configuration as TOML for people: every default filled in, paths resolved, the
    password masked (or ``password_env`` shown in its place when it came from there)."""
    count = len(config.channels)
    lines = [f"# {config.source}: {count} channel{'s' if count != 1 else ''}", "[gateway]"]
    lines += [f"{f.name} = {toml_value(getattr(config.gateway, f.name))}"
              for f in fields(config.gateway)
              if f.name != "store_password" and getattr(config.gateway, f.name) is not None]
    for channel in config.channels.values():
        lines += ["", f"[channels.{toml_key(channel.name)}]"]
        lines += [f"{name} = {toml_value(value)}" for name, value in _shown_settings(channel)]
    if config.apps or config.templates:
        lines += ["", "[api]"] + [f"{f.name} = {_shown(getattr(config.api, f.name))}"
                                  for f in fields(config.api)]
    for app in config.apps.values():
        lines += ["", f"[apps.{toml_key(app.name)}]"]
        for f in fields(app):
            value = getattr(app, f.name)
            if f.name == "name" or value is None or (f.name == "master_secret"
                                                     and app.master_secret_env):
                continue
            shown = mask_secret(value) if f.name == "master_secret" else value
            lines.append(f"{f.name} = {_shown(shown)}")
    for template in config.templates.values():
        lines += ["", f"[templates.{template.id}]"]
        lines += [f"{f.name} = {toml_value(getattr(template, f.name))}"
                  for f in fields(template) if f.name != "id"]
    if config.console.enabled:
        lines += ["", "[console]"] + [f"{f.name} = {toml_value(getattr(config.console, f.name))}"
                                      for f in fields(config.console) if f.name != "session_key"]
    return "\n".join(lines)


def _shown(value) -> str:
    """A value as TOML, arrays of strings and numbers included."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_value(value)


def _shown_settings(channel: ChannelConfig) -> Iterator[tuple[str, object]]:
    for f in fields(channel):
        value = getattr(channel, f.name)
        if f.name == "name" or value is None or (f.name == "password" and channel.password_env):
            continue
        yield f.name, mask_secret(value) if f.name == "password" else value


def world_readable_warning(path: str) -> str | None:
    """A warning when others may read the file at ``path`` and it holds a secret written in
    it (a channel's ``password`` or an app's ``master_secret``; secrets named by ``*_env``
    keys are not in the file). A file that cannot be read or parsed is assumed to hold one.
    None otherwise, or when the file cannot be examined."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH and _holds_secrets(path):
        return f"warning: {path} is world-readable and holds secrets; chmod 600 it"
    return None


def _holds_secrets(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except (OSError, ValueError):
        return True
    tables = [*_tables(document.get("channels")), *_tables(document.get("apps"))]
    return any("password" in t or "master_secret" in t for t in tables)


def _tables(section) -> list[dict]:
    if not isinstance(section, dict):
        return []
    return [value for value in section.values() if isinstance(value, dict)]
