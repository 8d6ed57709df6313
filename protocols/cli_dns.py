r"""`trustchain dig NAME [TYPE] [NAME [TYPE]...]`: DNS over QUIC (RFC 9250) with
dnspython's own DoQ client, printed as dig prints, with each query's round trip; and
`trustchain dns txt add|del|list`: ACME dns-01 TXT records (RFC 8555 §8.4) in the
zone, over the control socket (the resolver's ``AddChallengeTxt``...), shaped for
certbot's manual hooks::

    certbot certonly --manual --preferred-challenges dns \
      --manual-auth-hook \
        'trustchain dns txt add "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION"' \
      --manual-cleanup-hook \
        'trustchain dns txt del "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION"'

Every name of one call goes over one QUIC connection (the first query's time
includes the handshake). The server's certificate is checked against
``--ca`` (default: the CA's root, ``root.pem`` beside ``ca.database``, which
is ``var/ca/root.pem``) for ``--server-name`` (default: the first DNS name of
``[resolver] names``). A name without a dot is relative to ``[resolver] origin``
(`trustchain dig hypermesh`); any other is taken as absolute.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.quic
import dns.rcode
import dns.rdatatype

from trustchain.protocols.cli_common import Context, fail

CLIENT_PADDING_BLOCK = 128  # RFC 8467 §4.1: queries padded to a multiple of 128 octets


# What unknown_actor means to the dns txt commands
NO_RESOLVER = {
    "unknown_actor": "the running TrustChain has no resolver (resolver.enabled = false in "
    "its config)"
}


def zone_name(text: str, origin: str) -> str:
    """``text`` relative to ``origin`` when it has no dot, as `trustchain dig` reads names;
    any other is absolute."""
    base = dns.name.from_text(origin) if "." not in text.rstrip(".") else dns.name.root
    try:
        return dns.name.from_text(text, base).to_text()
    except dns.exception.DNSException as exc:
        fail(f"{text!r} is not a DNS name: {exc}", 2)


def parse_questions(args: tuple[str, ...], origin: str) -> list[tuple[dns.name.Name, str]]:
    """dig's order: each name, optionally followed by its type (AAAA by default)."""
    questions: list[tuple[dns.name.Name, str]] = []
    base = dns.name.from_text(origin)
    for arg in args:
        if questions and "." not in arg and _rdtype(arg) is not None:
            questions[-1] = (questions[-1][0], arg.upper())
            continue
        try:
            name = dns.name.from_text(arg, base if "." not in arg.rstrip(".") else dns.name.root)
        except dns.exception.DNSException as exc:
            raise click.BadParameter(f"{arg!r} is not a DNS name: {exc}") from None
        questions.append((name, "AAAA"))
    if not questions:
        raise click.BadParameter("give at least one NAME")
    return questions


def _rdtype(text: str) -> dns.rdatatype.RdataType | None:
    try:
        return dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        return None


def dig_text(response: dns.message.Message, took_s: float, server: str, port: int) -> str:
    """What dig prints for one response."""
    flags = dns.flags.to_text(response.flags).lower()
    lines = [
        f";; ->>HEADER<<- opcode: {dns.opcode.to_text(response.opcode())}, "
        f"status: {dns.rcode.to_text(response.rcode())}, id: {response.id}",
        f";; flags: {flags}; QUERY: {len(response.question)}, "
        f"ANSWER: {sum(len(r) for r in response.answer)}, "
        f"AUTHORITY: {sum(len(r) for r in response.authority)}, "
        f"ADDITIONAL: {sum(len(r) for r in response.additional) + (response.edns >= 0)}",
    ]
    if response.edns >= 0:
        lines += [
            "",
            ";; OPT PSEUDOSECTION:",
            f"; EDNS: version: {response.edns}, udp: {response.payload}",
        ]
        lines += [
            f"; {option.to_text()}" for option in response.options if option.otype != 12
        ]  # padding (12) is noise
    lines += ["", ";; QUESTION SECTION:"]
    lines += [
        f";{rrset.name}\t\tIN\t{dns.rdatatype.to_text(rrset.rdtype)}" for rrset in response.question
    ]
    for title, section in (("ANSWER", response.answer), ("AUTHORITY", response.authority)):
        if section:
            lines += ["", f";; {title} SECTION:"] + [rrset.to_text() for rrset in section]
    lines += [
        "",
        f";; Query time: {took_s * 1000:.1f} msec",
        f";; SERVER: {server}#{port}({server}) (QUIC)",
        f";; WHEN: {datetime.now(UTC):%a %b %d %H:%M:%S UTC %Y}",
        f";; MSG SIZE  rcvd: {len(response.to_wire())}",
    ]
    return "\n".join(lines)


@click.command()
@click.argument("args", nargs=-1, metavar="NAME [TYPE] [NAME [TYPE]...]")
@click.option("--server", help="The DoQ server's IPv6 address (default: resolver.host).")
@click.option("--port", type=click.IntRange(1, 65_535), help="Its UDP port (resolver.port).")
@click.option(
    "--ca",
    type=click.Path(path_type=Path),
    help="The root to verify its certificate with (default: the CA's root.pem).",
)
@click.option(
    "--server-name",
    help="The name its certificate must carry (default: the first DNS name of resolver.names).",
)
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True)
@click.pass_obj
def dig(
    obj: Context,
    args: tuple[str, ...],
    server: str | None,
    port: int | None,
    ca: Path | None,
    server_name: str | None,
    timeout: float,
) -> None:
    """Ask TrustChain's DNS-over-QUIC server, as dig would (one connection for all NAMEs)."""
    config = obj.config()
    resolver = config.resolver
    try:
        questions = parse_questions(args, resolver.origin)
    except click.BadParameter as exc:
        fail(exc.message, 2)
    server = server or resolver.host
    port = port or resolver.port
    ca = ca or config.ca.database.parent / "root.pem"
    if not ca.is_file():
        fail(f"no root certificate at {ca}: run `trustchain ca root --out {ca}` or give --ca")
    hostname = server_name or next((n for n in resolver.names if ":" not in n), server)
    with dns.quic.SyncQuicManager(verify_mode=str(ca), server_name=hostname) as manager:
        connection = manager.connect(server, port)
        for i, (name, rdtype) in enumerate(questions):
            query = dns.message.make_query(name, rdtype, use_edns=0, pad=CLIENT_PADDING_BLOCK)
            start = time.perf_counter()
            try:
                response = dns.query.quic(
                    query, server, timeout=timeout, port=port, connection=connection
                )
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                fail(
                    f"no answer for {name} {rdtype} from [{server}]:{port} over DoQ ({why}); "
                    f"is it serving there, and does {ca} hold the root that issued its "
                    f"certificate for {hostname}?"
                )
            took = time.perf_counter() - start
            if i:
                click.echo()
            click.echo(f"; <<>> trustchain dig <<>> @{server} -p {port} {name} {rdtype} +quic")
            click.echo(dig_text(response, took, server, port))


@click.group("dns")
def dns_group() -> None:  # not ``dns``: that is dnspython here
    """TrustChain's zone: records published over the control socket."""


@dns_group.group()
def txt() -> None:
    """ACME dns-01 TXT records at _acme-challenge.<a name in the zone> (an hour each)."""


def _until(expires_at: float) -> str:
    return f"{datetime.fromtimestamp(expires_at, UTC):%Y-%m-%d %H:%M:%S} UTC"


@txt.command("add")
@click.argument("name")
@click.argument("value")
@click.pass_obj
def txt_add(obj: Context, name: str, value: str) -> None:
    """Publish VALUE in the TXT record at NAME (relative to resolver.origin when it has
    no dot; "_acme-challenge.www.trust.example.com" otherwise), once it is on disk."""
    args = {"name": zone_name(name, obj.config().resolver.origin), "value": value}
    added = obj.call("resolver", "add_challenge_txt", args, NO_RESOLVER)
    click.echo(f'{added["name"]} TXT "{added["value"]}" until {_until(added["expires_at"])}')


@txt.command("del")
@click.argument("name")
@click.argument("value")
@click.pass_obj
def txt_del(obj: Context, name: str, value: str) -> None:
    """Remove VALUE from the TXT record at NAME (not there any more is not an error)."""
    args = {"name": zone_name(name, obj.config().resolver.origin), "value": value}
    removed = obj.call("resolver", "remove_challenge_txt", args, NO_RESOLVER)
    state = "removed" if removed["removed"] else "not there (removed or expired already)"
    click.echo(f'{removed["name"]} TXT "{removed["value"]}" {state}')


@txt.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer as JSON.")
@click.pass_obj
def txt_list(obj: Context, as_json: bool) -> None:
    """Every challenge TXT record in the zone, with when it expires."""
    records = obj.call("resolver", "list_challenge_txt", explain=NO_RESOLVER)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
        click.echo(f'{record["name"]} TXT "{record["value"]}" until {_until(record["expires_at"])}')
