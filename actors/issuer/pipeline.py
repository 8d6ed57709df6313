"""The issuance pipeline: CSRs in, certificates out, keys only in the HSM.

Issuance is a pipeline of steps on the issuer's thread, none of which waits:

1. policy: parse the CSR, check proof of possession, key, names, validity
   (``actors.ca.policy``); with a detector (``trust.enabled``), the four-proof
   consensus decides next: ``Decide`` to the detector, whose approval (2f+1 signed
   votes) is kept with the issuance record; no approval, no certificate; an ACME
   order's request (``acme_account``) needs instead the account's domain control of
   every name, corroborated by 2f+1 validators (``ConfirmDomainControl``), whose
   votes are kept with the record the same way; an order of a consensus profile
   (``acme.consensus_profiles``) carries proofs too and needs both, in that order;
   (``actors.ca.policy``); a refusal is a typed error and nothing is written;
2. build the precertificate's TBS (CT poison) under the current intermediate
   and queue it for signing; the queue goes to the HSMActor as one
   ``sign_batch`` whenever the mailbox runs dry (or the batch is full), so under
   load many requests share one HSM round trip while the issuer goes on
   parsing the next CSRs;
3. add-pre-chain the precertificate to the CT log and take its SCT (durable in
   the log before the SCT comes back): the certificate is logged before anyone
   has it, as RFC 6962 has CAs do;
4. build the final certificate with the SCT list embedded, sign it the same way;
5. record the finished certificates in SQLite in one transaction (group
   commit), and only then answer each caller (certificate, chain, SCT, index);
6. the final certificate goes to the log too, after the answer (as Boulder
   submits final certificates): the same transaction recorded it as owed to the
   log (``final_log``), so a log that refuses it now, or a crash, delays it and
   loses nothing: ``_LogFinals`` re-sends what is owed at start-up and after a
   failure (with backoff); the log answers a repeat with the entry it has. Its
   index shows in ``get_certificate`` (``final_leaf_index``) once logged.

A request may carry the caller's id for it (``request_id``: an ACME order's): recorded
with the certificate, in the same transaction; the same id asked again (a retry after a
crash that lost the answer) gets that certificate (``replayed``) and nothing is issued;
the same id with another key is ``request_id_reused``.

Every signature is checked against the intermediate's key before it is used: the
HSM does it (``SignBatch.verify_with``), in the token's own process.
Each step continues in a callback on this thread (``request``), so the
issuer never waits; ``_Job`` carries a request's state between steps. The
consensus vote will slot in as a step between 1 and 2. Time is ``self.clock``'s.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import outcome
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import (
    ApprovedRequest,
    CACertificateRecord,
    Hierarchy,
    LeafProfile,
    MalformedCSR,
    ToBeSigned,
    assemble,
    ca_public_key,
    check_request,
    new_serial,
    parse_csr,
    pem,
    serial_hex,
    with_poison,
    with_sct_list,
)
from trustchain.actors.ca.errors import RequestIdReused
from trustchain.actors.ca.policy import check_validity_seconds
from trustchain.actors.ct import (
    LogEntryInput,
    SignedCertificateTimestamp,
    issuer_key_hash,
    sct_list_extension_value,
)
from trustchain.actors.ctlog.messages import LogIssued
from trustchain.actors.detector.messages import ConfirmDomainControl, Decide
from trustchain.actors.hsm.messages import SignBatch
from trustchain.actors.issuer.base import STORE_FAULTS
from trustchain.actors.issuer.faults import StoreFaults
from trustchain.actors.issuer.messages import GetIssuanceStatus, IssueCertificate
from trustchain.actors.trust.errors import ProofsRequired
from trustchain.actors.trust.requests import RequestProofs
from trustchain.supervisors import Message, TrustChainError, handles
from trustchain.supervisors.registry import Reply

# Most TBSs per HSM request (and entries per log request): a larger batch made the
# requests behind it wait (p99 at 500/s offered ~70 ms at 16, 100-150 ms at 64, for the
# same throughput flat out). Read from this module at each flush, so
# bench/issuance.py --sign-batch can set it here.
MAX_SIGN_BATCH = 16
# Most records per SQLite commit: flat out, each commit's fsync held the issuer's thread
# (27 % of its samples at 16); 64 made flat out 2-10 % faster in three pairs of runs in
# turn, and at 500/s batches are smaller anyway (a commit whenever the mailbox is empty).
MAX_RECORD_BATCH = 64
FINALS_PAGE = 1024  # final certificates owed to the log, re-sent per _LogFinals
# Final certificates go to the log in batches of this many, or this long after the
# first is queued: out of the precertificates' way (every log batch is a durable commit)
FINALS_BATCH, FINALS_DELAY_S = 256, 0.1


@dataclass(frozen=True)
class _LogFinals(Message):
    """Time to send the log the final certificates it is owed (start-up, a failure)."""


@dataclass(frozen=True)
class _FlushFinals(Message):
    """Time to send the queued final certificates (``FINALS_DELAY_S`` after the first)."""


@dataclass(frozen=True)
class _IssuingCA:
    """What every certificate under one CA needs from it, worked out once."""

    record: CACertificateRecord
    leaves: LeafProfile
    spki: bytes  # every signature the HSM returns is checked with it (SignBatch.verify_with)
    der: bytes  # the chain the log is given
    key_hash: bytes  # RFC 6962 PreCert.issuer_key_hash

    @classmethod
    def of(cls, record: CACertificateRecord, hierarchy: Hierarchy) -> _IssuingCA:
        label = record.key_label
        crl_url, ca_issuers_url = hierarchy.crl_url(label), hierarchy.ca_issuers_url(label)
        leaves = LeafProfile.of(record.certificate, crl_url, ca_issuers_url)
        spki = ca_public_key(record.certificate).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = record.certificate.public_bytes(serialization.Encoding.DER)
        return cls(record, leaves, spki, der, issuer_key_hash(spki))


@dataclass
class _Job:
    """One issuance on its way through the pipeline."""

    reply: Reply
    approved: ApprovedRequest
    issuer: _IssuingCA
    serial: int
    now: datetime
    request_id: str | None = None  # the caller's name for it (IssueCertificate.request_id)
    tbs: ToBeSigned | None = None  # neither poison nor SCTs: both are added to it
    decision: dict[str, Any] | None = None  # the validators' approval (with a detector)
    certificate: x509.Certificate | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ca_label(self) -> str:
        """The issuing CA's key label."""
        return self.issuer.record.key_label


_Signing = tuple[ToBeSigned, _Job, Any]  # what to sign, for whom, and what comes next
_Logged = Callable[[_Job, dict[str, Any]], None]  # what comes after an entry is logged


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _csr_bytes(text: str) -> bytes:
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode("ascii", "replace")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCSR("pkcs10", "the CSR is neither PEM nor base64 DER") from None


class IssuancePipeline(StoreFaults):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # IssuerBase's arguments
        super().__init__(*args, **kwargs)
        self._to_sign: list[tuple[str, ToBeSigned, _Job, Any]] = []
        self._to_record: list[_Job] = []
        self._to_log: list[tuple[LogEntryInput, _Job, _Logged]] = []  # precertificates
        self._issuing: dict[str, _IssuingCA] = {}  # by CA fingerprint
        self._finals: list[tuple[int, LogEntryInput]] = []  # (serial, entry) for the log
        self._finals_out: set[int] = set()  # serials queued or at the log
        self._finals_failures = 0  # failed sends in a row (the retry's backoff)
        self._finals_retry_pending = False

    def on_receive(self, envelope: Any) -> Any:
        result = super().on_receive(envelope)
        idle = self.actor_inbox.empty()
        if self._to_sign and (idle or len(self._to_sign) >= MAX_SIGN_BATCH):
            self._flush_signatures()
        if self._to_log and (idle or len(self._to_log) >= MAX_SIGN_BATCH):
            self._flush_log()
        if self._to_record and (idle or len(self._to_record) >= MAX_RECORD_BATCH):
            self._record_and_answer()
        if len(self._finals) >= FINALS_BATCH:
            self._flush_finals()
        return result

    def ready(self) -> None:
        super().ready()
        if self.ctlog is not None:
            self._log_finals_owed()  # what a crash kept from the log

    @handles(IssueCertificate)
    def issue_certificate(self, msg: IssueCertificate) -> dict[str, Any] | None:
        csr = parse_csr(_csr_bytes(msg.csr), self.policy.max_csr_bytes)
        if msg.request_id is not None:
            recorded = self._issued_for(msg.request_id, csr)
            if recorded is not None:
                return recorded  # issued before for this request: that certificate again
        validity = check_validity_seconds(msg.validity_s, self.policy)  # no timedelta overflow
        approved = check_request(csr, self.policy, validity, client_auth=msg.client_auth)
        now = self.clock.now()
        issuer = self._issuing_ca(self.hierarchy.issuer_for(now, approved.validity))
        if self.detector is None:
            self._build(_Job(self.defer(), approved, issuer, new_serial(), now, msg.request_id))
            return None
        if msg.acme_account is None and msg.proofs is None:
            raise ProofsRequired(
                "this CA issues only with the four-proof consensus's approval: send the "
                "request's proofs (`trustchain issue` computes them), or order it over ACME"
            )
        decide = None
        if msg.proofs is not None:  # parsed before anything is asked (a malformed one: nothing)
            csr_der = csr.public_bytes(serialization.Encoding.DER)
            decide = Decide(csr_der, RequestProofs.from_json(msg.proofs, self.vdf_modulus))
        job = _Job(self.defer(), approved, issuer, new_serial(), now, msg.request_id)
        if msg.acme_account is not None:
            # An ACME order's gate: the account's control of every name, corroborated by
            # 2f+1 validators (the detector keeps their votes), before anything is built;
            # a consensus profile's order (with proofs) then goes to the consensus too.
            confirm = ConfirmDomainControl(msg.acme_account, list(approved.san_names))
            then = functools.partial(self._confirmed, job, decide)
            self.request(self.detector, confirm, then)
            return None
        # The four-proof consensus's gate: a quorum of validators approves the request
        # (its proofs bound to this CSR) before anything is built or signed.
        assert decide is not None
        self.request(self.detector, decide, functools.partial(self._decided, job))
        return None

    def _issued_for(self, request_id: str, csr: x509.CertificateSigningRequest) -> Any:
        """The answer already given for ``request_id`` (``replayed``), or None; a request id
        reused for another key is refused."""
        assert self.store is not None
        try:
            record = self.store.issued_for(request_id)
        except STORE_FAULTS as exc:
            raise self._store_failed(exc, "nothing was issued") from exc
        if record is None:
            return None
        cert = record.certificate
        if _spki(cert.public_key()) != _spki(csr.public_key()):
            raise RequestIdReused(
                f"request {request_id!r} was issued for another key (serial "
                f"{serial_hex(record.serial)}); a new request needs a new id",
                serial=serial_hex(record.serial),
            )
        return {
            "serial": serial_hex(record.serial),
            "certificate": pem(cert),
            "chain": self.hierarchy.chain_pem[record.ca_label],
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "ca": record.ca_label,
            "names": list(record.names),
            "replayed": True,
        }

    def _decided(self, job: _Job, result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):
            job.reply(result)  # not_approved, quorum_not_reached: nothing was issued
            return
        # the consensus's decision, beside the domain control confirmed before, if any
        job.decision = {**result.unwrap().to_json(), **(job.decision or {})}
        self._build(job)

    def _confirmed(self, job: _Job, decide: Decide | None, result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):
            job.reply(result)  # not_approved: a name without corroborated control
            return
        job.decision = {"domain_control": result.unwrap()}
        if decide is None:
            self._build(job)
        else:  # a consensus profile's order: the consensus's approval as well
            assert self.detector is not None  # (asked for the confirmation)
            self.request(self.detector, decide, functools.partial(self._decided, job))

    def _build(self, job: _Job) -> None:
        # One TBS per certificate: the precertificate adds the poison to it, the final
        # certificate the SCT list, so the two are equal but for those (RFC 6962 §3.2).
        job.tbs = job.issuer.leaves.tbs(job.approved, job.serial, job.now)
        if self.ctlog is None:
            self._sign(job, job.tbs, self._final_signed)
        else:
            self._sign(job, with_poison(job.tbs), self._precert_signed)

    def _issuing_ca(self, record: CACertificateRecord) -> _IssuingCA:
        issuing = self._issuing.get(record.fingerprint)
        if issuing is None:
            issuing = self._issuing[record.fingerprint] = _IssuingCA.of(record, self.hierarchy)
        return issuing

    def _precert_signed(self, job: _Job, precert: x509.Certificate) -> None:
        assert self.ctlog is not None and job.tbs is not None
        # LogIssued: this chain was built and signed here, the log need not check it
        # again; the entry's TBS is the one the poison was added to
        entry = LogEntryInput.precert(
            precert.public_bytes(serialization.Encoding.DER), job.issuer.key_hash,
            (job.issuer.der,), tbs_certificate=job.tbs.der,
        )  # fmt: skip
        self._to_log.append((entry, job, self._precert_logged))

    def _precert_logged(self, job: _Job, logged: dict[str, Any]) -> None:
        sct = SignedCertificateTimestamp.decode(logged["sct"])
        job.extra.update(sct=logged["sct"], leaf_index=logged["leaf_index"])
        assert job.tbs is not None
        final = with_sct_list(job.tbs, sct_list_extension_value([sct]))
        self._sign(job, final, self._final_signed)

    def _flush_log(self) -> None:
        """Send the queued precertificates to the log in one ``LogIssued``."""
        assert self.ctlog is not None
        queued, self._to_log = self._to_log, []
        items = [(job, then) for _, job, then in queued]
        entries = tuple(entry for entry, _, _ in queued)
        self.request(self.ctlog, LogIssued(entries, True), functools.partial(self._logged, items))

    def _logged(self, items: list[tuple[_Job, _Logged]], result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):
            for job, _ in items:  # an Outcome unwraps once: each caller gets its own
                job.reply(outcome.Error(result.error))
            return
        for (job, then), each in zip(items, result.unwrap(), strict=True):
            if isinstance(each, outcome.Error):
                job.reply(each)
            else:
                then(job, each.unwrap())

    def _final_signed(self, job: _Job, cert: x509.Certificate) -> None:
        job.certificate = cert
        self._to_record.append(job)

    def _sign(
        self, job: _Job, tbs: ToBeSigned, then: Callable[[_Job, x509.Certificate], None]
    ) -> None:
        self._to_sign.append((job.ca_label, tbs, job, then))

    def _flush_signatures(self) -> None:
        """Send the queued TBSs to the HSM, one sign_batch per key and hash; the HSM
        checks each signature with the issuing CA's key before it answers."""
        queued, self._to_sign = self._to_sign, []
        groups: dict[tuple[str, str, bytes], list[_Signing]] = {}
        for label, tbs, job, then in queued:
            key = (label, tbs.hash_name, job.issuer.spki)
            groups.setdefault(key, []).append((tbs, job, then))
        for (label, hash_name, spki), items in groups.items():
            data = [tbs.der for tbs, _, _ in items]
            message = SignBatch(label, data, hash_name, verify_with=spki)
            self.request(self.hsm, message, functools.partial(self._signed, items))

    def _signed(self, items: list[_Signing], result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):
            for _, job, _ in items:  # an Outcome unwraps once: each caller gets its own
                job.reply(outcome.Error(result.error))
            return
        for (tbs, job, then), signature in zip(items, result.unwrap(), strict=True):
            try:
                cert = assemble(tbs.der, tbs.algorithm, signature)  # verified by the HSM
            except TrustChainError as exc:
                job.reply(outcome.Error(exc))
                continue
            then(job, cert)

    def _record_and_answer(self) -> None:
        """Record the finished certificates in one transaction, then hand them out."""
        assert self.store is not None
        jobs, self._to_record = self._to_record, []
        batch = [
            (job.certificate, job.ca_label, job.approved.san_names, job.decision)
            for job in jobs
            if job.certificate
        ]
        request_ids = [job.request_id for job in jobs if job.certificate]
        try:
            refusals = self.store.record_issued_batch(
                batch, request_ids, log_finals=self.ctlog is not None
            )
        except STORE_FAULTS as exc:
            unavailable = self._store_failed(exc, "nothing was recorded or handed out")
            for job in jobs:
                job.reply(outcome.Error(unavailable))
            return
        self._store_works()
        for job, refusal in zip(jobs, refusals, strict=True):
            if refusal is not None:
                job.reply(outcome.Error(refusal))
                continue
            cert = job.certificate
            assert cert is not None
            job.reply(outcome.Value({
                "serial": serial_hex(cert.serial_number),
                "certificate": pem(cert),
                "chain": self.hierarchy.chain_pem[job.ca_label],
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "ca": job.ca_label,
                "names": list(job.approved.names),
                **job.extra,
            }))  # fmt: skip
            if self.ctlog is not None:  # recorded as owed to the log: send it now
                self._owe_final(cert.serial_number, cert.public_bytes(serialization.Encoding.DER),
                                job.issuer.der)  # fmt: skip

    # The final certificates, logged after the answer -------------------------------

    @handles(GetIssuanceStatus)
    def get_issuance_status(self, msg: GetIssuanceStatus) -> dict[str, Any]:
        assert self.store is not None
        try:
            owed = self.store.count_finals_to_log()
        except STORE_FAULTS as exc:
            raise self._store_failed(exc, "nothing was read") from exc
        return {"finals_owed": owed, "finals_sending": len(self._finals_out)}

    def _owe_final(self, serial: int, der: bytes, issuer_der: bytes) -> None:
        if serial not in self._finals_out:
            if not self._finals:
                self.after(FINALS_DELAY_S, _FlushFinals())
            self._finals_out.add(serial)
            self._finals.append((serial, LogEntryInput.x509(der, (issuer_der,))))

    @handles(_FlushFinals)
    def flush_finals(self, msg: _FlushFinals) -> None:
        if self._finals:
            self._flush_finals()

    def _flush_finals(self) -> None:
        """Send the queued final certificates to the log in one ``LogIssued`` (no SCTs:
        nobody would use them; the tree head covers the entries)."""
        assert self.ctlog is not None
        queued, self._finals = self._finals, []
        message = LogIssued(tuple(entry for _, entry in queued), False)
        serials = [serial for serial, _ in queued]
        self.request(self.ctlog, message, functools.partial(self._finals_sent, serials))

    def _finals_sent(self, serials: list[int], result: outcome.Outcome) -> None:
        self._finals_out.difference_update(serials)
        each = result.unwrap() if isinstance(result, outcome.Value) else [result] * len(serials)
        logged = [(serial, one.unwrap()["leaf_index"])
                  for serial, one in zip(serials, each, strict=True)
                  if isinstance(one, outcome.Value)]  # fmt: skip
        failed = len(serials) - len(logged)
        if logged:
            assert self.store is not None
            try:
                self.store.finals_logged(logged)
            except STORE_FAULTS as exc:  # the log has them; the next send is a repeat
                self._store_failed(exc, "where the log put final certificates is not noted yet")
                failed += len(logged)
        if failed:
            self._finals_failures += 1
            self._retry_finals()
        else:
            self._finals_failures = 0

    def _retry_finals(self) -> None:
        if not self._finals_retry_pending:
            self._finals_retry_pending = True
            self.after(max(0.01, self.context.backoff.delay(self._finals_failures)), _LogFinals())

    @handles(_LogFinals)
    def log_finals(self, msg: _LogFinals) -> None:
        self._finals_retry_pending = False
        self._log_finals_owed()

    def _log_finals_owed(self) -> None:
        """Queue what the store says the log is owed (and not on its way already)."""
        assert self.store is not None
        try:
            owed = self.store.finals_to_log(FINALS_PAGE)
        except STORE_FAULTS as exc:
            self._store_failed(exc, "final certificates owed to the log wait")
            self._finals_failures += 1
            self._retry_finals()
            return
        for serial, der, ca_label in owed:
            issuer = self.hierarchy.by_label[ca_label].certificate
            self._owe_final(serial, der, issuer.public_bytes(serialization.Encoding.DER))
        if len(owed) == FINALS_PAGE:
            self._retry_finals()  # more after these
