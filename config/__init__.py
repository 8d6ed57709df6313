"""Configuration: the schema (``schema``: one dataclass per section) and the loader
(``loader``: TOML, environment, CLI overrides, validation). Imports nothing else
from TrustChain."""

from trustchain.config.loader import ConfigError, default_config_path, load_config
from trustchain.config.schema import (
    CA_KEY_TYPES,
    SUBSCRIBER_KEY_TYPES,
    AcmeConfig,
    CaConfig,
    Config,
    CtLogConfig,
    HsmConfig,
    HttpConfig,
    MonitorConfig,
    RenewalConfig,
    ResolverConfig,
    RuntimeConfig,
    SupervisionConfig,
    TrustConfig,
)

__all__ = [
    "CA_KEY_TYPES",
    "SUBSCRIBER_KEY_TYPES",
    "AcmeConfig",
    "CaConfig",
    "Config",
    "ConfigError",
    "CtLogConfig",
    "HsmConfig",
    "HttpConfig",
    "MonitorConfig",
    "RenewalConfig",
    "ResolverConfig",
    "RuntimeConfig",
    "SupervisionConfig",
    "TrustConfig",
    "default_config_path",
    "load_config",
]
