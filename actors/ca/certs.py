"""X.509 certificates for the CA hierarchy, built to be signed elsewhere.

RFC 5280 §4.1 profile, shaped by the CA/B Forum TLS BRs §7.1.2 (what pkilint
checks):

* root (§7.1.2.1): self-signed, CA:TRUE pathLen 1 (pkilint: a WARNING, kept
  on purpose), keyCertSign + cRLSign, SKI, AKI.
* intermediate (§7.1.2.6): CA:TRUE pathLen 0, EKU serverAuth (+clientAuth),
  DV policy, AKI + SKI, CRL DP (pkilint: an ERROR without), caIssuers when
  given, and when zones are given, critical name constraints (§4.2.1.10):
  permitted dNSName zones, and either the permitted IPv6 networks or all IPs
  excluded; no directoryName (see ``_name_constraints``).
* leaf (§7.1.2.7): empty subject with a critical SAN (or a CN from the first
  name and a non-critical SAN), CA:FALSE, KeyUsage digitalSignature
  (+keyEncipherment for RSA keys), EKU serverAuth (+clientAuth), DV policy
  2.23.140.1.2.1, AKI, CRL DP, AIA caIssuers (pkilint: an ERROR without AIA),
  no SKI. A precertificate carries the critical CT poison (RFC 6962 §3.1); a
  final certificate may carry the SCT list (RFC 6962 §3.3), given as the
  extension value: the DER OCTET STRING around the TLS-encoded
  SignedCertificateTimestampList (what ``actors.ct.sct_list_extension_value``
  returns).

Signing is not done here. ``*_tbs`` return a ``ToBeSigned``: cryptography's
``create_unsigned()`` TBSCertificate with its id-alg-unsigned AlgorithmIdentifier
(1.3.6.1.5.5.7.6.36, draft-ietf-lamps-x509-alg-none) replaced by the issuer
key's real one. Whoever holds the key signs ``ToBeSigned.der`` with
``ToBeSigned.algorithm``; ``assemble`` wraps TBS, algorithm and signature.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from trustchain.actors import der

from .errors import IssuerNotValid, SignatureInvalid
from .keys import CAPublicKey, SignatureAlgorithm, signature_algorithm_for, verify_signature
from .names import is_wildcard, normalize_dns_name
from .policy import ApprovedRequest

ID_ALG_UNSIGNED = bytes.fromhex("300a06082b06010505070624")  # SEQUENCE { OID 1.3.6.1.5.5.7.6.36 }
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_POISON_OID_DER = bytes.fromhex("060a2b06010401d679020403")  # 1.3.6.1.4.1.11129.2.4.3
_SCT_LIST_OID_DER = bytes.fromhex("060a2b06010401d679020402")  # 1.3.6.1.4.1.11129.2.4.2
_ASN1_NULL = b"\x05\x00"  # the poison's extnValue (RFC 6962 §3.1)
DV_POLICY_OID = ObjectIdentifier("2.23.140.1.2.1")  # CA/B Forum domain-validated
BACKDATE = timedelta(seconds=60)  # tolerate relying parties' clock skew, at most a minute
DEFAULT_ROOT_VALIDITY = timedelta(days=3650)
DEFAULT_INTERMEDIATE_VALIDITY = timedelta(days=365)
_SERIAL_BITS = 128

CertifiablePublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class ToBeSigned:
    """DER TBSCertificate (or TBSCertList) and the algorithm it must be signed with."""

    der: bytes
    algorithm: SignatureAlgorithm

    @property
    def hash_name(self) -> str:
        return self.algorithm.hash_name


def new_serial() -> int:
    """A positive serial of 128 CSPRNG bits (BRs §7.1: >= 64; RFC 5280 §4.1.2.2: <= 20 octets).

    Drawn again in the 2^-64 case of a short value, so it always holds at least
    64 random bits and is never zero. DER may need a 17th (0x00) octet.
    """
    while True:
        serial = secrets.randbits(_SERIAL_BITS)
        if serial >= 1 << 64:
            return serial


def ca_name(common_name: str, organization: str, country: str | None = None) -> x509.Name:
    """A CA subject: C (optional, ISO 3166 alpha-2), O, CN, as BRs §7.1.4.4 lists."""
    attributes = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0)


def _window(
    now: datetime, validity: timedelta, issuer: x509.Certificate | None
) -> tuple[datetime, datetime]:
    start = _utc(now)
    not_before, not_after = start - BACKDATE, start + validity
    if issuer is not None:
        issuer_start, issuer_end = issuer.not_valid_before_utc, issuer.not_valid_after_utc
        if not issuer_start <= start <= issuer_end or not_after > issuer_end:
            raise IssuerNotValid(
                f"issuer {issuer.subject.rfc4514_string()} is valid {issuer_start} to "
                f"{issuer_end}, which does not cover {start} to {not_after}; roll it over",
            )
        not_before = max(not_before, issuer_start)
    return not_before, not_after


def _tbs(builder: x509.CertificateBuilder, signer_key: CAPublicKey) -> ToBeSigned:
    algorithm = signature_algorithm_for(signer_key)
    unsigned = builder.create_unsigned().tbs_certificate_bytes
    tbs = der.replace_signature_algorithm(unsigned, ID_ALG_UNSIGNED, algorithm.algorithm_identifier)
    return ToBeSigned(tbs, algorithm)


def ca_public_key(issuer: x509.Certificate) -> CAPublicKey:
    """The CA certificate's key; ValueError if it is not a CA key type."""
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError("the issuer's key is not a CA key type")
    return key


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key(issuer))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    return x509.CRLDistributionPoints([point])


def _ca_issuers(url: str) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url)
            )
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _dv_policy() -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(DV_POLICY_OID, None)])


def root_tbs(
    *,
    subject: x509.Name,
    public_key: CAPublicKey,
    serial: int,
    now: datetime,
    validity: timedelta = DEFAULT_ROOT_VALIDITY,
    path_length: int = 1,
) -> ToBeSigned:
    """A self-signed root (BRs §7.1.2.1), to be signed by the key of ``public_key``."""
    not_before, not_after = _window(now, validity, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), False)
    )
    return _tbs(builder, public_key)


def _name_constraints(
    zones: Sequence[str], networks: Sequence[ipaddress.IPv6Network]
) -> x509.NameConstraints:
    # Only dNSName and iPAddress subtrees, so that every verifier can process the
    # extension while it stays critical (RFC 5280 §4.2.1.10: MUST). Go's crypto/x509
    # processes only dNSName, iPAddress, rfc822Name and URI constraints and rejects a
    # chain whose CA holds a critical extension with any other type ("x509: unhandled
    # critical extension"): with a directoryName subtree every Go client (Caddy,
    # Traefik, cert-manager, Kubernetes, Vault) refused TrustChain's chains.
    # The price, on paper: BRs §7.1.2.5.2 wants a permitted directoryName in a
    # *Technically Constrained* TLS Subordinate CA, so this is a TLS Subordinate CA
    # (§7.1.2.6) that carries name constraints, which §7.1.2.10.8 allows. pkilint,
    # guessing the constrained profile from the extension, reports
    # cabf.serverauth.ca.incomplete_name_constraints unless given the type
    # (tests/ca/test_certs.py). Verifiers still hold leaves to the zones and networks;
    # subjects are no longer confined (see _check_directory_constraints).
    permitted: list[x509.GeneralName] = [x509.DNSName(zone) for zone in zones]
    permitted += [x509.IPAddress(net) for net in networks]
    excluded: list[x509.GeneralName] = [x509.IPAddress(ipaddress.IPv4Network("0.0.0.0/0"))]
    if not networks:
        excluded.append(x509.IPAddress(ipaddress.IPv6Network("::/0")))
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def intermediate_tbs(
    *,
    subject: x509.Name,
    public_key: CAPublicKey,
    issuer_cert: x509.Certificate,
    serial: int,
    now: datetime,
    validity: timedelta = DEFAULT_INTERMEDIATE_VALIDITY,
    permitted_zones: Sequence[str] | None = None,
    permitted_ipv6_networks: Sequence[ipaddress.IPv6Network] = (),
    crl_url: str,
    ca_issuers_url: str | None = None,
    client_auth: bool = True,
) -> ToBeSigned:
    """An issuing CA under ``issuer_cert`` (BRs §7.1.2.6), pathLen 0.

    ``crl_url`` is where the issuer's (root's) CRL is published.
    ``permitted_zones`` None means no name constraints; an empty list is refused
    (it would leave DNS names unconstrained while looking constrained).
    """
    not_before, not_after = _window(now, validity, issuer_cert)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_aki(issuer_cert), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_dv_policy(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_crl_dp(crl_url), critical=False)
    )
    if permitted_zones is not None:
        zones = [normalize_dns_name(zone) for zone in permitted_zones]
        if not zones or any(is_wildcard(zone) for zone in zones):
            raise ValueError("permitted_zones: give at least one zone, without wildcards")
        constraints = _name_constraints(zones, permitted_ipv6_networks)
        builder = builder.add_extension(constraints, critical=True)
    if ca_issuers_url is not None:
        builder = builder.add_extension(_ca_issuers(ca_issuers_url), critical=False)
    return _tbs(builder, ca_public_key(issuer_cert))


def _leaf_key_usage(public_key: CertifiablePublicKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _check_directory_constraints(issuer: x509.Certificate, subject: x509.Name) -> None:
    """A non-empty subject must sit under a permitted directoryName of the issuer, if any.

    Intermediates made here carry no directoryName subtree (``_name_constraints``), so
    under them a subject (the CN of ``cn_from_first_san``) is confined by nothing that
    verifiers check: OpenSSL holds a CN to the dNSName subtrees only when the SAN has no
    DNS name, Go ignores CNs. ``leaf_tbs`` therefore allows only a CN that is one of the
    certificate's SAN names (as the BRs require), which the constraints do cover. This
    check is kept for issuers that hold a directoryName (made by earlier versions, or
    given from outside): a CN subject outside it fails every verifier that enforces it.
    """
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    subtrees = [
        g.value for g in constraints.permitted_subtrees or () if isinstance(g, x509.DirectoryName)
    ]
    if subtrees and not any(subject.rdns[: len(t.rdns)] == t.rdns for t in subtrees):
        raise IssuerNotValid(
            f"the issuing CA's name constraints do not permit the subject "
            f"{subject.rfc4514_string()}; issue with subject_mode 'empty'"
        )


def _check_sct_extension_value(value: bytes) -> None:
    # RFC 6962 §3.3: extnValue is an OCTET STRING holding the TLS-encoded
    # SignedCertificateTimestampList, itself length-prefixed (2 octets)
    try:
        inner = der.read_single(value, der.OCTET_STRING)
    except der.DerError:
        inner = None
    sct_list = value[inner.value_start :] if inner else b""
    if len(sct_list) < 3 or int.from_bytes(sct_list[:2], "big") != len(sct_list) - 2:
        raise ValueError(
            "sct_list must be the extension value: a DER OCTET STRING around the TLS "
            "SignedCertificateTimestampList (actors.ct.sct_list_extension_value)"
        )


@dataclass(frozen=True)
class LeafProfile:
    """The subscriber certificates (BRs §7.1.2.7) one issuing CA makes.

    Everything but the subscriber's key, names, serial and validity is the same
    for every leaf under ``issuer``: those extensions are made once here, and
    ``tbs`` builds each leaf with them (a builder given all its extensions at once
    costs a third of one given them one by one).
    """

    issuer: x509.Certificate
    crl_url: str
    ca_issuers_url: str
    _signer: CAPublicKey
    _common: tuple[x509.Extension[x509.ExtensionType], ...]  # AKI, CRL DP, policy, AIA
    _eku: dict[bool, x509.Extension[x509.ExtensionType]]  # by client_auth

    @classmethod
    def of(cls, issuer: x509.Certificate, crl_url: str, ca_issuers_url: str) -> LeafProfile:
        common = [
            (_aki(issuer), False), (_crl_dp(crl_url), False), (_dv_policy(), False),
            (_ca_issuers(ca_issuers_url), False),
        ]  # fmt: skip
        server = [ExtendedKeyUsageOID.SERVER_AUTH]
        eku = {
            client_auth: _extension(x509.ExtendedKeyUsage(usages), critical=False)
            for client_auth, usages in (
                (False, server), (True, [*server, ExtendedKeyUsageOID.CLIENT_AUTH])
            )
        }  # fmt: skip
        return cls(
            issuer, crl_url, ca_issuers_url, ca_public_key(issuer),
            tuple(_extension(value, critical) for value, critical in common), eku,
        )  # fmt: skip

    def tbs(
        self,
        approved: ApprovedRequest,
        serial: int,
        now: datetime,
        *,
        precert: bool = False,
        sct_list: bytes | None = None,
    ) -> ToBeSigned:
        """The leaf for an approved request.

        Plain, it is the TBS a CT log signs for the precertificate (RFC 6962 §3.2);
        ``precert`` adds the poison, ``sct_list`` the SCT list, each as the last
        extension (``with_poison``, ``with_sct_list``). Build once and derive both,
        as the issuer does, or build each from the same ``approved``, ``serial`` and
        ``now``.
        """
        if precert and sct_list is not None:
            raise ValueError("a precertificate cannot carry SCTs")
        not_before, not_after = _window(now, approved.validity, self.issuer)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in approved.dns_names]
        names += [x509.IPAddress(ip) for ip in approved.ip_addresses]
        subject = x509.Name([])
        if (common_name := approved.subject_common_name) is not None:
            if common_name not in approved.san_names:
                raise ValueError("the subject CN must be one of the certificate's names")
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            _check_directory_constraints(self.issuer, subject)
        extensions = [
            _extension(x509.SubjectAlternativeName(names), critical=not subject),
            _extension(x509.BasicConstraints(ca=False, path_length=None), critical=True),
            _extension(_leaf_key_usage(approved.public_key), critical=True),
            self._eku[approved.client_auth],
            *self._common,
        ]
        builder = x509.CertificateBuilder(
            self.issuer.subject, subject, approved.public_key, serial, not_before, not_after,
            extensions,
        )  # fmt: skip
        tbs = _tbs(builder, self._signer)
        if precert:
            return with_poison(tbs)
        if sct_list is not None:
            return with_sct_list(tbs, sct_list)
        return tbs


def _extension(value: x509.ExtensionType, critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def leaf_tbs(
    approved: ApprovedRequest,
    issuer_cert: x509.Certificate,
    serial: int,
    now: datetime,
    crl_url: str,
    *,
    precert: bool = False,
    sct_list: bytes | None = None,
    ca_issuers_url: str,
) -> ToBeSigned:
    """One subscriber certificate (``LeafProfile.tbs``, for a single use)."""
    profile = LeafProfile.of(issuer_cert, crl_url, ca_issuers_url)
    return profile.tbs(approved, serial, now, precert=precert, sct_list=sct_list)


def with_poison(tbs: ToBeSigned) -> ToBeSigned:
    """The precertificate of a leaf TBS: the critical CT poison added (RFC 6962 §3.1)."""
    poison = der.extension(_POISON_OID_DER, _ASN1_NULL, critical=True)
    return ToBeSigned(der.append_extension(tbs.der, poison), tbs.algorithm)


def with_sct_list(tbs: ToBeSigned, sct_list: bytes) -> ToBeSigned:
    """The final certificate of a leaf TBS: the SCT list added (RFC 6962 §3.3).

    ``sct_list`` is the extension value: the DER OCTET STRING around the TLS
    SignedCertificateTimestampList (``actors.ct.sct_list_extension_value``).
    """
    _check_sct_extension_value(sct_list)
    extension = der.extension(_SCT_LIST_OID_DER, sct_list)
    return ToBeSigned(der.append_extension(tbs.der, extension), tbs.algorithm)


def precert_tbs_for_log(precert: x509.Certificate) -> bytes:
    """The TBSCertificate a CT log signs for this precertificate (RFC 6962 §3.2).

    That is the precertificate's TBS with the poison extension removed; it equals
    ``final.tbs_precertificate_bytes`` of the final certificate built from the same
    request, serial and ``now``. (cryptography's ``tbs_precertificate_bytes``
    strips the SCT list, so it only works on the final certificate.)
    """
    return der.strip_extension(precert.tbs_certificate_bytes, _POISON_OID_DER)


def assemble(
    tbs: bytes,
    sig_alg: SignatureAlgorithm,
    signature: bytes,
    *,
    issuer_public_key: CAPublicKey | None = None,
) -> x509.Certificate:
    """The signed certificate; with ``issuer_public_key``, checked before it is returned.

    Check it whenever the signature came from elsewhere: an HSM fault or the
    wrong key label must not produce a certificate (``SignatureInvalid``).
    A ``sig_alg`` other than the one inside ``tbs`` is a bug (``ValueError``).
    """
    algorithm = sig_alg.algorithm_identifier
    if der.signature_algorithm_of(tbs) != algorithm:
        raise ValueError(f"the tbs was built for another algorithm than {sig_alg.value}")
    if issuer_public_key is not None and not verify_signature(
        issuer_public_key, sig_alg, signature, tbs
    ):
        raise SignatureInvalid(
            "the signature over the certificate does not verify with the issuer's key"
        )
    # (der.signed would check the algorithm again)
    return x509.load_der_x509_certificate(der.sequence(tbs, algorithm, der.bit_string(signature)))
