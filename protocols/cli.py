"""The `trustchain` command line.

Every command but `run` and `hsm init` talks to a running TrustChain over
the control socket named by the config. Errors print one line on stderr,
never a traceback, and exit non-zero (1 for an error reply or no runtime,
2 for bad usage or config).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trustchain.config import ConfigError
from trustchain.protocols.cli_ca import ca, crl, issue, revoke
from trustchain.protocols.cli_common import Context, fail
from trustchain.protocols.cli_ct import ct
from trustchain.protocols.cli_dns import dig, dns_group
from trustchain.protocols.cli_trust import stake, trust
from trustchain.supervisors.errors import TrustChainError


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="TRUSTCHAIN_CONFIG",
    help="TOML config file (default: the packaged default.toml).",
)
@click.option(
    "--socket", type=click.Path(path_type=Path), help="Control socket path (overrides the config)."
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, socket: Path | None) -> None:
    """TrustChain: a certificate authority as a tree of supervised actors."""
    ctx.obj = Context(config_path, socket)


@main.command()
@click.option("--log-json", is_flag=True, default=None, help="Log JSON lines instead of text.")
@click.option("--log-level", type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"]))
@click.pass_obj
def run(obj: Context, log_json: bool | None, log_level: str | None) -> None:
    """Run TrustChain in the foreground (Ctrl-C or `trustchain stop` ends it)."""
    from trustchain.actors import child
    from trustchain.protocols.boot import run as run_runtime

    # Each child process (the token's, each validator's) imports this program's main
    # module again, and this one imports the CLI: loaded once in the forkserver instead.
    child.preload(__name__)

    overrides: dict[str, Any] = {}
    if log_json is not None:
        overrides["runtime.log_json"] = log_json
    if log_level is not None:
        overrides["runtime.log_level"] = log_level
    if obj.socket_override is not None:
        overrides["runtime.control_socket"] = str(obj.socket_override)
    config = obj.config(overrides)
    try:
        sys.exit(run_runtime(config))
    except ConfigError as exc:  # what the actors would refuse at their start
        fail(str(exc), 2)
    except TrustChainError as exc:
        fail(f"{exc.message} [{exc.code}]")


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _ago(failure: dict[str, Any]) -> str:
    """The last failure, its age first, so that a cut line still says what and when."""
    seconds = max(0, int(time.time() - failure["at"]))
    return f"{failure['type']} {_uptime(seconds)} ago: {failure['message']}"


def _faults(faults: list[dict[str, Any]]) -> str:
    """A resource an actor depends on that is failing: which, for how long, why."""
    return "; ".join(f"{f['resource']} down {_uptime(f['down_s'])}: {f['error']}" for f in faults)


def _problem(actor: dict[str, Any]) -> Text:
    """Faults (now) then the last failure (past), on one line cut with an ellipsis."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if actor.get("faults"):
        text.append(_faults(actor["faults"]), style="red")
    if actor["last_failure"]:
        text.append("; " if text else "")
        text.append(f"last: {_ago(actor['last_failure'])}", style="dim")
    return text if text else Text("-")


def _tree_order(actors: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, actor), each supervisor followed by its children, in the order given."""
    names = {actor["name"] for actor in actors}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for actor in actors:
        parent = actor["supervisor"] if actor["supervisor"] in names else None
        children.setdefault(parent, []).append(actor)
    ordered: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for actor in children.get(parent, []):
            if actor["name"] not in seen:
                seen.add(actor["name"])
                ordered.append((depth, actor))
                walk(actor["name"], depth + 1)

    walk(None, 0)
    ordered += [(0, actor) for actor in actors if actor["name"] not in seen]  # a loop: show it
    return ordered


STATE_STYLE = {
    "running": "green",
    "degraded": "bold red",
    "restarting": "yellow",
    "starting": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}

NARROW = 100  # below this many columns the table leaves out "handled"


def status_table(status: dict[str, Any], width: int | None = None) -> Table:
    """One line per actor, indented under its supervisor; fits ``width`` columns.

    The problem column (faults, then the last failure) takes the room that is
    left and is cut with an ellipsis; ``--json`` has every word of it.
    """
    title = f"TrustChain (pid {status['pid']}, up {_uptime(status['uptime_s'])})"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    narrow = width is not None and width < NARROW
    numbers = ("restarts", "mailbox") if narrow else ("restarts", "mailbox", "handled")
    table.add_column("actor", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("uptime", justify="right", no_wrap=True)
    # the only column that may shrink: rich narrows it first, and its text is cut, not folded
    table.add_column("problem", min_width=7)
    for depth, actor in _tree_order(status["actors"]):
        state = actor["state"]
        if state == "running" and actor.get("faults"):
            state = "degraded"  # running, refusing what needs the failing resource
        counts = [str(actor[column]) for column in numbers]
        table.add_row(
            Text("  " * depth + actor["name"]),
            Text(state, style=STATE_STYLE.get(state, "")),
            *counts,
            _uptime(actor["uptime_s"]) if actor["state"] == "running" else "-",
            _problem(actor),
        )
    return table


def trust_line(trust: dict[str, Any]) -> str:
    """The consensus under the table: decisions and alerts since the detector started."""
    decided = ", ".join(f"{n} {o}" for o, n in sorted(trust["decisions"].items()) if n)
    alerts = ", ".join(f"{n} {kind}" for kind, n in sorted(trust["alerts"].items()) if n)
    line = f"trust: N={trust['validators']} f={trust['f']}; decisions: {decided or 'none'}"
    line += f"; alerts: {alerts or 'none'}"
    if trust["quarantined"]:
        line += f"; quarantined: {', '.join(trust['quarantined'])}"
    return line


def acme_line(acme: dict[str, Any]) -> str:
    """ACME under the table: accounts, orders by status, challenges, certificates."""
    orders = ", ".join(f"{n} {s}" for s, n in sorted(acme["orders"].items()) if n)
    challenges = acme["challenges"]
    line = (f"acme: {acme['accounts']} accounts; orders: {orders or 'none'}; challenges: "
            f"{challenges.get('validated', 0)} validated, {challenges.get('failed', 0)} failed; "
            f"certificates: {acme['certificates']}")  # fmt: skip
    if acme.get("store_fault"):
        line += f"; store: {acme['store_fault']}"
    return line


def finals_line(obj: Context) -> str | None:
    """Final certificates the issuer still owes the log (they follow the answers; a log
    that refuses appends holds them back), or None when it owes none or cannot say (its
    store's fault shows in the table)."""
    try:
        with obj.client() as client:
            finals = client.call("issuer", "get_issuance_status")
    except TrustChainError:
        return None
    if not finals["finals_owed"]:
        return None
    return (f"ct: {finals['finals_owed']} final certificates owed to the log "
            f"({finals['finals_sending']} on their way)")  # fmt: skip


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@click.option(
    "--watch",
    type=float,
    default=None,
    is_flag=False,
    flag_value=1.0,
    help="Refresh every N seconds (default 1) until Ctrl-C.",
)
@click.pass_obj
def status(obj: Context, as_json: bool, watch: float | None) -> None:
    """Show every actor under its supervisor: state, counters, faults, last failure."""
    if as_json:
        click.echo(json.dumps(obj.call("runtime", "status"), indent=2))
        return
    console = Console()
    if watch is None:
        status_now = obj.call("runtime", "status")
        console.print(status_table(status_now, console.width))
        names = {actor["name"] for actor in status_now["actors"]}
        if "detector" in names:
            console.print(trust_line(obj.call("detector", "get_trust_status")), highlight=False)
        if "acme" in names:
            console.print(acme_line(obj.call("acme", "get_acme_status")), highlight=False)
        if "issuer" in names and "ctlog" in names:
            owed = finals_line(obj)
            if owed:
                console.print(owed, highlight=False)
        return
    try:
        with obj.client() as client, Live(console=console, auto_refresh=False) as live:
            while True:
                status_now = client.call("runtime", "status")
                live.update(status_table(status_now, console.width), refresh=True)
                time.sleep(watch)
    except KeyboardInterrupt:
        pass
    except TrustChainError as exc:
        fail(f"{exc.message} [{exc.code}]")


@main.command()
@click.argument("actor")
@click.argument("type")
@click.option("--args", "args_json", default="{}", help="Arguments as a JSON object.")
@click.pass_obj
def send(obj: Context, actor: str, type: str, args_json: str) -> None:
    """Send one message to an actor and print its reply as JSON."""
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON: {exc}", 2)
    if not isinstance(args, dict):
        fail("--args must be a JSON object", 2)
    click.echo(json.dumps(obj.call(actor, type, args), indent=2))


@main.command()
@click.pass_obj
def stop(obj: Context) -> None:
    """Ask the running TrustChain to drain and stop."""
    obj.call("runtime", "stop")
    click.echo("TrustChain is stopping")


@main.command()
@click.argument("name")
@click.pass_obj
def restart(obj: Context, name: str) -> None:
    """Restart one actor through its supervisor."""
    result = obj.call("runtime", "restart", {"name": name})
    click.echo(f"{name}: {result['state']} (restarts {result['restarts']})")


@main.group()
def hsm() -> None:
    """The HSM: set up a local SoftHSM token, list keys."""


@hsm.command("init")
@click.pass_obj
def hsm_init(obj: Context) -> None:
    """Create the SoftHSM token, config and PIN files under var/ if missing.

    It holds the token directory's lock while it looks and creates; if a
    running TrustChain holds it, the token is left alone (exit 0, so `make run`
    goes on to say which TrustChain is running).
    """
    from trustchain.actors.hsm.softhsm import prepare_softhsm_token
    from trustchain.actors.locks import StoreLocked, softhsm_token_locked

    config = obj.config().hsm
    if not config.softhsm2_conf:
        fail("hsm.softhsm2_conf is empty: this config uses a real HSM, provisioned by its vendor")
    conf = Path(config.softhsm2_conf)
    try:
        with softhsm_token_locked(conf):
            created = prepare_softhsm_token(conf, config.token_label, config.pin_file)
    except StoreLocked as exc:
        click.echo(
            f"SoftHSM token {config.token_label!r} left as it is: {exc.store.path} is in use "
            f"by a running TrustChain (pid {exc.pid if exc.pid is not None else 'unknown'})"
        )
        return
    except TrustChainError as exc:
        fail(exc.message)
    word = "created" if created else "already exists"
    click.echo(f"SoftHSM token {config.token_label!r} {word} ({config.softhsm2_conf})")


@hsm.command("keys")
@click.pass_obj
def hsm_keys(obj: Context) -> None:
    """List the keys in the token (labels, types; never private values)."""
    table = Table()
    for column in ("label", "key type", "extractable", "sensitive"):
        table.add_column(column)
    for key in obj.call("hsm", "list_keys"):
        table.add_row(key["label"], key["key_type"], str(key["extractable"]), str(key["sensitive"]))
    Console().print(table)


for command in (issue, revoke, crl, ca, ct, trust, stake, dig, dns_group):
    main.add_command(command)

if __name__ == "__main__":
    main()
