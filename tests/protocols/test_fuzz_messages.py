"""No client input crashes an actor: every message of every actor, given extreme arguments,
through the real control socket of a running ``trustchain run``.

The property: every request gets exactly one reply, never ``internal_error``,
``actor_crashed``, ``actor_unavailable`` or ``timeout``, and no actor restarts (the
``runtime status`` restart counts stay as they were). Messages are enumerated from
the actor classes (``message_types()``), so a new message is fuzzed without asking.

Left out, each because its purpose is a change of state that would break the fixture:

* runtime ``stop``: stops the process under test;
* runtime ``restart`` and the root's ``restart_child`` (the same thing, addressed to the
  supervisor): they restart an actor on purpose, and restarts are what is watched;
* issuer ``rotate_intermediate``: each call makes a new intermediate key in the HSM and a
  new CA certificate (it takes no argument to fuzz anyway).

Some fuzzed messages do change state, harmlessly: ``generate_key`` may create keys with
odd labels in the suite's token, ``register`` may register certificates whose issuance
fails, ``issue`` with the valid CSR issues certificates.

How arguments are made: mostly one field gets an extreme value (of its own type, or of
any other: huge and negative ints, +-2^63, NaN and infinities, empty, huge, NUL and
lone-surrogate strings, bad base64, long and nested lists, objects) while the other
fields get plausible values, so that the extreme gets past the edge's checks into the
handler; sometimes every field is extreme, a field is missing or extra, or ``args`` is
not an object. A few messages per example go in flight together. Lines that are not
JSON the runtime reads (NaN, nesting past 32) are answered with id null.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.actors.acme.actor import AcmeActor
from trustchain.actors.ctlog import CTLogActor
from trustchain.actors.detector import ByzantineDetectorActor
from trustchain.actors.hsm import HSMActor
from trustchain.actors.issuer import IssuerActor
from trustchain.actors.monitor import CTMonitorActor
from trustchain.actors.renewal import RenewalActor
from trustchain.actors.resolver.actor import ResolverActor
from trustchain.actors.validator import ValidatorActor
from trustchain.protocols.control import MAX_LINE
from trustchain.supervisors import Message
from trustchain.supervisors.supervisor import Supervisor

from ..ca.conftest import dns_csr, make_key
from ..conftest import own_token
from .conftest import TRUSTCHAIN, free_port, free_udp_port, write_config

ZONE = "pki.example.com"  # write_config's permitted zone
VALIDATORS = 4
ACTORS = {"root": Supervisor, "hsm": HSMActor, "ctlog": CTLogActor, "issuer": IssuerActor,
          "monitor": CTMonitorActor, "renewal": RenewalActor, "trust": Supervisor,
          "detector": ByzantineDetectorActor, "resolver": ResolverActor, "acme": AcmeActor,
          **{f"validator-{i}": ValidatorActor for i in range(1, VALIDATORS + 1)}}  # fmt: skip
RUNTIME = ("status", "restart", "stop")  # the control socket's own target, "runtime"
EXCLUDED = {
    ("runtime", "stop"),
    ("runtime", "restart"),
    ("root", "restart_child"),
    ("issuer", "rotate_intermediate"),
}  # why each: the module docstring
NEVER = {"internal_error", "actor_crashed", "actor_unavailable", "timeout"}


# The running TrustChain and a plain blocking client ------------------------------------


@dataclass
class Runtime:
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    sock: socket.socket = field(init=False)
    buffer: bytes = b""
    next_id: int = 0
    replies: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    anonymous: list[dict[str, Any]] = field(default_factory=list)  # replies with id null

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(self.directory / "ctl.sock"))

    def send(self, to: str, kind: str, args: Any = None, *, omit_args: bool = False) -> int:
        """Send one request; its id, or 0 if the line is not one the server can read (NaN,
        nested deeper than 32, longer than MAX_LINE): then the reply comes with id null."""
        self.next_id += 1
        request: dict[str, Any] = {"id": self.next_id, "to": to, "type": kind}
        if not omit_args:
            request["args"] = args
        line = json.dumps(request).encode() + b"\n"  # NaN/Infinity go as such
        self.sock.sendall(line)
        return self.next_id if strict_json(request) and len(line) <= MAX_LINE else 0

    def wait(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Read until each of ``ids`` has a reply (id 0: one more reply with id null)."""
        anonymous = len(self.anonymous) + ids.count(0)
        ids = [i for i in ids if i]
        while any(i not in self.replies for i in ids) or len(self.anonymous) < anonymous:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(1 << 20)
                assert chunk, "TrustChain closed the control socket"
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\n")
            reply = json.loads(line)
            if reply.get("id") is None:
                self.anonymous.append(reply)
            else:
                self.replies.setdefault(reply["id"], []).append(reply)
        return {i: self.replies[i][0] for i in ids}

    def call(self, to: str, kind: str, args: Any = None) -> dict[str, Any]:
        request_id = self.send(to, kind, args)
        return self.wait([request_id])[request_id]

    def restarts(self) -> dict[str, tuple[int, str]]:
        status = self.call("runtime", "status")["result"]
        return {a["name"]: (a["restarts"], a["state"]) for a in status["actors"]}


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    directory = Path(tempfile.mkdtemp(prefix="tc-fz-"))  # short: a Unix socket path
    # A token of its own: the keys the fuzzing creates stay out of the suite's token, and
    # the key searches it makes do not grow with whatever other tests left there.
    # The four-proof consensus runs too (small proofs): its actors take JSON from anyone.
    trust = {"enabled": True, "validators": VALIDATORS, "work_bits": 4, "vdf_t": 256,
             "space_blocks": 16, "space_challenges": 2, "database": f"{directory}/trust.db",
             "key_dir": f"{directory}/validators"}  # fmt: skip
    # The HTTPS edge (so ACME runs) and the resolver, on ports of their own.
    http = {"port": free_port(), "plain_port": -1, "names": [f"ct.{ZONE}", "::1"]}
    resolver = {"port": free_udp_port(), "origin": ZONE, "names": [f"dns.{ZONE}", "::1"]}
    config = write_config(directory, own_token(directory / "hsm", "tc-fuzz"), trust=trust,
                          http=http, resolver=resolver, acme={})  # fmt: skip
    log = directory / "stderr.log"
    with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall the process
        process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"], stderr=stderr)
    rt = Runtime(directory, process, log)
    deadline = time.monotonic() + 60
    while not (directory / "ctl.sock").exists():
        assert process.poll() is None, f"trustchain run exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, "the control socket never appeared"
        time.sleep(0.05)
    rt.connect()
    yield rt
    rt.sock.close()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    shutil.rmtree(directory, ignore_errors=True)


def strict_json(value: Any) -> bool:
    """Is ``value`` JSON proper: no NaN or Infinity, nested at most 32 deep?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return False
        if isinstance(item, dict | list):
            if depth > 32:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


# What gets sent -----------------------------------------------------------------------

CSR = dns_csr(make_key("ec-p256"), f"fuzz.{ZONE}").decode()  # valid: gets past parsing
CSR_DER = x509.load_pem_x509_csr(CSR.encode()).public_bytes(serialization.Encoding.DER)


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each as likely as its weight says (``st.one_of`` flattens nested
    alternatives and weighs every leaf alike, so a wide ``ANYTHING`` would drown the rest)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


EXTREME_INTS = st.sampled_from([
    0, -1, 2**31, 2**53 + 1, 10**15, 2**62, 2**63 - 1, -(2**63),  # fit int64
    2**63, -(2**63) - 1, 2**64, 10**30, -(10**4200),  # do not
])  # fmt: skip
INTS = weighted((EXTREME_INTS, 2), (st.integers(-(2**70), 2**70), 1))
FLOATS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324, 0.5])
TEXTS = weighted((st.sampled_from([
    "", " ", "\x00", "\ud800", "\udfff x", "a" * 5_000, "é" * 70_000, "../../../etc/passwd",
    "tile/0/" + "x000/" * 300 + "000", "tile/data/x001/234.p/255", "tile/70/000",
    "xn--zz-zzzzz." + ZONE, "bücher." + ZONE, "*." + ZONE, f"fuzz.{ZONE}", "::1", "1.2.3.4",
    "registrations.json", "hsm", "0" * 64, "F" * 64, "ff" * 20, "0x" + "f" * 200, "-1",
    "key_compromise", "sha512", "rsa-1024", CSR, CSR[:100], CSR.replace("M", "N"),
]), 1), (st.text(max_size=30), 1))  # fmt: skip
BASE64 = weighted((st.sampled_from([
    "", "AA==", base64.b64encode(CSR_DER).decode(), base64.b64encode(b"\x30\x82\xff\xff").decode(),
    base64.b64encode(os.urandom(70_000)).decode(), "!!!", "====", "A",
]), 1), (st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()), 1))  # fmt: skip
JUNK = st.sampled_from([None, True, False, {}, {"a": {"b": {"c": 1}}}, {"": None}, [], [None],
                        [[[]]], deep(40), ["A" * 10] * 2_000, [0] * 5])  # fmt: skip
ANYTHING = weighted((INTS, 1), (FLOATS, 1), (TEXTS, 1), (BASE64, 1), (JUNK, 1))
# Values that pass the edge's checks, by field name (and type), so that the handlers behind it get
# their share of the other fields' extremes (an existing key, the valid CSR, a name in
# the zone, small tree sizes...).
PLAUSIBLE: dict[str, list[Any]] = {
    "csr": [CSR], "label": ["cli-test-key"], "key_type": ["ec-p256"], "hash": ["sha384"],
    "data": [base64.b64encode(b"to sign").decode()], "serial": ["1", "ff" * 20],
    "reason": ["key_compromise"], "names": [[f"fuzz.{ZONE}"], ["::1", f"b.{ZONE}"]],
    "name": ["fuzz", "hsm"], "path": ["tile/0/000", "tile/data/000.p/1"],
    "fingerprint": ["0" * 64], "chain": [[base64.b64encode(CSR_DER).decode()]],
    "first": [0, 1], "second": [1, 2], "start": [0], "end": [0, 2**63 - 1],
    "leaf_index": [0], "tree_size": [1], "hash:bytes": [base64.b64encode(bytes(32)).decode()],
    "validity_s": [3600, None], "client_auth": [False], "subscription": [1],
    "incarnation": [1], "failure": [None],
    "method": ["POST", "GET", "HEAD"], "content_type": ["application/jose+json"],
    "url": ["https://[::1]:8443/acme/new-order", "https://[::1]:8443/acme/directory"],
    "body": [base64.b64encode(b'{"protected": "e30", "payload": "", "signature": ""}').decode()],
    "rdtype": ["AAAA", "TXT"], "value": ["v" * 43],
}  # fmt: skip


def values_for(tp: Any, name: str = "") -> st.SearchStrategy[Any]:
    """Extreme values of the field's own type (and plausible ones), and of every other type."""
    origin = typing.get_origin(tp)
    plausible = PLAUSIBLE.get(f"{name}:{getattr(tp, '__name__', '')}", PLAUSIBLE.get(name))
    if origin in (typing.Union, types.UnionType):
        options = [values_for(t, name) for t in typing.get_args(tp) if t is not type(None)]
        return weighted(*[(option, 3) for option in options], (st.none(), 1))
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        own: st.SearchStrategy[Any] = st.lists(values_for(item), max_size=4)
    else:
        own = {int: INTS, float: FLOATS, str: TEXTS, bytes: BASE64, bool: st.booleans()}.get(
            tp, ANYTHING
        )
    if plausible:
        own = weighted((st.sampled_from(plausible), 1), (own, 2))
    return weighted((own, 3), (ANYTHING, 1))  # mostly the field's own type


@st.composite
def arguments(draw: st.DrawFn, message: type[Message]) -> tuple[Any, bool]:
    """(args, omit_args): one field fuzzed and the others plausible (so the extreme gets
    past the edge to the handler), or every field fuzzed; sometimes fields missing or
    extra, sometimes no object at all."""
    shapes = ["focus"] * 8 + ["fields"] * 3 + ["missing", "extra", "not_an_object", "absent"]
    shape = draw(st.sampled_from(shapes))
    if shape == "absent":
        return None, True
    if shape == "not_an_object":
        return draw(st.sampled_from([[], "args", 7, [1, 2], deep(50)])), False
    hints = typing.get_type_hints(message)
    names = [f.name for f in fields(message) if f.init]
    focus = draw(st.sampled_from(names)) if names and shape == "focus" else None
    args = {}
    for name in names:
        plausible = PLAUSIBLE.get(f"{name}:{getattr(hints[name], '__name__', '')}",
                                  PLAUSIBLE.get(name))  # fmt: skip
        if focus not in (None, name) and plausible:
            args[name] = draw(st.sampled_from(plausible))
        else:  # the focused field gets extremes only, never a plausible value
            args[name] = draw(values_for(hints[name], "" if name == focus else name))
    if shape == "missing" and args:
        args.pop(draw(st.sampled_from(sorted(args))))
    if shape == "extra":
        args[draw(st.sampled_from(["extra", "", "type", "args"]))] = draw(ANYTHING)
    return args, False


def targets() -> list[tuple[str, str, type[Message] | None]]:
    """Every (actor, message type, class) the control socket reaches, minus EXCLUDED."""
    found: list[tuple[str, str, type[Message] | None]] = [("runtime", k, None) for k in RUNTIME]
    for actor, cls in ACTORS.items():
        found += [(actor, kind, m) for kind, m in sorted(cls.message_types().items())]
    return [t for t in found if (t[0], t[1]) not in EXCLUDED]


TARGETS = targets()


def runtime_arguments() -> st.SearchStrategy[tuple[Any, bool]]:
    return st.tuples(st.one_of(JUNK, st.dictionaries(st.text(max_size=5), ANYTHING, max_size=3),
                               st.just({"name": "\ud800"})), st.booleans())  # fmt: skip


# The tests ----------------------------------------------------------------------------


def test_the_fuzzed_tree_is_the_running_tree_and_every_message_is_fuzzed(
    runtime: Runtime,
) -> None:
    assert set(runtime.restarts()) == set(ACTORS), "an actor was added: add it to ACTORS"
    handles = runtime.call("runtime", "no_such_message")["error"]["message"].split("handles: ")[1]
    assert set(handles.split(", ")) == set(RUNTIME)
    fuzzed = {(actor, kind) for actor, kind, _ in targets()}
    every = {(a, k) for a, c in ACTORS.items() for k in c.message_types()}
    assert every - fuzzed == {t for t in EXCLUDED if t[0] != "runtime"}
    assert ("root", "child_exited") in fuzzed  # in-process only: a fake exit restarted actors


FUZZED: set[tuple[str, str]] = set()  # what the property test below has sent, to check coverage


@settings(max_examples=1_500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_extreme_arguments_to_every_message_get_one_reply_and_restart_nothing(
    runtime: Runtime, data: st.DataObject
) -> None:
    # A few messages per example, in flight together: small examples keep every draw
    # varied (and a failure shrinks to the message that caused it).
    before = runtime.restarts()
    sent: dict[int, tuple[str, str]] = {}
    unreadable = 0
    for actor, kind, message in data.draw(st.lists(st.sampled_from(TARGETS), min_size=1,
                                                   max_size=4), label="messages"):  # fmt: skip
        strategy = runtime_arguments() if message is None else arguments(message)
        args, omit = data.draw(strategy, label=f"{actor}.{kind}")
        request_id = runtime.send(actor, kind, args, omit_args=omit)
        FUZZED.add((actor, kind))
        if request_id:
            sent[request_id] = (actor, kind)
        else:
            unreadable += 1
    first_anonymous = len(runtime.anonymous)
    replies = runtime.wait([*sent, *[0] * unreadable])
    for reply in runtime.anonymous[first_anonymous:]:
        assert reply["error"]["code"] in ("invalid_request", "line_too_long"), reply
    for request_id, reply in replies.items():
        what = sent[request_id]
        assert len(runtime.replies[request_id]) == 1, (what, runtime.replies[request_id])
        assert isinstance(reply["ok"], bool), (what, reply)
        if not reply["ok"]:
            assert reply["error"]["code"] not in NEVER, (what, reply["error"])
            assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    assert runtime.restarts() == before
    assert all(state == "running" for _, state in before.values()), before


def test_every_message_was_fuzzed(runtime: Runtime) -> None:
    assert {(actor, kind) for actor, kind, _ in TARGETS} - FUZZED == set()


def test_the_log_shows_no_crash_and_no_traceback(runtime: Runtime) -> None:
    runtime.call("runtime", "status")  # whatever came before has been logged by now
    text = runtime.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-5_000:]
    assert " ERROR " not in text, [line for line in text.splitlines() if " ERROR " in line][:5]
    stray = {i: r for i, r in runtime.replies.items() if len(r) != 1}
    assert not stray, stray  # no request answered twice


# Regressions: each crashed an actor before -------------------------------------------------


def _no_restart(runtime: Runtime, to: str, kind: str, args: Any) -> dict[str, Any]:
    before = runtime.restarts()
    reply = runtime.call(to, kind, args)
    assert runtime.restarts() == before, reply
    assert not reply["ok"], reply
    return dict(reply["error"])


def test_validity_s_past_int64_or_timedelta_is_refused_not_an_overflow(runtime: Runtime) -> None:
    # timedelta(seconds=2**63 - 1) raised OverflowError: six of these ended the process
    error = _no_restart(
        runtime, "issuer", "issue_certificate", {"csr": CSR, "validity_s": 2**63 - 1}
    )
    assert error["code"] == "validity_out_of_bounds", error
    assert "validity_s must be 300 to 86400 seconds" in error["message"]
    error = _no_restart(runtime, "issuer", "issue_certificate", {"csr": CSR, "validity_s": 2**63})
    assert error["code"] == "invalid_request", error
    assert "issue_certificate.validity_s must be an integer in" in error["message"]


def test_a_fake_child_exit_sent_to_a_supervisor_is_refused(runtime: Runtime) -> None:
    args = {"name": "hsm", "incarnation": 1, "failure": None}  # restarted the HSM actor
    error = _no_restart(runtime, "root", "child_exited", args)
    assert error["code"] == "invalid_request" and "in-process only" in error["message"]


def test_registering_a_u_label_is_refused_not_a_crash_loop(runtime: Runtime) -> None:
    # the CSR could not carry it: renewal crashed, and crashed again at every restart
    error = _no_restart(runtime, "renewal", "register_certificate",
                        {"name": "idn", "names": [f"bücher.{ZONE}"]})  # fmt: skip
    assert error["code"] == "invalid_name", error
    assert f"xn--bcher-kva.{ZONE}" in error["message"]


def test_two_callers_waiting_on_one_renewal_both_get_their_answer(runtime: Runtime) -> None:
    # both were handed one Outcome: the second unwrap raised AlreadyUsedError (internal_error)
    args = {"name": "twice", "names": [f"twice.{ZONE}"]}
    assert runtime.call("renewal", "register_certificate", args)["ok"]
    first, second = (runtime.send("renewal", "renew_now", {"name": "twice"}) for _ in range(2))
    replies = runtime.wait([first, second])
    assert [r["ok"] for r in replies.values()] == [True, True], replies


def test_an_empty_or_long_issuer_fingerprint_is_refused_not_a_crash(runtime: Runtime) -> None:
    # the log has issuers by now: the renewal tests above had certificates issued (proved
    # and approved by the validators, as TrustChain's own asset)
    assert runtime.call("ctlog", "get_sth")["result"]["tree_size"] > 0
    for fingerprint in ("", "ab" * 200):  # a directory; a file name too long (OSError)
        args = {"fingerprint": fingerprint}
        error = _no_restart(runtime, "ctlog", "get_issuer_certificate", args)
        assert error["code"] == "invalid_request" and "64 hex digits" in error["message"]


def test_a_tile_index_of_thousands_of_digits_is_refused_not_a_crash(runtime: Runtime) -> None:
    error = _no_restart(runtime, "ctlog", "get_tile", {"path": "tile/0/" + "x123/" * 1_500 + "456"})
    assert error["code"] == "invalid_request", error
