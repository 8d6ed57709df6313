"""A validator's own work -- its key, the votes it gave, its checks -- as a plain object
that runs in a process of its own (``trustchain.actors.child``), called by its
``ValidatorActor``.

Why a process: a request's check is about a millisecond of CPU (a Wesolowski
verification, an Ed25519 and an ECDSA verification) and each of the N validators does
it for every request. As threads of the CA's process the N checks queued for one GIL
with the issuer, the log and the detector (measured: decisions used 1.05 cores of 2,
the checks 60 % of the GIL). In processes they run on every core, and the validator's
private key is not in the CA's process at all: each validator is as separate as a
transport can make it on one machine (its votes are self-contained signed bytes, so
another machine is the next step).

``vote`` keeps the invariant written in ``actor.py`` (never two different statements
on one digest) with the votes given on disk (``VoteMemo``). The questions that reach
the process together (a busy CA sends them pipelined) are answered together
(``grouped``): their votes are committed in one transaction, then sent.

ACME challenges (``vote_challenge``) go through the same ``vote``: the digest is the
challenge's (``CheckChallenge.digest``), and the inputs are everything the check depends
on besides it -- the port, the time allowed and what the name resolved to -- so the same
challenge with the same resolution gets the vote given before without another look
(a challenge is checked once, RFC 8555 §7.5.1), and a changed resolution is checked again
and answered the same vote or ``already_voted``. Its check does network IO here, in the
validator's process (``challenges.py``), within the challenge's ``timeout_s``.

Nothing here imports pykka or loguru; time is the caller's (``now_s``), so tests drive it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.durable import fsync_dir, write_new
from trustchain.actors.sqlite import open_database, transaction
from trustchain.actors.trust import requests, stake
from trustchain.actors.trust.errors import AlreadyVoted, TrustError
from trustchain.actors.trust.requests import ConsensusParams
from trustchain.actors.trust.votes import Verdict, Vote, sign_vote
from trustchain.actors.validator import challenges
from trustchain.actors.validator.challenges import Resolution
from trustchain.actors.validator.messages import CheckChallenge, CheckRegistration, CheckRequest

Check = Callable[[], list[str]]  # a validator's own check: the reasons to reject
MAX_AUTHORITIES = 16  # stake authorities' parsed keys kept (one in practice)


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
CREATE INDEX IF NOT EXISTS votes_by_epoch ON votes (epoch);
"""


class VoteMemo:
    """The votes given, by digest, for the current and the previous epoch, on disk
    (SQLite, synchronous=FULL) before any leaves: a restarted validator repeats what it
    said instead of checking afresh and perhaps signing another vote (equivocation).
    Older epochs are deleted once, when a vote of a newer epoch is first written.

    Puts made within ``group()`` share one transaction, committed when it ends: the
    votes of questions that came together are durable together, with one fsync."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _VOTES_SCHEMA)
        self._by_epoch: dict[int, dict[bytes, _Given]] = {}
        for digest, epoch, inputs, vote in self._db.execute(
            "SELECT digest, epoch, inputs, vote FROM votes"
        ):
            given = _Given(Vote.from_bytes(bytes(vote)), bytes(inputs))
            self._by_epoch.setdefault(epoch, {})[bytes(digest)] = given
        self._newest = max(self._by_epoch, default=None)
        self._grouped: list[tuple[int, bytes]] | None = None  # puts of the open group
        self._spoiled: Exception | None = None  # a put of the open group failed

    def close(self) -> None:
        self._db.close()

    def get(self, digest: bytes, epoch: int) -> _Given | None:
        for e in (epoch, epoch - 1):
            given = self._by_epoch.get(e, {}).get(digest)
            if given is not None:
                return given
        return None

    @contextmanager
    def group(self) -> Iterator[None]:
        """Puts within share one transaction, durable once this ends without raising.
        If a put or the commit fails, none of them is kept, on disk or here, and the
        failure is raised at the end."""
        self._grouped, self._spoiled = [], None
        try:
            with transaction(self._db):  # BEGIN IMMEDIATE ... COMMIT, or rolled back
                yield
                if self._spoiled is not None:
                    raise self._spoiled
        except BaseException:
            for epoch, digest in self._grouped:
                self._by_epoch.get(epoch, {}).pop(digest, None)
            raise
        finally:
            self._grouped, self._spoiled = None, None

    def put(self, given: _Given, epoch: int) -> None:
        """Durable when it returns (or, within ``group()``, when the group ends): only
        then is the vote given out."""
        digest = given.vote.digest
        newer = self._newest is None or epoch > self._newest
        with contextlib.ExitStack() as stack:
            if self._grouped is None:
                stack.enter_context(transaction(self._db))
            try:
                if newer:
                    self._db.execute("DELETE FROM votes WHERE epoch < ?", (epoch - 1,))
                self._db.execute("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?)",
                                 (digest, epoch, given.inputs, given.vote.to_bytes()))  # fmt: skip
            except Exception as exc:
                if self._grouped is not None:
                    self._spoiled = exc  # the group fails whole
                raise
        if newer:
            self._newest = epoch
            for old in [e for e in self._by_epoch if e < epoch - 1]:
                del self._by_epoch[old]
        self._by_epoch.setdefault(epoch, {})[digest] = given
        if self._grouped is not None:
            self._grouped.append((epoch, digest))

    def __len__(self) -> int:
        return sum(len(votes) for votes in self._by_epoch.values())


class ValidatorCore:
    """One validator's key, votes and checks (see the module's theory)."""

    def __init__(
        self, validator_id: str, key_path: Path, votes_path: Path, params: ConsensusParams
    ) -> None:
        self.validator_id = validator_id
        self.params = params
        self.key = load_or_create_key(key_path)
        self.memo = VoteMemo(votes_path)
        self._authorities: dict[bytes, stake.StakeAuthority] = {}

    def close(self) -> None:
        self.memo.close()

    def grouped(self) -> contextlib.AbstractContextManager[None]:
        """What ``child`` runs the calls that came together in: their votes are made
        durable together (``VoteMemo.group``), one fsync for the lot, and none leaves
        before it is."""
        return self.memo.group()

    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    def _authority(self, spki: bytes) -> stake.StakeAuthority:
        """The stake authority of that key: parsed once, and each stake signature it
        made verified once (``stake.StakeAuthority``)."""
        authority = self._authorities.get(spki)
        if authority is None:
            authority = stake.StakeAuthority(stake.authority_key_from_spki(spki))
            if len(self._authorities) >= MAX_AUTHORITIES:
                self._authorities.clear()
            self._authorities[spki] = authority
        return authority

    # The questions (each answered with the signed vote's bytes) -------------------------

    def vote_request(self, msg: CheckRequest, now_s: float) -> bytes:
        return self.vote(*self.request_question(msg, now_s), now_s).to_bytes()

    def vote_registration(self, msg: CheckRegistration, now_s: float) -> bytes:
        return self.vote(*self.registration_question(msg, now_s), now_s).to_bytes()

    def vote_challenge(
        self,
        msg: CheckChallenge,
        resolved: Resolution,
        now_s: float,
        observed: tuple[str, ...] | None = None,
    ) -> bytes:
        """The vote on an ACME challenge whose name resolved to ``resolved``: on what the
        validator's probe ``observed`` (the reasons to reject), or on a look from here."""
        digest, inputs, check = self.challenge_question(msg, resolved)
        if observed is not None:
            seen = list(observed)

            def check() -> list[str]:
                return seen

        return self.vote(digest, inputs, check, now_s).to_bytes()

    def request_question(self, msg: CheckRequest, now_s: float) -> tuple[bytes, bytes, Check]:
        """(digest, inputs, check) of a request's question."""
        digest = msg.proofs.digest(msg.csr_der)
        registration = msg.registration
        inputs = inputs_digest(
            "request", msg.proofs.to_json(self.params.modulus), msg.authority_key,
            None if registration is None else [registration.asset_key, registration.epoch,
                                               registration.stake, registration.space_commitment],
        )  # fmt: skip

        def check() -> list[str]:
            return requests.check_request(
                msg.csr_der, msg.proofs, msg.registration, self._authority(msg.authority_key),
                self.params, now_s,
            )  # fmt: skip

        return digest, inputs, check

    def registration_question(
        self, msg: CheckRegistration, now_s: float
    ) -> tuple[bytes, bytes, Check]:
        """(digest, inputs, check) of a registration's question."""
        digest = requests.registration_digest(
            msg.asset_key, msg.epoch, msg.stake, msg.proof.commitment, msg.proof.n
        )
        inputs = inputs_digest("registration", msg.asset_key, msg.epoch, msg.stake.to_json(),
                               msg.proof.to_json(), msg.challenge, msg.authority_key)  # fmt: skip

        def check() -> list[str]:
            return requests.check_registration(
                msg.asset_key, msg.epoch, msg.stake, msg.proof, msg.challenge,
                self._authority(msg.authority_key), self.params, now_s,
            )  # fmt: skip

        return digest, inputs, check

    def challenge_question(
        self, msg: CheckChallenge, resolved: Resolution
    ) -> tuple[bytes, bytes, Check]:
        """(digest, inputs, check) of an ACME challenge's question."""
        inputs = inputs_digest(
            "challenge", msg.kind, msg.identifier_type, msg.identifier, msg.token,
            msg.key_authorization, msg.port, repr(msg.timeout_s),
            list(resolved.addresses), list(resolved.txt), resolved.problem,
        )  # fmt: skip

        def check() -> list[str]:
            return challenges.check_challenge(msg, resolved)

        return msg.digest(), inputs, check

    def vote(self, digest: bytes, inputs: bytes, check: Check, now_s: float) -> Vote:
        """The vote on ``digest``: the one given before (see the module's invariant), or
        a new one from ``check``, durable before it is returned."""
        epoch = self.params.epoch(now_s)
        given = self.memo.get(digest, epoch)
        if given is not None and given.inputs == inputs:
            return given.vote
        reasons = check()
        verdict = verdict_of(reasons)
        if given is None:
            vote = sign_vote(self.key, self.validator_id, digest, verdict, reasons)
            self.memo.put(_Given(vote, inputs), epoch)
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

    def sign(self, digest: bytes, verdict: Verdict, reasons: tuple[str, ...]) -> bytes:
        """A vote signed with this validator's key, not remembered: only the Byzantine
        validators of the tests call it (the honest path is ``vote``)."""
        return sign_vote(self.key, self.validator_id, digest, verdict, reasons).to_bytes()
