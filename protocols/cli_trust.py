"""`trustchain trust scores | evidence | asset ID` and `trustchain stake grant`: the
four-proof consensus's commands, answered by the detector (``trust.enabled``)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from trustchain.protocols.cli_common import Context


@click.group()
def trust() -> None:
    """Validators' and assets' trust, and the evidence of misbehaviour."""


@trust.command("scores")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer as JSON.")
@click.pass_obj
def trust_scores(obj: Context, as_json: bool) -> None:
    """Every validator's score; a quarantined one (it equivocated) is never counted again."""
    scores = obj.call("detector", "trust_scores")
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
    click.echo(json.dumps(obj.call("detector", "evidence"), indent=2))


@trust.command("asset")
@click.argument("asset")
@click.pass_obj
def trust_asset(obj: Context, asset: str) -> None:
    """ASSET's trust score (hex of its Ed25519 key) and the factors it is made of."""
    result = obj.call("detector", "validate_asset_trust", {"asset": asset})
    click.echo(f"asset  {result['asset']}\nscore  {result['score']:.3f}")
    for name, value in sorted(result.get("factors", {}).items()):
        click.echo(f"  {name:<22} {value:g}")


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
    click.echo(json.dumps(obj.call("detector", "grant_stake", args), indent=2))
