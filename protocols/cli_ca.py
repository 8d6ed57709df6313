"""`trustchain issue | revoke | crl | ca ...`: the CA's commands.

`issue` without `--csr` makes the key here, on this machine: only a CSR goes
to TrustChain, and the key is written 0600 next to the certificate.
"""

from __future__ import annotations

import base64
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.table import Table

from trustchain.actors.ca import SubscriberKey, new_csr, new_key
from trustchain.config import SUBSCRIBER_KEY_TYPES
from trustchain.protocols.cli_common import Context, fail, write_private
from trustchain.protocols.cli_trust import echo_timings, prove_as_asset

# proofs_required when this command's config turned the consensus off and the server's did not
UNPROVEN = {
    "proofs_required": "the running TrustChain issues only with the four-proof consensus's "
    "approval, but this command's config has trust.enabled = false, so it sent no proofs: "
    "give both the same config"
}


@click.command()
@click.argument("names", nargs=-1)
@click.option(
    "--csr",
    "csr_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this CSR (PEM or DER) instead of making a key here.",
)
@click.option(
    "--key-type", type=click.Choice(SUBSCRIBER_KEY_TYPES), default="ec-p256", show_default=True
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for the key, certificate and chain.",
)
@click.option("--validity", "validity_s", type=int, help="Lifetime in seconds (default 24 h).")
@click.option("--client-auth", is_flag=True, help="Also allow TLS client authentication.")
@click.pass_obj
def issue(obj: Context, names: tuple[str, ...], csr_file: Path | None, key_type: str, out: Path,
          validity_s: int | None, client_auth: bool) -> None:  # fmt: skip
    """Issue a certificate for NAMES (DNS names or IPv6 addresses), or for a CSR."""
    key: SubscriberKey | None = None
    if csr_file is not None:
        if names:
            fail("give NAMES or --csr, not both (the CSR carries its names)", 2)
        data = csr_file.read_bytes()
        pem = data.lstrip().startswith(b"-----")
        csr = data.decode() if pem else base64.b64encode(data).decode()
    else:
        if not names:
            fail("name at least one DNS name or IPv6 address, or give --csr", 2)
        key = new_key(key_type)
        csr = new_csr(key, names).decode()
    args: dict[str, object] = {"csr": csr, "client_auth": client_auth}
    if validity_s is not None:
        args["validity_s"] = validity_s
    took: dict[str, float] = {}
    asset = None
    if obj.config().trust.enabled:  # the consensus must approve: prove, as this asset
        csr_der = csr_file.read_bytes() if csr_file is not None and not pem else None
        if csr_der is None:
            csr_der = x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER)
        proofs, took = prove_as_asset(obj, csr_der)
        args["proofs"], asset = proofs, proofs["asset"]
    reply = obj.call("issuer", "issue_certificate", args, explain=None if asset else UNPROVEN)
    out.mkdir(parents=True, exist_ok=True)
    stem = (reply["names"][0] if reply["names"] else reply["serial"]).replace("*", "_")
    written = []
    if key is not None:
        key_path = out / f"{stem}.key"
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))  # fmt: skip
        written.append(key_path)
    for suffix, text in (("crt", reply["certificate"]), ("chain.crt", reply["chain"])):
        path = out / f"{stem}.{suffix}"
        path.write_text(text)
        written.append(path)
    click.echo(f"serial     {reply['serial']}")
    click.echo(f"names      {', '.join(reply['names'])}")
    click.echo(f"not after  {reply['not_after']}")
    for key_name in ("leaf_index", "sct"):
        if key_name in reply:
            click.echo(f"{key_name:<10} {reply[key_name]}")
    for path in written:
        click.echo(f"wrote      {path}")
    if asset is not None:  # the one that proved it (`trustchain trust asset` shows its score)
        click.echo(f"asset      {asset}")
    echo_timings(took)  # what each proof cost this machine


@click.command()
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              help="key_compromise, superseded, cessation_of_operation, affiliation_changed, "
                   "privilege_withdrawn or unspecified.")  # fmt: skip
@click.pass_obj
def revoke(obj: Context, serial: str, reason: str) -> None:
    """Revoke a certificate by serial (hex); the CRL is regenerated at once."""
    result = obj.call("issuer", "revoke_certificate", {"serial": serial, "reason": reason})
    click.echo(f"{result['serial']} revoked ({result['reason']}) at {result['revoked_at']}; "
               f"CRL number {result['crl_number']}")  # fmt: skip


@click.command()
@click.option("--ca", help="The CA's key label (default: the current intermediate).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the CRL (PEM) here instead of printing it.",
)
@click.pass_obj
def crl(obj: Context, ca: str | None, out: Path | None) -> None:
    """Print or write a CA's current CRL."""
    result = obj.call("issuer", "get_crl", {"ca": ca} if ca else {})
    if out is None:
        click.echo(result["crl"], nl=False)
        return
    out.write_text(result["crl"])
    click.echo(f"wrote {out}: CRL number {result['crl_number']}, {result['revoked']} revoked, "
               f"next update {result['next_update']}")  # fmt: skip


@click.group()
def ca() -> None:
    """The CA hierarchy: status, root certificate, intermediate rotation."""


@ca.command("status")
@click.pass_obj
def ca_status(obj: Context) -> None:
    """The root and the intermediates that have not expired."""
    table = Table()
    for column in ("role", "key label", "subject", "not after", "current"):
        table.add_column(column)
    for cert in obj.call("issuer", "get_ca_status"):
        table.add_row(cert["role"], cert["key_label"], cert["subject"], cert["not_after"],
                      "yes" if cert["current"] else "")  # fmt: skip
    Console().print(table)


@ca.command("root")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def ca_root(obj: Context, out: Path | None) -> None:
    """Print or write the root certificate (what relying parties trust)."""
    root = next(c for c in obj.call("issuer", "get_ca_status") if c["role"] == "root")
    if out is None:
        click.echo(root["certificate"], nl=False)
    else:
        out.write_text(root["certificate"])
        click.echo(f"wrote {out}")


@ca.command("rotate-intermediate")
@click.pass_obj
def rotate_intermediate(obj: Context) -> None:
    """A new intermediate key (in the HSM) and certificate; earlier leaves stay valid."""
    result = obj.call("issuer", "rotate_intermediate")
    click.echo(f"new intermediate {result['key_label']}, valid until {result['not_after']}")
