"""DNS host-name syntax for certificate names (no policy here, just syntax).

Rules, and where they come from:

* RFC 1034 §3.5 / RFC 1123 §2.1 "preferred name syntax", as RFC 5280 §4.2.1.6
  requires for dNSName: labels of letters, digits and hyphens (LDH), 1-63
  octets, not starting or ending with a hyphen; at most 253 octets in all
  (255 on the wire, minus the length octets and root).
* Names are compared and issued lower-case (DNS is case-insensitive,
  RFC 4343); one trailing dot (an absolute name) is dropped, since a dNSName
  never carries it.
* Internationalised names only as A-labels (RFC 5890 §2.3.2.1), checked with
  the ``idna`` package (IDNA2008: RFC 5891 §5.4 label validation against the
  RFC 5892 code point tables, CONTEXTJ/CONTEXTO rules, RFC 5893 bidi): a label
  with hyphens in positions 3-4 must be "xn--", decode to a valid U-label, and
  encode back to exactly the same A-label. So "xn--zz-zzzzz" (U+2A1C U+298C,
  DISALLOWED) is refused though its Punycode round-trips.
* U-labels (non-ASCII) are refused, not converted: a SAN dNSName is an
  IA5String holding A-labels (RFC 5280 §4.2.1.6, §7.2), and silently issuing
  for another spelling than the one asked for is not what a CA does. The error
  gives the A-label form (IDNA2008 with the UTS #46 mapping) to ask for instead.
* A wildcard is "*" as the whole left-most label (RFC 6125 §6.4.3, CA/B BRs
  §3.2.2.6); "w*" or "*" elsewhere is invalid.
* The right-most label is not all digits, so a dotted-quad is never a dNSName.

Zone containment (RFC 5280 §4.2.1.10 semantics): ``name == zone`` or the name
ends with "." + zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import idna

from .errors import InvalidName

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
WILDCARD_LABEL = "*"

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def _invalid(name: str, why: str, **details: str) -> InvalidName:
    return InvalidName(
        "dns_syntax",
        f"{name!r} is not a valid DNS name: {why}; use letters, digits and hyphens, "
        "IDNA A-labels (xn--) for other scripts, 1-63 characters a label",
        name=name,
        **details,
    )


def _check_a_label(name: str, label: str) -> None:
    if not label.startswith("xn--"):
        raise _invalid(name, f"label {label!r} has '--' in positions 3-4 (reserved)")
    try:
        u_label = idna.ulabel(label)
        again = idna.alabel(u_label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        why = f"label {label!r} is not a valid IDNA2008 A-label ({exc})"
        raise _invalid(name, why, label=label) from None
    if again != label:
        why = f"label {label!r} is not a canonical A-label (that is {again!r})"
        raise _invalid(name, why, label=label)


def _a_label_form(name: str) -> str:
    """The IDNA2008 A-label form of a name written with U-labels, as a hint."""
    star, rest = ("*.", name[2:]) if name.startswith("*.") else ("", name)
    try:
        return f"; ask for {star + idna.encode(rest, uts46=True).decode('ascii')!r}"
    except (idna.IDNAError, UnicodeError):
        return ""


def normalize_dns_name(name: object) -> str:
    """The name lower-cased, without a trailing dot; ``InvalidName`` if bad syntax.

    A left-most "*" label is accepted here; whether wildcards are allowed is
    policy, not syntax.
    """
    if not isinstance(name, str):
        raise _invalid(repr(name), "not a string")
    if not name.isascii():
        raise _invalid(
            name, f"non-ASCII characters: a certificate names IDNs by A-labels{_a_label_form(name)}"
        )
    text = name.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise _invalid(name, "empty")
    if len(text) > MAX_NAME_LENGTH:
        raise _invalid(name, f"longer than {MAX_NAME_LENGTH} characters")
    labels = text.split(".")
    for index, label in enumerate(labels):
        if not label:
            raise _invalid(name, "empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise _invalid(name, f"label longer than {MAX_LABEL_LENGTH} characters")
        if label == WILDCARD_LABEL and index == 0 and len(labels) > 1:
            continue
        if not _LDH_LABEL.fullmatch(label):
            raise _invalid(name, f"label {label!r} is not letters, digits and inner hyphens")
        if label[2:4] == "--":
            _check_a_label(name, label)
    if labels[-1].isdigit():
        raise _invalid(name, "the last label is all digits")
    return text


def is_wildcard(name: str) -> bool:
    return name.startswith(WILDCARD_LABEL + ".")


def in_zone(name: str, zone: str) -> bool:
    """True if the normalised ``name`` is ``zone`` or under it."""
    return name == zone or name.endswith("." + zone)


def zone_of(name: str, zones: Iterable[str]) -> str | None:
    """The first zone that contains ``name``, or None."""
    return next((zone for zone in zones if in_zone(name, zone)), None)
