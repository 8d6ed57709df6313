"""Configuration schema and loader (imports nothing else from TrustChain)."""

from trustchain.config.loader import (
    CaConfig,
    Config,
    ConfigError,
    CtLogConfig,
    HsmConfig,
    HttpConfig,
    MonitorConfig,
    RenewalConfig,
    RuntimeConfig,
    SupervisionConfig,
    default_config_path,
    load_config,
)

__all__ = [
    "CaConfig",
    "Config",
    "ConfigError",
    "CtLogConfig",
    "HsmConfig",
    "HttpConfig",
    "MonitorConfig",
    "RenewalConfig",
    "RuntimeConfig",
    "SupervisionConfig",
    "default_config_path",
    "load_config",
]
