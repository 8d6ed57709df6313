"""RFC 9250's message rules as pure functions: no QUIC, no sockets."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import pytest

from trustchain.protocols.doq_framing import (
    PADDING_BLOCK,
    DoqProtocolError,
    QueryChecks,
    QueryStream,
    check_query,
    frame,
    servfail,
)


def wire(name: str = "hypermesh.trust.example.com.", **kwargs: object) -> bytes:
    q = dns.message.make_query(name, "AAAA", use_edns=0, **kwargs)  # type: ignore[arg-type]
    q.id = 0
    return q.to_wire()


def test_a_query_split_anywhere_is_whole_only_at_the_fin() -> None:
    framed = frame(wire())
    for cut in range(len(framed) + 1):
        stream = QueryStream()
        assert stream.feed(framed[:cut], False) is None
        assert stream.feed(framed[cut:], True) == wire()


@pytest.mark.parametrize("cut", [0, 1, 2, 13])
def test_a_fin_before_the_message_is_whole_is_a_protocol_error(cut: int) -> None:
    with pytest.raises(DoqProtocolError, match="stream finished after"):
        QueryStream().feed(frame(wire())[:cut], True)


def test_a_byte_past_the_message_is_a_second_query_even_before_the_fin() -> None:
    stream = QueryStream()
    with pytest.raises(DoqProtocolError, match="one query per stream"):
        stream.feed(frame(wire()) + b"\x00", False)


def test_message_rules_id_zero_header_and_no_keepalive() -> None:
    check_query(wire())
    q = dns.message.from_wire(wire())
    q.id = 1
    with pytest.raises(DoqProtocolError, match="ID 1, not 0"):
        check_query(q.to_wire())
    with pytest.raises(DoqProtocolError, match="no DNS header"):
        check_query(b"\x00" * 11)
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
    with pytest.raises(DoqProtocolError, match="keepalive"):
        check_query(wire(options=[keepalive]))
    check_query(b"\x00\x00" + b"\xff" * 30)  # not DNS: the resolver's FORMERR, not a DoQ error


def test_remembered_checks_refuse_what_check_query_refuses_and_stay_bounded() -> None:
    checks = QueryChecks(max_entries=3, max_octets=200)
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
    for _ in range(2):  # never remembered as passed: refused every time
        with pytest.raises(DoqProtocolError, match="keepalive"):
            checks.check(wire(options=[keepalive]))
        with pytest.raises(DoqProtocolError, match="ID 7, not 0"):
            checks.check(b"\x00\x07" + wire()[2:])
    assert len(checks) == 0
    names = [f"n{i}.trust.example.com." for i in range(5)]
    for name in names:
        checks.check(wire(name, pad=128))
    assert len(checks) == 3  # the oldest forgotten first
    checks.check(wire(pad=468))  # longer than max_octets: checked, not kept
    assert len(checks) == 3
    # a remembered query is not parsed again; one forgotten, or never seen, is
    parsed: list[bytes] = []
    real = dns.message.from_wire

    def counting(data: bytes, **kwargs: object) -> dns.message.Message:
        parsed.append(data)
        return real(data, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dns.message, "from_wire", counting)
        checks.check(wire(names[-1], pad=128))
        assert parsed == []
        checks.check(wire(names[0], pad=128))
        assert parsed == [wire(names[0], pad=128)]


def test_servfail_names_the_reason_and_is_padded() -> None:
    response = servfail(wire(pad=128), "resolver unavailable: timed out")
    assert response is not None and len(response) % PADDING_BLOCK == 0
    message = dns.message.from_wire(response)
    assert message.rcode() == dns.rcode.SERVFAIL and message.id == 0
    ede = [o for o in message.options if o.otype == dns.edns.OptionType.EDE]
    assert ede and "timed out" in ede[0].text  # type: ignore[attr-defined]
    assert servfail(b"\x00\x00\xff", "x") is None


def test_frame_refuses_what_two_octets_cannot_announce() -> None:
    assert frame(b"ab") == b"\x00\x02ab"
    with pytest.raises(ValueError, match="cannot be framed"):
        frame(b"\x00" * 65_536)
