"""Settings: env files, environment variables, the [dbtools] section of setup.cfg; URLs.

One module per thing it holds: `sources` (where settings and URLs are read from: env files,
the environment, setup.cfg, the project root, and the line said outside any project),
`settings` (the Settings object, the range of every numeric setting, and `load_settings`),
`names` (the table and schema lists of setup.cfg, quoted identifiers included), `urls` (a URL
parsed once into `UrlParts`, the source of every connection form) and `redaction` (the
registry of known passwords, `redact` and `mask_url`). This package exports the public API;
callers import it as `dbtools.config`.
"""

from dbtools.config.names import split_names
from dbtools.config.redaction import mask_url, redact, register_secret
from dbtools.config.settings import ENV_NUMBERS, NUMBERS, Settings, load_settings
from dbtools.config.sources import ENV_FILES, ENV_VARS, ENVS, find_root, no_project
from dbtools.config.urls import UrlParts, parse_url

__all__ = [
    "ENVS",
    "ENV_FILES",
    "ENV_NUMBERS",
    "ENV_VARS",
    "NUMBERS",
    "Settings",
    "UrlParts",
    "find_root",
    "load_settings",
    "mask_url",
    "no_project",
    "parse_url",
    "redact",
    "register_secret",
    "split_names",
]
