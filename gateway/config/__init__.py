"""The configuration: one TOML file, validated at start into frozen dataclasses.

``file`` reads the file (``load_config``, ``parse_config``) into ``Config``: the gateway's
settings, its channels (the UMS form's seven fields and their timers), and the API's apps and
templates (``api``), and the operator's console (``console``); every problem is collected and named
with its table, key and fix (``ConfigError``). ``schema`` holds the field specs and the small
checks they use; the console checks the apps made in it with the same specs
(``read_app_settings``, ``app_from_settings``).

Offers: Config, GatewaySettings, ChannelConfig, ApiSettings, AppConfig, TemplateConfig,
ConsoleSettings, ConfigError, Problem, load_config, parse_config, describe_config,
mask_secret, world_readable_warning, PASSWORD_CHECK, split_host_port, toml_value,
callback_url_problem (the check a callback URL passes), CALLBACK_FORMATS and JSMS_RETRIES; for
apps made in the console: APP_SETTINGS (the fields an operator sets), CONSOLE_APP_NAME and its
rule in words, read_app_settings, app_from_settings; the field kinds BOOLEAN, STRINGS; and
is_database_url (whether a ``store`` setting names a PostgreSQL database).
"""

from .api import (
    APP_SETTINGS,
    BOOLEAN,
    CALLBACK_FORMATS,
    CONSOLE_APP_NAME,
    CONSOLE_APP_NAME_RULE,
    JSMS_RETRIES,
    STRINGS,
    ApiSettings,
    AppConfig,
    TemplateConfig,
    app_from_settings,
    callback_url_problem,
    read_app_settings,
)
from .console import ConsoleSettings
from .file import (
    PASSWORD_CHECK,
    ChannelConfig,
    Config,
    ConfigError,
    GatewaySettings,
    Problem,
    describe_config,
    load_config,
    mask_secret,
    parse_config,
    world_readable_warning,
)
from .schema import is_database_url, split_host_port, toml_value

__all__ = [
    "APP_SETTINGS", "BOOLEAN", "CALLBACK_FORMATS", "CONSOLE_APP_NAME", "CONSOLE_APP_NAME_RULE",
    "JSMS_RETRIES", "PASSWORD_CHECK", "STRINGS", "ApiSettings", "AppConfig", "ChannelConfig",
    "Config", "ConfigError", "ConsoleSettings", "GatewaySettings", "Problem", "TemplateConfig",
    "app_from_settings", "callback_url_problem", "describe_config", "is_database_url",
    "load_config",
    "mask_secret", "parse_config", "read_app_settings", "split_host_port", "toml_value",
    "world_readable_warning",
]
