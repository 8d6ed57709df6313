"""The configuration loader: TOML file, environment, CLI overrides, validation.

Precedence, lowest first: the schema's defaults (``trustchain.config.schema``)
< the TOML file < environment variables ``TRUSTCHAIN_<SECTION>__<KEY>`` (double
underscore between section and key, e.g. ``TRUSTCHAIN_RUNTIME__LOG_LEVEL=DEBUG``;
the value is read as a TOML value when it parses as one, else as a string) <
CLI flags.

Unknown keys and bad values are refused with the key's dotted path and what
is allowed, before anything starts; a renamed key (``schema.RENAMED_KEYS``) is
refused with its new name. Relative paths are relative to the
working directory (``make run`` runs from the checkout). This module imports
nothing from the rest of TrustChain but the schema; each section is a frozen
dataclass whose ``field(metadata=...)`` carries its constraints: ``choices``,
``min``, ``max`` (a ``Literal`` type is checked as its choices).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .schema import CA_KEY_TYPES, RENAMED_KEYS, SUBSCRIBER_KEY_TYPES, Config

ENV_PREFIX = "TRUSTCHAIN_"


class ConfigError(ValueError):
    """A config file, variable or flag that cannot be used; says which key and why."""


def default_config_path() -> Path:
    return Path(str(importlib.resources.files("trustchain.config") / "default.toml"))


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load ``path`` (default: the packaged default.toml), then env, then overrides."""
    path = Path(path) if path is not None else default_config_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for dotted, value in _from_env(os.environ if env is None else env).items():
        _set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return check_semantics(_build(Config, data, ""))


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        found[f"{section.lower()}.{key.lower()}"] = value
    return found


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is not a section")
        node = child
    node[last] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        dotted = f"{prefix}{unknown[0]}"
        if dotted in RENAMED_KEYS:
            raise ConfigError(f"{dotted} was renamed {RENAMED_KEYS[dotted]}; use that key instead")
        raise ConfigError(f"unknown key {dotted}; {where} allows: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        tp = hints[name]
        dotted = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, value, dotted + ".")  # type: ignore[arg-type]
        else:
            values[name] = _check(value, tp, dotted, fields[name].metadata)
    return cls(**values)


def _check(value: Any, tp: Any, dotted: str, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":
            return None
        (tp,) = [a for a in get_args(tp) if a is not type(None)]
    if origin is Literal:  # one of these values, said as "choices" are
        choices = get_args(tp)
        meta = {**meta, "choices": choices}
        tp = type(choices[0])
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{dotted} must be a non-empty path string, not {value!r}")
        return Path(value)
    if origin is list:
        (item_type,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{dotted} must be a list")
        return [_check(v, item_type, f"{dotted}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        _, value_type = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{dotted} must be a table")
        return {k: _check(v, value_type, f"{dotted}.{k}", meta) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{dotted} must be {_article(tp)}, not {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{dotted} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{dotted} must be at least {meta['min']}; got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{dotted} must be at most {meta['max']}; got {value!r}")
    return value


def _article(tp: type) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, tp.__name__)


def validate_key_type(value: str, dotted: str, known: tuple[str, ...] = CA_KEY_TYPES) -> str:
    if value not in known:
        raise ConfigError(f"{dotted} must be one of {', '.join(known)}; got {value!r}")
    return value


def check_semantics(config: Config) -> Config:
    """Cross-field checks that the schema alone cannot say."""
    for label, key_type in config.hsm.keys.items():
        validate_key_type(key_type, f"hsm.keys.{label}")
    supervision = config.supervision
    if supervision.backoff_min_s > supervision.backoff_max_s:
        raise ConfigError("supervision.backoff_min_s must be at most supervision.backoff_max_s")
    ca = config.ca
    if not ca.min_validity_s <= ca.default_validity_s <= ca.max_validity_s:
        raise ConfigError(
            "ca.default_validity_s must lie between ca.min_validity_s and ca.max_validity_s"
        )
    if ca.intermediate_validity_days * 86_400 <= 2 * ca.max_validity_s:
        raise ConfigError("ca.intermediate_validity_days must exceed twice ca.max_validity_s")
    for i, key_type in enumerate(ca.allowed_key_types):
        validate_key_type(key_type, f"ca.allowed_key_types[{i}]", SUBSCRIBER_KEY_TYPES)
    if not ca.permitted_zones:
        raise ConfigError("ca.permitted_zones must name at least one DNS zone")
    cost = config.trust.space_cost
    if cost & (cost - 1):
        raise ConfigError("trust.space_cost must be a power of two (scrypt's N)")
    modulus = config.trust.vdf_modulus
    if modulus and (not modulus.isdigit() or int(modulus).bit_length() < 1024):
        raise ConfigError("trust.vdf_modulus must be a decimal RSA modulus of at least 1024 bits")
    resolver = config.resolver
    if resolver.upstream_quorum > len(resolver.upstreams):
        raise ConfigError(
            f"resolver.upstream_quorum ({resolver.upstream_quorum}) is more than the "
            f"{len(resolver.upstreams)} resolver.upstreams: no answer could be accepted"
        )
    if resolver.upstreams and resolver.upstream_timeout_s >= config.runtime.request_timeout_s:
        raise ConfigError(
            "resolver.upstream_timeout_s must be under runtime.request_timeout_s: the DoQ "
            "listener stops waiting for the resolver after runtime.request_timeout_s"
        )
    _check_acme(config)
    return config


ACME_CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")


def _check_acme(config: Config) -> None:
    acme, ca = config.acme, config.ca
    for kind in acme.challenge_types:
        if kind not in ACME_CHALLENGE_TYPES:
            raise ConfigError(
                f"acme.challenge_types: {kind!r} is not one of {ACME_CHALLENGE_TYPES}"
            )
    if not acme.challenge_types:
        raise ConfigError("acme.challenge_types must name at least one challenge type")
    if not acme.profiles:
        raise ConfigError("acme.profiles must name at least one profile")
    for name, lifetime in acme.profiles.items():
        if not ca.min_validity_s <= lifetime <= ca.max_validity_s:
            raise ConfigError(
                f"acme.profiles.{name} ({lifetime} s) must lie between ca.min_validity_s "
                f"({ca.min_validity_s}) and ca.max_validity_s ({ca.max_validity_s})"
            )
    if acme.default_profile not in acme.profiles:
        raise ConfigError(f"acme.default_profile {acme.default_profile!r} is not in acme.profiles")
    for name in acme.consensus_profiles:
        if name not in acme.profiles:
            raise ConfigError(f"acme.consensus_profiles: {name!r} is not in acme.profiles")
    if acme.eab_required and not acme.eab_keys:
        raise ConfigError("acme.eab_required needs at least one key in acme.eab_keys")
    if acme.base_url and not acme.base_url.startswith("https://"):
        raise ConfigError("acme.base_url must be an https:// URL (RFC 8555 §6.1), or empty")
