"""TrustChain's Certificate Transparency log, sans-IO (no actors, no event loop).

RFC 6962 structures and SCTs (``rfc6962``), RFC 9162 Merkle proofs (``merkle``),
C2SP tlog-tiles / static-ct-api tiles and checkpoints (``tiles``, ``entries``,
``checkpoint``), a durable object store (``storage``), the log engine that
ties them together (``TileLog``: ``log``, with its journal, read path and cleanup of
superseded partial tiles in ``journal``, ``reads`` and ``cleanup``), the checks of submitted chains
(``ChainValidator``) and the file of the roots it accepts (``roots``), and the
checks an outsider makes of what a log says (``audit``: the monitor's and
``trustchain ct``'s). Signing is injected as ``sign(data) -> DER``;
time is passed in as ``now_ms``.
"""

from .chains import ChainValidator
from .checkpoint import SignedTreeHead, encode_checkpoint, parse_checkpoint
from .entries import LogEntryInput, TileLeaf, decode_data_tile
from .errors import (
    CheckpointError,
    CTError,
    IndexOutOfRange,
    InvalidChain,
    InvalidLogEntry,
    LogBusy,
    LogCorrupted,
    LogUnavailable,
    MalformedStructure,
    ProofError,
    SignatureError,
    TileNotFound,
    TreeSizeOutOfRange,
)
from .log import AppendResult, TileLog
from .merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from .rfc6962 import (
    LogEntryType,
    SignedCertificateTimestamp,
    Signer,
    TimestampedEntry,
    decode_sct_list,
    encode_sct_list,
    issuer_key_hash,
    log_id,
    precert_tbs_from_certificate,
    precert_tbs_from_precertificate,
    sct_list_extension_value,
    verify_sct,
)
from .storage import LocalDirectoryStorage, TileStorage
from .tiles import Tile, parse_tile_path, tiles_for_consistency, tiles_for_inclusion

__all__ = [
    "AppendResult",
    "CTError",
    "ChainValidator",
    "CheckpointError",
    "IndexOutOfRange",
    "InvalidChain",
    "InvalidLogEntry",
    "LocalDirectoryStorage",
    "LogBusy",
    "LogCorrupted",
    "LogEntryInput",
    "LogEntryType",
    "LogUnavailable",
    "MalformedStructure",
    "ProofError",
    "SignatureError",
    "SignedCertificateTimestamp",
    "SignedTreeHead",
    "Signer",
    "Tile",
    "TileLeaf",
    "TileLog",
    "TileNotFound",
    "TileStorage",
    "TimestampedEntry",
    "TreeSizeOutOfRange",
    "consistency_proof",
    "decode_data_tile",
    "decode_sct_list",
    "encode_checkpoint",
    "encode_sct_list",
    "inclusion_proof",
    "issuer_key_hash",
    "leaf_hash",
    "log_id",
    "parse_checkpoint",
    "parse_tile_path",
    "precert_tbs_from_certificate",
    "precert_tbs_from_precertificate",
    "root_from_leaf_hashes",
    "root_from_leaves",
    "sct_list_extension_value",
    "tiles_for_consistency",
    "tiles_for_inclusion",
    "verify_consistency",
    "verify_inclusion",
    "verify_sct",
]
