"""`trustchain trust scores | evidence | asset ID` and `trustchain stake grant`: the
four-proof consensus's commands, answered by the detector (``trust.enabled``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console
from rich.table import Table

from trustchain.actors.trust import space
from trustchain.actors.trust.errors import AssetRecordInvalid
from trustchain.actors.trust.records import sign_record
from trustchain.actors.trust.requests import ConsensusParams, asset_key_of, prove_request
from trustchain.protocols.cli_common import Context, fail, write_private

# What unknown_actor means when these commands ask the detector (a TrustChain whose config
# turns the consensus off has none).
NO_CONSENSUS = {
    "unknown_actor": "the running TrustChain has no detector: it runs without the four-proof "
    "consensus (trust.enabled = false in its config)"
}
NO_CONSENSUS_TO_PROVE_TO = {
    "unknown_actor": NO_CONSENSUS["unknown_actor"] + ", but this command's config has it on: "
    "give both the same config"
}


def asset_identity(path: Path) -> ed25519.Ed25519PrivateKey:
    """This machine's asset key: made on first use (0600), the same one after."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise click.ClickException(f"{path} is not an Ed25519 private key")
        return key
    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return key


def registered_asset(obj: Context) -> tuple[ed25519.Ed25519PrivateKey, ConsensusParams, int, float]:
    """This machine's asset identity, registered for the epoch: registers it when it has
    no registration (a stake, then a space proof answering a fresh challenge). Returns
    the key, the consensus's parameters, the epoch and the seconds registering took (0
    when it was registered already)."""
    key = asset_identity(obj.config().trust.asset_key)
    asset = asset_key_of(key).hex()
    answer = obj.call("detector", "get_trust_params", explain=NO_CONSENSUS_TO_PROVE_TO)
    params, epoch = ConsensusParams.from_json(answer["params"]), answer["epoch"]
    if obj.call("detector", "registration_status", {"asset": asset})["registered"]:
        return key, params, epoch, 0.0
    start = time.perf_counter()
    stake = obj.call("detector", "grant_stake", {"asset": asset, "amount": params.min_stake})
    plotted = space.plot(bytes.fromhex(asset), params.space_blocks, params.space)
    commitment = {"asset": asset, "commitment": plotted.root.hex(), "n": plotted.n}
    challenge = bytes.fromhex(obj.call("detector", "space_challenge", commitment)["challenge"])
    proof = space.answer_challenge(plotted, challenge, params.space_challenges)
    obj.call("detector", "register_asset",
             {"asset": asset, "stake": stake, "space_proof": proof.to_json()})  # fmt: skip
    return key, params, epoch, time.perf_counter() - start


def prove_as_asset(obj: Context, csr_der: bytes) -> tuple[dict[str, Any], dict[str, float]]:
    """Everything `trustchain issue` does for the consensus: this machine's asset,
    registered for the epoch, then the request's proofs. Returns the proofs (JSON) and
    the seconds each step took."""
    key, params, epoch, registering = registered_asset(obj)
    took = {"register": registering} if registering else {}
    proofs, timings = prove_request(csr_der, key, epoch, params)
    took.update(timings)
    return proofs.to_json(params.modulus), took


def echo_timings(took: dict[str, float], err: bool = False) -> None:
    """What each step of proving cost this machine, one line each, in ms."""
    for name, seconds in took.items():
        click.echo(f"{name.removesuffix('_s'):<10} {seconds * 1000:.1f} ms", err=err)


@click.group()
def trust() -> None:
    """Validators' and assets' trust, and the evidence of misbehaviour."""


@trust.command("scores")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer as JSON.")
@click.pass_obj
def trust_scores(obj: Context, as_json: bool) -> None:
    """Every validator's score; a quarantined one (it equivocated) is never counted again."""
    scores = obj.call("detector", "trust_scores", explain=NO_CONSENSUS)
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    table = Table()
    for column in ("validator", "score", "agreed", "dissented", "quarantined"):
        table.add_column(column)
    for row in scores:
        quarantined = "yes" if row.get("quarantined") else ""
        counts = (str(row.get("agreed", "")), str(row.get("dissented", "")))
        table.add_row(str(row["validator"]), f"{row['score']:.3f}", *counts, quarantined)
    Console().print(table)


@trust.command("evidence")
@click.pass_obj
def trust_evidence(obj: Context) -> None:
    """Every equivocation caught: both signed votes, as JSON anyone can check."""
    click.echo(json.dumps(obj.call("detector", "evidence", explain=NO_CONSENSUS), indent=2))


@trust.command("asset")
@click.argument("asset", required=False)
@click.pass_obj
def trust_asset(obj: Context, asset: str | None) -> None:
    """ASSET's trust score (hex of its Ed25519 key) and the factors it is made of; without
    ASSET, this machine's (the one `trustchain issue` proves as)."""
    if asset is None:
        path = obj.config().trust.asset_key
        if not path.exists():
            fail(f"no ASSET given, and this machine has no asset key yet ({path}); "
                 "`trustchain issue` makes one", 2)  # fmt: skip
        asset = asset_key_of(asset_identity(path)).hex()
    result = obj.call("detector", "validate_asset_trust", {"asset": asset}, NO_CONSENSUS)
    click.echo(f"asset  {result['asset']}\nscore  {result['score']:.3f}")
    for name, value in sorted(result.get("factors", {}).items()):
        click.echo(f"  {name:<22} {value:g}")


@trust.command("prove")
@click.option("--csr", "csr_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The CSR (PEM or DER) the proofs are for.")  # fmt: skip
@click.pass_obj
def trust_prove(obj: Context, csr_file: Path) -> None:
    """Print this machine's asset's proofs for the CSR (registering the asset first when
    needed), as JSON: what an ACME order of a consensus profile (acme.consensus_profiles)
    carries in its finalize as `trustchainProofs`. The timings go to stderr."""
    data = csr_file.read_bytes()
    try:
        if data.lstrip().startswith(b"-----"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        fail(f"{csr_file} is not a CSR in PEM or DER ({exc})", 2)
    proofs, took = prove_as_asset(obj, csr.public_bytes(serialization.Encoding.DER))
    click.echo(json.dumps(proofs, indent=2))
    echo_timings(took, err=True)


@trust.command("publish")
@click.argument("name")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_obj
def trust_publish(obj: Context, name: str, addresses: tuple[str, ...]) -> None:
    """Publish this machine's asset in the zone as NAME (one DNS label, under the zone's
    `assets`) at its IPv6 ADDRESSES, signed with its asset key, for this epoch
    (registering the asset first when needed)."""
    key, _params, epoch, _took = registered_asset(obj)
    try:
        record = sign_record(key, epoch, name, list(addresses))
    except AssetRecordInvalid as exc:
        fail(f"{exc.message} [{exc.code}]", 2)
    args = {"asset": record.asset, "name": record.name, "addresses": list(record.addresses),
            "signature": record.signature.hex()}  # fmt: skip
    result = obj.call("detector", "publish_asset_record", args, NO_CONSENSUS)
    click.echo(
        f"asset      {result['asset']}\nname       {result['name']}\n"
        f"addresses  {' '.join(result['addresses'])}\nepoch      {result['epoch']}"
    )


@trust.command("records")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer as JSON.")
@click.pass_obj
def trust_records(obj: Context, as_json: bool) -> None:
    """The assets published in the zone this epoch, with their trust."""
    records = obj.call("detector", "asset_records", explain=NO_CONSENSUS)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    table = Table()
    for column in ("name", "addresses", "score", "quarantined", "asset"):
        table.add_column(column)
    for row in records:
        table.add_row(row["name"], " ".join(row["addresses"]), f"{row['score']:.3f}",
                      "yes" if row["quarantined"] else "", row["asset"][:16] + "...")  # fmt: skip
    Console().print(table)


@click.group()
def stake() -> None:
    """Stake records, signed by the stake authority's key in the HSM."""


@stake.command("grant")
@click.argument("asset")
@click.argument("amount", type=click.IntRange(min=0))
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True)
@click.pass_obj
def stake_grant(obj: Context, asset: str, amount: int, days: int) -> None:
    """Grant ASSET (hex of its Ed25519 key) a stake of AMOUNT for DAYS: prints the signed
    record, which the asset presents when it registers."""
    args = {"asset": asset, "amount": amount, "days": days}
    click.echo(json.dumps(obj.call("detector", "grant_stake", args, NO_CONSENSUS), indent=2))
