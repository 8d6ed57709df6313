"""ValidatorActor: one of the N independent checkers of the four-proof consensus.

Theory of operation. A validator holds an Ed25519 key of its own
(``<trust.key_dir>/<validator id>.key``: PKCS#8 PEM, or the raw 32-octet private key;
made at its first start with mode 0600 in a 0700 directory, reused after) and answers
the detector's questions with signed votes (``votes.sign_vote``):

* ``CheckRequest``: ``requests.check_request`` on a certificate request's proofs,
  against the registration the detector holds; the vote is over the request digest;
* ``CheckRegistration``: ``requests.check_registration`` on an asset's stake and
  space proof; the vote is over ``requests.registration_digest``.

A vote approves when the check gives no reason, and rejects with the reasons
otherwise. The parameters are the config's (``trust.params.consensus_params``), the
time is ``self.clock``'s; the stake authority's public key comes with each question
(the validators start before the detector and never wait on it).

Invariant: a validator never signs two different statements on one digest (that
is equivocation, which the detector catches and quarantines for). Asked again about
a digest it voted on (a retry, the same request decided twice), it answers the vote
it gave: at once when the question is the same (same proofs, registration and
authority), and after checking again when it is not -- the same vote if its verdict
and reasons are unchanged, else ``already_voted`` and no vote (other proofs for a
decided request, or a world that moved on: a registration that arrived, a stake that
expired). So a forged proof presented for a request approved before is never
approved again. The votes are kept for the current and the previous epoch (of this
validator's clock), on disk beside its key (``<id>.votes.sqlite3``, each written
durably before the vote leaves): a restarted validator repeats what it said.

The hooks ``answer`` (what is sent back) and ``sign`` exist so that tests can make
Byzantine validators (``tests/trust/byzantine.py``); the honest one is this class.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.durable import fsync_dir, write_new
from trustchain.actors.sqlite import open_database, transaction
from trustchain.actors.trust import requests, stake
from trustchain.actors.trust.errors import AlreadyVoted, TrustError
from trustchain.actors.trust.params import consensus_params
from trustchain.actors.trust.votes import Verdict, Vote, sign_vote
from trustchain.actors.validator.messages import CheckRegistration, CheckRequest, GetValidatorKey
from trustchain.config import TrustConfig
from trustchain.supervisors import ActorContext, SupervisedActor, handles

Check = Callable[[], list[str]]  # a validator's own check: the reasons to reject


class ValidatorKeyUnusable(TrustError):
    """The validator's key file cannot be used (a start failure: say what to mend)."""

    code = "validator_key_unusable"


def load_or_create_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key in ``path`` (PEM or raw 32 octets), made there (0600, durable)
    if there is none; its directory is made 0700. A key file others can read is
    refused: it is the validator's identity."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        os.chmod(directory, 0o700)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_new(path, pem, 0o600)
        except FileExistsError:  # made meanwhile by another start: use that one
            return load_or_create_key(path)
        fsync_dir(directory)
        return key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValidatorKeyUnusable(
            f"validator key {path} has mode {mode:o}: others may read it; chmod 600 {path}"
        )
    return _parse_key(path, data)


def _parse_key(path: Path, data: bytes) -> ed25519.Ed25519PrivateKey:
    if len(data) == 32:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValidatorKeyUnusable(
            f"validator key {path} is neither an unencrypted PEM private key nor 32 raw "
            f"octets ({exc}); move it away to have a new one made"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValidatorKeyUnusable(
            f"validator key {path} holds a {type(key).__name__}, not an Ed25519 key"
        )
    return key


def verdict_of(reasons: list[str]) -> Verdict:
    return "reject" if reasons else "approve"


def inputs_digest(*parts: Any) -> bytes:
    """What a question asked: SHA-256 of its parts as canonical JSON (bytes as hex)."""

    def plain(value: Any) -> Any:
        return value.hex() if isinstance(value, bytes) else str(value)

    text = json.dumps(parts, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class _Given:
    vote: Vote
    inputs: bytes  # inputs_digest of the question it answered


_VOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    digest BLOB PRIMARY KEY,                -- what was voted on
    epoch  INTEGER NOT NULL,
    inputs BLOB NOT NULL,                   -- inputs_digest of the question it answered
    vote   BLOB NOT NULL                    -- the signed vote's bytes
);
"""


class _VoteMemo:
    """The votes given, by digest, for the current and the previous epoch, on disk
    (SQLite, synchronous=FULL) before any leaves: a restarted validator repeats what it
    said instead of checking afresh and perhaps signing another vote (equivocation)."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _VOTES_SCHEMA)
        self._by_epoch: dict[int, dict[bytes, _Given]] = {}
        for digest, epoch, inputs, vote in self._db.execute(
            "SELECT digest, epoch, inputs, vote FROM votes"
        ):
            given = _Given(Vote.from_bytes(bytes(vote)), bytes(inputs))
            self._by_epoch.setdefault(epoch, {})[bytes(digest)] = given

    def close(self) -> None:
        self._db.close()

    def get(self, digest: bytes, epoch: int) -> _Given | None:
        for e in (epoch, epoch - 1):
            given = self._by_epoch.get(e, {}).get(digest)
            if given is not None:
                return given
        return None

    def put(self, given: _Given, epoch: int) -> None:
        """Durable when it returns: only then is the vote given out."""
        digest = given.vote.digest
        with transaction(self._db) as db:
            db.execute("DELETE FROM votes WHERE epoch < ?", (epoch - 1,))
            db.execute("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?)",
                       (digest, epoch, given.inputs, given.vote.to_bytes()))  # fmt: skip
        for old in [e for e in self._by_epoch if e < epoch - 1]:
            del self._by_epoch[old]
        self._by_epoch.setdefault(epoch, {})[digest] = given

    def __len__(self) -> int:
        return sum(len(votes) for votes in self._by_epoch.values())


class ValidatorActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: TrustConfig, validator_id: str) -> None:
        super().__init__(context)
        self.config = config
        self.validator_id = validator_id
        self.params = consensus_params(config)
        self.key: ed25519.Ed25519PrivateKey | None = None
        self._memo: _VoteMemo | None = None

    def setup(self) -> None:
        self.key = load_or_create_key(self.config.key_dir / f"{self.validator_id}.key")
        self._memo = _VoteMemo(self.config.key_dir / f"{self.validator_id}.votes.sqlite3")

    def cleanup(self) -> None:
        if self._memo is not None:
            self._memo.close()
            self._memo = None

    @property
    def public_key(self) -> bytes:
        assert self.key is not None
        return self.key.public_key().public_bytes_raw()

    # The questions ---------------------------------------------------------------

    @handles(GetValidatorKey)
    def get_validator_key(self, msg: GetValidatorKey) -> dict[str, Any]:
        return {"validator": self.validator_id, "public_key": self.public_key.hex()}

    @handles(CheckRequest)
    def check_request(self, msg: CheckRequest) -> bytes | None:
        digest = msg.proofs.digest(msg.csr_der)
        registration = msg.registration
        inputs = inputs_digest(
            "request", msg.proofs.to_json(self.params.modulus), msg.authority_key,
            None if registration is None else [registration.asset_key, registration.epoch,
                                               registration.stake, registration.space_commitment],
        )  # fmt: skip

        def check() -> list[str]:
            authority = stake.authority_key_from_spki(msg.authority_key)
            now = self.clock.time()
            return requests.check_request(
                msg.csr_der, msg.proofs, msg.registration, authority, self.params, now
            )

        return self.answer(digest, inputs, check)

    @handles(CheckRegistration)
    def check_registration(self, msg: CheckRegistration) -> bytes | None:
        digest = requests.registration_digest(
            msg.asset_key, msg.epoch, msg.stake, msg.proof.commitment, msg.proof.n
        )
        inputs = inputs_digest("registration", msg.asset_key, msg.epoch, msg.stake.to_json(),
                               msg.proof.to_json(), msg.challenge, msg.authority_key)  # fmt: skip

        def check() -> list[str]:
            authority = stake.authority_key_from_spki(msg.authority_key)
            return requests.check_registration(
                msg.asset_key, msg.epoch, msg.stake, msg.proof, msg.challenge, authority,
                self.params, self.clock.time(),
            )  # fmt: skip

        return self.answer(digest, inputs, check)

    # What is said, and the hooks a misbehaving validator overrides ------------------

    def answer(self, digest: bytes, inputs: bytes, check: Check) -> bytes | None:
        """The reply to a check: the vote's bytes (``None`` after ``defer()``)."""
        return self.vote(digest, inputs, check).to_bytes()

    def vote(self, digest: bytes, inputs: bytes, check: Check) -> Vote:
        """The vote on ``digest``: the one given before (see the module's invariant), or
        a new one from ``check``."""
        assert self._memo is not None
        epoch = self.params.epoch(self.clock.time())
        given = self._memo.get(digest, epoch)
        if given is not None and given.inputs == inputs:
            return given.vote
        reasons = check()
        verdict = verdict_of(reasons)
        if given is None:
            vote = self.sign(digest, verdict, reasons)
            self._memo.put(_Given(vote, inputs), epoch)
            return vote
        if given.vote.statement == (verdict, tuple(reasons)):
            return given.vote
        raise AlreadyVoted(
            f"validator {self.validator_id} voted {given.vote.verdict} on "
            f"{digest.hex()[:16]}... for other proofs and keeps that vote (a second would be "
            f"equivocation); now it would vote {verdict}: make a new request (a new CSR)",
            validator=self.validator_id,
            digest=digest.hex(),
            voted=given.vote.verdict,
        )

    def sign(self, digest: bytes, verdict: Verdict, reasons: list[str] | tuple[str, ...]) -> Vote:
        assert self.key is not None
        return sign_vote(self.key, self.validator_id, digest, verdict, reasons)
