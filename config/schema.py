"""The configuration schema: one frozen dataclass per section, with its defaults.

``field(metadata=...)`` (through ``_f``) carries each key's constraints for the
loader (``trustchain.config.loader``) to check: ``choices``, ``min``, ``max`` (a
``Literal`` type is checked as its choices). Cross-field rules live in the
loader's ``check_semantics``. This module imports nothing from the rest of
TrustChain.
"""

# _f() returns dataclasses.field(...) with validation metadata, not a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal


def _f(default: Any, **meta: Any) -> Any:
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# The key types TrustChain knows, written once: the HSM's table (actors/hsm/token.py),
# the issuance policy's defaults (actors/ca/policy.py), the CLI's --key-type and
# new_key (actors/ca/subscriber.py) are all keyed by these names.
# CA keys (and TrustChain's own TLS keys): what the HSM can make and a CA may sign with.
CA_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
# Subscriber keys: what may be certified. Ed25519 is outside the CA/B Forum BRs (§6.1.5).
SUBSCRIBER_KEY_TYPES = (*CA_KEY_TYPES, "ed25519")

# Keys that were renamed: old dotted key -> new. The loader refuses the old one
# and names the new one, so that an old config file says what to change.
RENAMED_KEYS = {
    "http.healthy_checkpoint_age_s": "http.max_sth_age_s",  # one name for tree-head age
}


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    control_socket: Path = _f(Path("var/trustchain.sock"))
    log_level: str = _f("INFO", choices=("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    log_json: bool = _f(False)
    drain_timeout_s: float = _f(5.0, min=0.0, max=300.0)
    request_timeout_s: float = _f(10.0, min=0.001, max=600.0)


@dataclasses.dataclass(frozen=True)
class SupervisionConfig:
    max_restarts: int = _f(5, min=0, max=10_000)
    period_s: float = _f(10.0, min=0.001, max=86_400.0)
    # A restart, and an actor's retry of a failed resource (disk, HSM), waits
    # backoff_min_s, doubling per failure in a row up to backoff_max_s, stretched
    # by up to backoff_jitter (a fraction) at random.
    backoff_min_s: float = _f(0.1, min=0.0, max=3_600.0)
    backoff_max_s: float = _f(5.0, min=0.0, max=3_600.0)
    backoff_jitter: float = _f(0.2, min=0.0, max=1.0)


@dataclasses.dataclass(frozen=True)
class HsmConfig:
    # "softhsm2" finds SoftHSMv2 where Debian, Ubuntu, Fedora or Homebrew put it;
    # any other value is the path of a PKCS#11 module (CloudHSM, YubiHSM, Luna...).
    module: str = _f("softhsm2")
    token_label: str = _f("trustchain")
    pin_file: Path = _f(Path("var/hsm/user.pin"))
    pin_env: str = _f("TRUSTCHAIN_HSM_PIN")
    # SoftHSM only: its config file (token directory). Empty for other modules.
    softhsm2_conf: str = _f("var/hsm/softhsm2.conf")
    # Keys created in the token at first start if missing: label -> key type.
    keys: dict[str, str] = _f({})


@dataclasses.dataclass(frozen=True)
class CaConfig:
    # The CA's keys, generated inside the HSM at first start.
    key_type: str = _f("ec-p256", choices=CA_KEY_TYPES)
    root_key: str = _f("ca-root")
    intermediate_key: str = _f("ca-intermediate")  # rotations add -2, -3, ...
    organization: str = _f("TrustChain")
    country: str = _f("US")  # ISO 3166-1 alpha-2; the CA/B Forum requires it in CA names
    root_common_name: str = _f("TrustChain Root CA")
    intermediate_common_name: str = _f("TrustChain Issuing CA")
    root_validity_days: int = _f(3650, min=1, max=9125)
    intermediate_validity_days: int = _f(365, min=2, max=1825)
    # What may be issued.
    permitted_zones: list[str] = _f(["trust.example.com"])
    # Subscriber key types. Ed25519 is outside the CA/B Forum BRs (§6.1.5): keep it
    # for private deployments; production.toml leaves it out.
    allowed_key_types: list[str] = _f(list(SUBSCRIBER_KEY_TYPES))
    name_constraints: bool = _f(True)  # constrain the intermediate to the zones
    allow_wildcards: bool = _f(False)
    allow_ipv6_sans: bool = _f(True)
    subject: Literal["empty", "cn_from_first_san"] = _f("empty")
    default_validity_s: int = _f(86_400, min=60)
    min_validity_s: int = _f(300, min=60)
    max_validity_s: int = _f(86_400, min=60, max=398 * 86_400)
    max_csr_bytes: int = _f(65_536, min=1_024, max=1_048_576)
    max_sans: int = _f(100, min=1, max=1_000)
    # Where relying parties fetch CRLs and CA certificates (the HTTP edge serves them).
    base_url: str = _f("http://[::1]:8080")
    crl_validity_s: int = _f(86_400, min=3_600, max=864_000)  # nextUpdate - thisUpdate
    crl_refresh_s: int = _f(3_600, min=1, max=864_000)  # regenerate this often
    database: Path = _f(Path("var/ca/ca.sqlite3"))
    crl_dir: Path = _f(Path("var/ca/crl"))


@dataclasses.dataclass(frozen=True)
class CtLogConfig:
    """The Certificate Transparency log every certificate goes through."""

    key: str = _f("ct-log")  # ECDSA P-256 key label in the HSM
    origin: str = _f("trust.example.com/ct/log")  # the checkpoint's origin line
    storage_dir: Path = _f(Path("var/ct/tiles"))  # tiles, checkpoint, issuers
    index_db: Path = _f(Path("var/ct/index.sqlite3"))  # leaf hash -> index (a cache)
    pool_period_ms: int = _f(50, min=1, max=10_000)  # a submission waits at most this long
    max_batch: int = _f(1_024, min=1, max=65_536)  # entries per durable append
    max_pool: int = _f(8_192, min=1, max=1_000_000)  # beyond this: "try later" (503)
    checkpoint_interval_s: float = _f(1.0, min=0.05, max=3_600.0)  # re-sign when idle
    # each batch durable by one append to storage_dir/journal; the tiles and checkpoint
    # on disk catch up within checkpoint_interval_s (false: every batch rewrites them)
    journal: bool = _f(True)
    max_entries_per_page: int = _f(256, min=1, max=10_000)  # get-entries page size


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """The CT monitor: checks every new tree head against the previous one."""

    interval_s: float = _f(1.0, min=0.05, max=3_600.0)
    max_sth_age_s: float = _f(30.0, min=1.0, max=86_400.0)  # older than this: alert


@dataclasses.dataclass(frozen=True)
class HttpConfig:
    """The HTTPS edge: RFC 6962 CT API, static-ct-api tiles, CRLs, health, metrics."""

    enabled: bool = _f(True)
    host: str = _f("::1")  # IPv6 only
    port: int = _f(8443, min=0, max=65_535)  # 0: any free port
    tls: bool = _f(True)  # certificate issued and renewed by TrustChain itself
    certificate: str = _f("https")  # the [renewal] name of its certificate
    names: list[str] = _f(["trust.example.com", "::1"])  # what that certificate covers
    max_body_bytes: int = _f(1_048_576, min=1_024, max=64 * 1_048_576)
    # Plain http for /crl/ and /ca/ only: CRL and CA-issuer URLs are http (BRs §7.1.2.11);
    # ca.base_url points here. -1 turns it off.
    plain_port: int = _f(8080, min=-1, max=65_535)
    max_sth_age_s: float = _f(5.0, min=0.1, max=3_600.0)  # /health: 503 past this


@dataclasses.dataclass(frozen=True)
class RenewalConfig:
    """TrustChain's own certificates (its DoQ and HTTPS servers'), kept fresh by itself."""

    directory: Path = _f(Path("var/tls"))  # <name>/key.pem (0600), cert.pem, chain.pem
    key_type: str = _f("ec-p256", choices=CA_KEY_TYPES)
    validity_s: int = _f(86_400, min=60)
    renew_at_fraction: float = _f(2 / 3, min=0.1, max=0.95)  # of the lifetime
    check_interval_s: float = _f(30.0, min=0.05, max=3_600.0)
    # name -> the DNS names (or IPv6 addresses) its certificate covers
    certificates: dict[str, list[str]] = _f({})


@dataclasses.dataclass(frozen=True)
class TrustConfig:
    """The four-proof consensus: N = 3f+1 validators and the Byzantine detector."""

    enabled: bool = _f(True)  # validators + detector run; no certificate without their approval
    validators: int = _f(4, min=4, max=64)  # N; f = (N - 1) // 3 Byzantine tolerated
    epoch_s: int = _f(86_400, min=60)  # assets register once per epoch
    work_bits: int = _f(16, min=0, max=40)  # PoWork: leading zero bits
    vdf_t: int = _f(65_536, min=256, max=2**40)  # PoTime: sequential squarings
    vdf_modulus: str = _f("")  # decimal RSA modulus of unknown factors; "" = RSA-2048
    min_stake: int = _f(100, min=0)
    stake_authority_key: str = _f("stake-authority")  # its HSM key label (EC P-256)
    space_blocks: int = _f(256, min=16)  # PoSpace: blocks an asset plots (n)
    space_cost: int = _f(16, min=2)  # scrypt N per block (2^12 in production)
    space_challenges: int = _f(16, min=1, max=4_096)  # blocks opened per challenge (k)
    min_trust_score: float = _f(0.5, min=0.0, max=1.0)  # a validator below is ignored
    decision_timeout_s: float = _f(2.0, min=0.01, max=600.0)  # then quorum_not_reached
    # ask a quorum first (in turn), the other validators only on a dissent, a failure or
    # a straggler; false: every validator checks every question
    quorum_first: bool = _f(True)
    database: Path = _f(Path("var/trust/trust.sqlite3"))
    key_dir: Path = _f(Path("var/trust/validators"))  # <id>.key, Ed25519, 0600
    asset_key: Path = _f(Path("var/trust/asset.key"))  # the CLI's own asset identity, 0600


@dataclasses.dataclass(frozen=True)
class ResolverConfig:
    """The TrustChain zone over DNS-over-QUIC (RFC 9250), IPv6 only (issue 10)."""

    enabled: bool = _f(True)  # the resolver actor and its DoQ listener
    host: str = _f("::1")  # IPv6 only: IPV6_V6ONLY is set, IPv4 is never answered
    port: int = _f(8853, min=0, max=65_535)  # 853 in production; 0: any free port
    certificate: str = _f("doq")  # the [renewal] name of its certificate
    names: list[str] = _f(["dns.trust.example.com", "::1"])  # what that certificate covers
    origin: str = _f("trust.example.com")  # the zone TrustChain is authoritative for
    ttl_s: int = _f(300, min=0, max=86_400)
    # relative name ("@" is the origin) -> its IPv6 addresses (AAAA only)
    records: dict[str, list[str]] = _f({
        "laptop": ["::1"], "hypermesh": ["2001:db8::10"], "caesar": ["2001:db8::20"],
        "trust": ["2001:db8::30"], "assets": ["2001:db8::40"],
    })  # fmt: skip
    cnames: dict[str, str] = _f({})  # relative name -> target (absolute, with its dot)
    min_asset_trust: float = _f(0.5, min=0.0, max=1.0)  # assets scoring less are left out
    upstreams: list[str] = _f([])  # "doq://[2001:db8::53]:853", "udp://[::1]:53", "tcp://..."
    upstream_quorum: int = _f(0, min=0, max=64)  # matching answers needed; 0: a majority
    upstream_timeout_s: float = _f(2.0, min=0.05, max=30.0)
    cache_entries: int = _f(10_000, min=0, max=10_000_000)
    max_connections: int = _f(1_000, min=1, max=1_000_000)
    max_streams_per_connection: int = _f(100, min=1, max=10_000)
    idle_timeout_s: float = _f(30.0, min=1.0, max=3_600.0)
    max_buffered_bytes: int = _f(65_536, min=1_024, max=16 * 1_048_576)  # per connection
    retry: bool = _f(False)  # QUIC Retry: validate client addresses before any state
    # ACME dns-01 TXT records published with `trustchain dns txt add` (created on first use)
    challenge_db: Path = _f(Path("var/resolver/challenges.sqlite3"))


@dataclasses.dataclass(frozen=True)
class AcmeConfig:
    """ACME (RFC 8555) on the HTTPS edge under ``/acme/`` (issue 11): certbot, lego, Caddy
    and cert-manager get certificates unchanged, domain control corroborated by 2f+1
    validators (which needs ``[trust] enabled``)."""

    enabled: bool = _f(True)
    database: Path = _f(Path("var/acme/acme.sqlite3"))  # accounts, orders, authorizations
    # The URLs the directory gives; "" = from the request (https://<Host>/acme/...)
    base_url: str = _f("")
    terms_of_service: str = _f("")  # a URL; when set, newAccount must agree to it
    website: str = _f("")
    eab_required: bool = _f(False)  # External Account Binding (RFC 8555 §7.3.4)
    eab_keys: dict[str, str] = _f({})  # key id -> base64url HMAC key (the operator hands out)
    challenge_types: list[str] = _f(["http-01", "dns-01", "tls-alpn-01"])
    http01_port: int = _f(80, min=1, max=65_535)  # where validators fetch (RFC 8555 §8.3)
    tls_alpn01_port: int = _f(443, min=1, max=65_535)  # where validators connect (RFC 8737)
    challenge_timeout_s: float = _f(5.0, min=0.1, max=60.0)  # one validator's one check
    nonces: int = _f(65_536, min=16, max=10_000_000)  # unused nonces kept; older: badNonce
    order_lifetime_s: int = _f(86_400, min=60, max=30 * 86_400)  # a pending order expires
    authorization_reuse_s: int = _f(8 * 3_600, min=0, max=30 * 86_400)  # valid authz reused
    # profiles in the directory's meta: name -> certificate lifetime (s), each at most
    # ca.max_validity_s; orders without a profile get default_profile
    profiles: dict[str, int] = _f({"default": 86_400, "short": 21_600})
    default_profile: str = _f("default")
    # profiles whose orders need, besides the quorum's corroboration of domain control,
    # the four-proof consensus's approval: finalize carries the asset's proofs for the
    # CSR (``trustchainProofs``; ``trustchain trust prove`` makes them)
    consensus_profiles: list[str] = _f([])
    rate_window_s: int = _f(3_600, min=1, max=30 * 86_400)
    max_orders_per_account: int = _f(300, min=1)  # per rate_window_s; then rateLimited
    max_certificates_per_name: int = _f(50, min=1)  # per rate_window_s; then rateLimited


@dataclasses.dataclass(frozen=True)
class Config:
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    supervision: SupervisionConfig = dataclasses.field(default_factory=SupervisionConfig)
    hsm: HsmConfig = dataclasses.field(default_factory=HsmConfig)
    ca: CaConfig = dataclasses.field(default_factory=CaConfig)
    ctlog: CtLogConfig = dataclasses.field(default_factory=CtLogConfig)
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    renewal: RenewalConfig = dataclasses.field(default_factory=RenewalConfig)
    trust: TrustConfig = dataclasses.field(default_factory=TrustConfig)
    resolver: ResolverConfig = dataclasses.field(default_factory=ResolverConfig)
    acme: AcmeConfig = dataclasses.field(default_factory=AcmeConfig)
