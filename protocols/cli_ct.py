"""`trustchain ct sth | proof | verify | info`: check the CT log from the outside.

Nothing the log says is taken on trust: the tree head's signature is checked
here with the log key from ``log_info``; ``proof`` rebuilds the certificate's
RFC 6962 §3.4 MerkleTreeLeaf from the certificate itself (its embedded SCT's
timestamp and extensions, the issuer's SPKI hash, the TBS without the SCT
list) and verifies the inclusion proof and the SCT signature here; ``verify``
recomputes every leaf hash and the root from get-entries pages, then checks a
consistency proof and a sample of inclusion proofs. Every failure prints one
line saying what did not verify and exits 1. This module fetches and prints;
the checks are ``trustchain.actors.ct.audit``'s, which the monitor uses too.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import SignedTreeHead
from trustchain.actors.ct.audit import (
    CheckFailed,
    b64,
    certificate_included,
    consistent,
    entry_hashes,
    entry_included,
    public_key_of,
    root_matches,
    signed_tree_head,
    verified_sct,
)
from trustchain.actors.ct.audit import precert_leaf as precert_leaf  # re-exported for tests
from trustchain.actors.ct.chains import issued_by
from trustchain.protocols.cli_common import Context, fail
from trustchain.supervisors import TrustChainError

Call = Callable[[str, dict[str, Any] | None], Any]  # (type, args) -> ctlog's reply
T = TypeVar("T")


# The certificate side of `ct proof` ----------------------------------------------


def load_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CheckFailed(f"{path} holds no readable certificate: {exc}") from None


def find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate], source: str
) -> x509.Certificate:
    """The candidate whose key verifies ``cert``'s signature."""
    named = False
    for candidate in candidates:
        named = named or candidate.subject == cert.issuer
        if issued_by(cert, candidate):
            return candidate
    if named:
        raise CheckFailed(
            f"the certificate's signature does not verify under its issuer "
            f"{cert.issuer.rfc4514_string()!r} ({source}): it was altered, "
            "or that is another CA"
        )
    raise CheckFailed(
        f"no certificate in {source} issued this one "
        f"(issuer {cert.issuer.rfc4514_string()!r}); give --chain"
    )


def prove_inclusion(
    call: Call,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    key: ec.EllipticCurvePublicKey,
    sth: SignedTreeHead,
) -> tuple[int, int]:
    """Check ``cert``'s SCT from this log and its precert's inclusion in ``sth``: (index, size)."""
    sct, leaf = verified_sct(cert, issuer, key)
    digest = leaf.leaf_hash()
    try:
        reply = call("get_proof_by_hash", {"hash": b64(digest), "tree_size": sth.tree_size})
    except TrustChainError as exc:
        raise CheckFailed(
            f"the log cannot prove this certificate's precertificate is in the "
            f"tree of size {sth.tree_size}: {exc.message} [{exc.code}]"
        ) from None
    return certificate_included(sct, digest, reply, sth), sth.tree_size


# The whole log: `ct verify` ---------------------------------------------------------


def audit(
    call: Call,
    sth: SignedTreeHead,
    from_size: int | None,
    sample: int,
    rng: random.Random,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[str]:
    """Recompute the tree of ``sth`` from its entries, then check proofs; the report lines."""
    size, first_page = sth.tree_size, 0
    hashes: list[bytes] = []
    while len(hashes) < size:
        page = call("get_entries", {"start": len(hashes), "end": size - 1})["entries"]
        if not page:
            raise CheckFailed(f"get_entries returned nothing at {len(hashes)} of {size}")
        hashes += entry_hashes(page, len(hashes))
        first_page = first_page or len(page)
        if len(hashes) % 65_536 < len(page):
            echo(f"... {len(hashes):,} of {size:,} entries")
    hashes = hashes[:size]
    root = root_matches(hashes, sth)
    lines = [f"{size} entries; their root matches the signed tree head"]
    # By default, from the tree of the first page (or half the log when one page held it all).
    first = (first_page if first_page < size else size // 2) if from_size is None else from_size
    if 0 < first < size:
        consistent(
            hashes, first, root, call("get_sth_consistency", {"first": first, "second": size})
        )
        lines.append(f"consistency {first} -> {size} OK")
    else:
        lines.append(f"consistency: nothing to prove from size {first} to {size}")
    indices = sorted({0, size - 1, *rng.sample(range(size), min(sample, size))}) if size else []
    for index in indices:
        reply = call("get_proof_by_hash", {"hash": b64(hashes[index]), "tree_size": size})
        entry_included(hashes, index, root, reply)
    lines.append(f"{len(indices)} inclusion proofs OK")
    return lines


# Commands ----------------------------------------------------------------------------


class LogSession:
    """One control-socket connection; any error reply or failed check ends the command."""

    def __init__(self, obj: Context) -> None:
        try:
            self._client = obj.client()
        except TrustChainError as exc:
            fail(f"{exc.message} [{exc.code}]")

    def __enter__(self) -> LogSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def raw(self, type: str, args: dict[str, Any] | None = None, to: str = "ctlog") -> Any:
        """Raises TrustChainError, so a caller can say what an error means."""
        try:
            return self._client.call(to, type, args)
        except OSError as exc:
            fail(f"control socket: {exc}")

    def call(self, type: str, args: dict[str, Any] | None = None, to: str = "ctlog") -> Any:
        try:
            return self.raw(type, args, to)
        except TrustChainError as exc:
            fail(f"{to} {type}: {exc.message} [{exc.code}]")

    def key_and_head(self) -> tuple[dict[str, Any], ec.EllipticCurvePublicKey, SignedTreeHead]:
        info = self.call("get_log_info")
        key = checked(lambda: public_key_of(info))
        return info, key, checked(lambda: signed_tree_head(self.call("get_sth"), key))


def checked(step: Callable[[], T]) -> T:
    """Run one check; a failure ends the command with its one-line message."""
    try:
        return step()
    except CheckFailed as exc:
        fail(str(exc))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@click.group()
def ct() -> None:
    """The Certificate Transparency log: tree head, proofs, a full audit."""


@ct.command("info")
@click.pass_obj
def ct_info(obj: Context) -> None:
    """The log's origin, ID, key, size and pool."""
    with LogSession(obj) as log:
        info = log.call("get_log_info")
    key = info.pop("public_key")
    for name, value in info.items():
        click.echo(f"{name:<14}{value}")
    click.echo(key, nl=False)


@ct.command("sth")
@click.pass_obj
def ct_sth(obj: Context) -> None:
    """The current signed tree head, its signature verified here."""
    with LogSession(obj) as log:
        info, _key, sth = log.key_and_head()
    age = max(0.0, datetime.now(UTC).timestamp() - sth.timestamp / 1000)
    click.echo(f"tree size     {sth.tree_size}")
    click.echo(f"timestamp     {_when(sth.timestamp)} ({age:.1f} s ago)")
    click.echo(f"root hash     {b64(sth.root_hash)}")
    click.echo(f"signature     OK (log {info['log_id']})")


@ct.command("proof")
@click.argument(
    "cert_file", metavar="CERT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--chain",
    "chain_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The issuer's certificate (default: ask the issuer).",
)
@click.pass_obj
def ct_proof(obj: Context, cert_file: Path, chain_file: Path | None) -> None:
    """Prove that CERT (issued by TrustChain) is in the log, from its embedded SCT."""
    cert, *rest = checked(lambda: load_certificates(cert_file))
    with LogSession(obj) as log:
        if chain_file is not None:
            candidates, source = checked(lambda: load_certificates(chain_file)), str(chain_file)
        elif rest:
            candidates, source = rest, str(cert_file)
        else:
            candidates = [
                x509.load_pem_x509_certificate(c["certificate"].encode())
                for c in log.call("get_ca_status", to="issuer")
            ]
            source = "the issuer's CA certificates"
        issuer = checked(lambda: find_issuer(cert, candidates, source))
        _info, key, sth = log.key_and_head()
        index, size = checked(lambda: prove_inclusion(log.raw, cert, issuer, key, sth))
    click.echo(f"serial        {cert.serial_number:x}")
    click.echo(f"leaf index    {index}")
    click.echo(f"tree size     {size} (signed {_when(sth.timestamp)})")
    click.echo("SCT signature OK")
    click.echo("inclusion     OK")


@ct.command("verify")
@click.option(
    "--from-size",
    type=int,
    help="Check consistency from this size (default: the size of the first get-entries page).",
)
@click.option(
    "--sample",
    type=click.IntRange(0),
    default=32,
    show_default=True,
    help="Entries whose inclusion proof is checked (first and last always).",
)
@click.option("--seed", type=int, default=None, help="Seed for the sample (default: random).")
@click.pass_obj
def ct_verify(obj: Context, from_size: int | None, sample: int, seed: int | None) -> None:
    """Walk the whole log: recompute every leaf hash and the root, check proofs."""
    with LogSession(obj) as log:
        _info, _key, sth = log.key_and_head()
        if from_size is not None and not 0 < from_size <= sth.tree_size:
            fail(f"--from-size must be 1..{sth.tree_size} (the current tree size)", 2)
        progress = functools.partial(click.echo, err=True)
        rng = random.Random(seed)
        lines = checked(lambda: audit(log.call, sth, from_size, sample, rng, progress))
    for line in lines:
        click.echo(line)
    click.echo("OK")
