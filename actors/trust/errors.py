"""Why the consensus refuses: one typed error per reason, each with a stable code (and
``TrustStoreUnavailable``, the one fault of the environment: its database).

Imports nothing but ``supervisors.errors``, so every peer and edge can name them.
"""

from __future__ import annotations

from trustchain.supervisors.errors import TrustChainError


class TrustError(TrustChainError):
    """A proof, a registration or a vote that does not hold."""

    code = "trust_error"


class WorkInvalid(TrustError):
    code = "work_invalid"


class TimeProofInvalid(TrustError):
    code = "time_proof_invalid"


class StakeInvalid(TrustError):
    code = "stake_invalid"


class StakeExpired(TrustError):
    code = "stake_expired"


class SpaceProofInvalid(TrustError):
    code = "space_proof_invalid"


class AssetSignatureInvalid(TrustError):
    code = "asset_signature_invalid"


class NotRegistered(TrustError):
    code = "not_registered"


class RegistrationStale(TrustError):
    code = "registration_stale"


class ProofReplayed(TrustError):
    code = "proof_replayed"


class VoteInvalid(TrustError):
    code = "vote_invalid"


class QuorumNotReached(TrustError):
    code = "quorum_not_reached"


class ProofsRequired(TrustError):
    """The CA issues only with the consensus's approval, and the request has no proofs."""

    code = "proofs_required"


class NotApproved(TrustError):
    """The quorum decided against the request."""

    code = "not_approved"


class AlreadyVoted(TrustError):
    """A validator asked again about a digest, with other proofs that it judges
    otherwise: it keeps its first vote rather than sign a second (equivocation)."""

    code = "already_voted"


class AssetRecordInvalid(TrustError):
    """An asset's published name and addresses are malformed or not signed by it."""

    code = "asset_record_invalid"


class NameTaken(TrustError):
    """Another asset published that name for this epoch first."""

    code = "name_taken"


class TrustStoreUnavailable(TrustChainError):
    """The consensus's database cannot be read or written (a full disk, an I/O error, a
    read-only file): a fault of the environment, not of the request. Nothing was changed;
    the detector retries with backoff and shows the fault in status and /ready. Ask again
    after ``retry_after_s``."""

    code = "trust_store_unavailable"
