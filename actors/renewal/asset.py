"""TrustChain as an asset of its own four-proof consensus: its service certificates
are approved by the validators like anyone's.

Its Ed25519 identity is a key file beside its bundles (made 0600 at first use, kept);
``Asset`` remembers the consensus's parameters and the epoch it is registered for, so
the renewal actor registers once per epoch (a stake, then a space proof answering a
fresh challenge) and proves each request. Everything here is local work; the renewal
actor does the asking, in continuations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.durable import write_new
from trustchain.actors.trust import space
from trustchain.actors.trust.requests import ConsensusParams, asset_key_of, prove_request

KEY_FILE = "asset.key"


def load_or_create_key(path: Path) -> ed25519.Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    write_new(path, pem, 0o600)
    return key


@dataclass
class Asset:
    key: ed25519.Ed25519PrivateKey
    params: ConsensusParams | None = None
    epoch: int = -1  # the epoch the consensus's parameters were read in
    registered_epoch: int = -1
    plot: space.Plot | None = field(default=None, repr=False)

    @property
    def asset(self) -> str:
        return asset_key_of(self.key).hex()

    def learn(self, answer: dict[str, Any]) -> None:
        """``get_trust_params``'s answer."""
        self.params, self.epoch = ConsensusParams.from_json(answer["params"]), answer["epoch"]

    @property
    def registered(self) -> bool:
        return self.params is not None and self.registered_epoch == self.epoch

    def commitment(self) -> dict[str, Any]:
        """Plot (once: blocks depend on the key only) and commit: ``space_challenge``'s args."""
        assert self.params is not None
        if self.plot is None or self.plot.n != self.params.space_blocks:
            self.plot = space.plot(
                asset_key_of(self.key), self.params.space_blocks, self.params.space
            )
        return {"asset": self.asset, "commitment": self.plot.root.hex(), "n": self.plot.n}

    def answer(self, challenge_hex: str) -> dict[str, Any]:
        assert self.params is not None and self.plot is not None
        proof = space.answer_challenge(self.plot, bytes.fromhex(challenge_hex),
                                       self.params.space_challenges)  # fmt: skip
        return proof.to_json()

    def prove(self, csr_pem: str) -> dict[str, Any]:
        """The request's proofs (JSON) for ``issue_certificate``."""
        assert self.params is not None
        csr_der = x509.load_pem_x509_csr(csr_pem.encode("ascii")).public_bytes(
            serialization.Encoding.DER
        )
        proofs, _ = prove_request(csr_der, self.key, self.epoch, self.params)
        return proofs.to_json(self.params.modulus)
