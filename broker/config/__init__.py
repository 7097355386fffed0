"""The broker's configuration: a TOML file, validated whole before anything starts.

    settings.py   the frozen settings the rest of the broker reads (BrokerConfig and its sections)
    models.py     the FILE as pydantic models, one per section or entry; unknown fields refused
    fields.py     value types (URLs, org numbers, identities, ranges) and their messages
    secrets.py    `{ file = ... }` / `{ env = ... }` references, resolved against the file's folder
    material.py   key loading: private JWKs, 32-byte keys, PEM, JWKS
    domain.py     models -> settings, with the rules that relate values (a tenant's client exists, ...)
    problems.py   every mistake with its dotted path, raised as one ConfigurationError
    loader.py     load_config / parse_config / parse_tenant

Every mistake is reported at once, each with the dotted path of its field
(`tenants.oslo.orgnr_parent: must be an organisation number of exactly 9 digits`); no message holds a
secret's value.
"""

from broker.config.loader import load_config, parse_config, parse_tenant
from broker.config.settings import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EXPIRY_SKEW,
    DEFAULT_LISTEN,
    DEFAULT_REQUEST_TIMEOUT,
    LOG_FORMATS,
    LOG_LEVELS,
    BrokerConfig,
    CacheSettings,
    LimitsSettings,
    ServerSettings,
    StoreSettings,
    StsSettings,
    TelemetrySettings,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_EXPIRY_SKEW",
    "DEFAULT_LISTEN",
    "DEFAULT_REQUEST_TIMEOUT",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "BrokerConfig",
    "CacheSettings",
    "LimitsSettings",
    "ServerSettings",
    "StoreSettings",
    "StsSettings",
    "TelemetrySettings",
    "load_config",
    "parse_config",
    "parse_tenant",
]
