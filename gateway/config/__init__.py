"""The configuration: one TOML file, validated at start into frozen dataclasses.

``file`` reads the file (``load_config``, ``parse_config``) into ``Config``: the gateway's
settings, its channels (the UMS form's seven fields and their timers), and the API's apps and
templates (``api``); every problem is collected and named with its table, key and fix
(``ConfigError``). ``schema`` holds the field specs and the small checks they use.

Offers: Config, GatewaySettings, ChannelConfig, ApiSettings, AppConfig, TemplateConfig,
ConfigError, Problem, load_config, parse_config, describe_config, mask_secret,
world_readable_warning, PASSWORD_CHECK, split_host_port, toml_value, callback_url_problem (the
check a callback URL passes), CALLBACK_FORMATS and JSMS_RETRIES.
"""

from .api import (
    CALLBACK_FORMATS,
    JSMS_RETRIES,
    ApiSettings,
    AppConfig,
    TemplateConfig,
    callback_url_problem,
)
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
from .schema import split_host_port, toml_value

__all__ = [
    "CALLBACK_FORMATS", "JSMS_RETRIES", "PASSWORD_CHECK", "ApiSettings", "AppConfig",
    "ChannelConfig", "Config", "ConfigError",
    "GatewaySettings", "Problem", "TemplateConfig", "describe_config", "load_config",
    "mask_secret", "parse_config", "split_host_port", "toml_value", "world_readable_warning",
    "callback_url_problem",
]
