"""Typed errors of the CT log domain layer.

Every class here is a ``TrustChainError``: a failure the caller caused or must
handle, carried back as a typed reply with a stable snake_case ``code``. I/O
failures of the storage backend (``OSError``) are deliberately *not* wrapped:
they are infrastructure faults that crash the owning actor, whose restart runs
the same recovery as a cold boot (crash-only design).
"""

from __future__ import annotations

from trustchain.supervisors.errors import TrustChainError


class CTError(TrustChainError):
    """Base of every CT log error."""

    code = "ct_error"


class MalformedStructure(CTError):
    """Bytes that should hold a TLS (RFC 6962) or DER structure do not parse."""

    code = "malformed_ct_structure"


class InvalidLogEntry(CTError):
    """A submission cannot be logged (e.g. a precertificate without the poison)."""

    code = "invalid_log_entry"


class ProofError(CTError):
    """An inclusion or consistency proof does not verify."""

    code = "invalid_proof"


class SignatureError(CTError):
    """An SCT or tree-head signature does not verify under the log key."""

    code = "invalid_signature"


class CheckpointError(CTError):
    """A checkpoint (signed note) is malformed, or carries no valid log signature."""

    code = "invalid_checkpoint"


class IndexOutOfRange(CTError):
    """A leaf index (or index range) lies outside the tree it was asked against."""

    code = "index_out_of_range"


class TreeSizeOutOfRange(CTError):
    """A tree size is larger than the current tree, or the sizes are reversed."""

    code = "tree_size_out_of_range"


class TileNotFound(CTError):
    """The tile path is malformed or names a tile the committed tree does not have."""

    code = "tile_not_found"


class LogCorrupted(CTError):
    """Stored tiles disagree with the signed checkpoint; the log refuses to serve."""

    code = "log_corrupted"


class LogUnavailable(CTError):
    """A storage or index write failed mid-append; this instance must be reopened."""

    code = "log_unavailable"


class LogBusy(CTError):
    """The submission pool is full: try again after ``retry_after_s`` (HTTP 503)."""

    code = "log_busy"


class InvalidChain(CTError):
    """The submitted chain is malformed or does not lead to an accepted root (HTTP 400)."""

    code = "invalid_chain"
