"""The consensus benchmarks' fleet, shared by ``bench/trust.py`` and ``bench/issuance.py
--consensus``: the trees' configuration (a SoftHSM token, the default ``[trust]``
parameters, the ``trust`` supervisor as the composition root builds it), the assets
(Ed25519 keys) and their CSRs, every request's proofs computed before timing in a
process pool (as the assets' clients would), the fleet's registration through the
detector, and one request's check done directly (each validator's work: the ceiling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustchain.actors.ca import new_csr, new_key
from trustchain.actors.composition import trust_children
from trustchain.actors.detector import GetTrustParams, GrantStake, RegisterAsset, SpaceChallenge
from trustchain.actors.hsm.softhsm import prepare_softhsm_token
from trustchain.actors.trust import requests, space
from trustchain.actors.trust.store import Registration
from trustchain.actors.trust.votes import quorum
from trustchain.config import HsmConfig, TrustConfig
from trustchain.supervisors import ChildSpec, Registry, Strategy, supervisor_spec

ZONE = "bench.example.com"


def hsm_config(directory: Path) -> HsmConfig:
    conf, pin = directory / "hsm" / "softhsm2.conf", directory / "hsm" / "user.pin"
    prepare_softhsm_token(conf, "bench", pin)
    return HsmConfig(token_label="bench", pin_file=pin, softhsm2_conf=str(conf))


def trust_config(directory: Path, n: int = 4, quorum_first: bool = True) -> TrustConfig:
    """The default ``[trust]`` parameters (work 16 bits, VDF t = 2^16, RSA-2048, a quorum
    asked first unless ``quorum_first`` is False), N validators, the stores under
    ``directory``."""
    return TrustConfig(enabled=True, validators=n, database=directory / "trust.sqlite3",
                       key_dir=directory / "validators", quorum_first=quorum_first)  # fmt: skip


def checks_per_decision(n: int, quorum_first: bool) -> int:
    """How many validators check a question when all is well: a quorum, or all N."""
    return quorum(n, (n - 1) // 3) if quorum_first else n


def trust_spec(config: TrustConfig) -> ChildSpec:
    """The ``trust`` supervisor as the composition root builds it (one_for_one)."""
    return supervisor_spec("trust", trust_children(config), Strategy.ONE_FOR_ONE)


def make_fleet(count: int) -> list[ed25519.Ed25519PrivateKey]:
    return [ed25519.Ed25519PrivateKey.generate() for _ in range(count)]


def make_csr_ders(count: int, label: str) -> list[bytes]:
    """DER CSRs (P-256, one key: CSR signing is not what is timed)."""
    key = new_key("ec-p256")
    pems = [new_csr(key, [f"{label}{i}.{ZONE}"]) for i in range(count)]
    return [pem_to_der(p) for p in pems]


def pem_to_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def _prove(job: tuple[bytes, bytes, int, requests.ConsensusParams]) -> requests.RequestProofs:
    csr_der, raw_key, epoch, params = job
    key = ed25519.Ed25519PrivateKey.from_private_bytes(raw_key)
    return requests.prove_request(csr_der, key, epoch, params)[0]


def precompute(
    csr_ders: Sequence[bytes],
    fleet: Sequence[ed25519.Ed25519PrivateKey],
    params: requests.ConsensusParams,
    workers: int,
) -> list[requests.RequestProofs]:
    """Each CSR's proofs (the fleet's assets in turn) for the current epoch, computed in
    ``workers`` processes (spawned: the actors' threads may be running)."""
    epoch = params.epoch(time.time())
    raws = [k.private_bytes_raw() for k in fleet]
    jobs = [(csr, raws[i % len(raws)], epoch, params) for i, csr in enumerate(csr_ders)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        proofs = list(pool.map(_prove, jobs, chunksize=4))
    took = time.perf_counter() - t0
    print(f"  precomputed {len(jobs)} requests' proofs in {took:.1f} s on {workers} processes "
          f"({took * workers / len(jobs) * 1000:.0f} ms of CPU each), epoch {epoch}")  # fmt: skip
    if params.epoch(time.time()) != epoch:
        print("  the epoch changed meanwhile: every request will be refused as stale; run again")
    return proofs


def register_fleet(
    registry: Registry, fleet: Sequence[ed25519.Ed25519PrivateKey], detector: str = "detector"
) -> tuple[list[Registration], ec.EllipticCurvePublicKey]:
    """Register each asset for the epoch (stake from the HSM, space challenge answered,
    the validators' vote); the registrations and the stake authority's key, for the
    direct verification."""
    got = registry.ask(detector, GetTrustParams(), timeout=30)
    params = requests.ConsensusParams.from_json(got["params"])
    authority = serialization.load_pem_public_key(got["authority_key"].encode())
    assert isinstance(authority, ec.EllipticCurvePublicKey)
    registrations = []
    for key in fleet:
        asset_key = requests.asset_key_of(key)
        asset = asset_key.hex()
        stake = registry.ask(detector, GrantStake(asset, 10 * params.min_stake, 30), timeout=30)
        plot = space.plot(asset_key, params.space_blocks, params.space)
        challenge = registry.ask(detector, SpaceChallenge(asset, plot.root.hex(), plot.n))
        proof = space.answer_challenge(plot, bytes.fromhex(challenge["challenge"]), challenge["k"])
        registry.ask(detector, RegisterAsset(asset, stake, proof.to_json()), timeout=30)
        registrations.append(
            Registration(asset_key, got["epoch"], stake, plot.root, registered_at_s=time.time())
        )
    return registrations, authority


def verification_s(
    csr_ders: Sequence[bytes],
    proofs: Sequence[requests.RequestProofs],
    registrations: Sequence[Registration],
    authority: ec.EllipticCurvePublicKey,
    params: requests.ConsensusParams,
) -> list[float]:
    """``requests.check_request`` for each request, directly on this thread: seconds each."""
    by_key = {r.asset_key: r for r in registrations}
    samples = []
    for csr, proof in zip(csr_ders, proofs, strict=True):
        registration = by_key[proof.asset_key]
        t0 = time.perf_counter()
        reasons = requests.check_request(csr, proof, registration, authority, params, time.time())
        samples.append(time.perf_counter() - t0)
        if reasons:
            raise SystemExit(f"a precomputed request does not verify: {reasons}")
    return samples
