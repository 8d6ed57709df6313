"""IssuerActor: CSRs in, certificates out, keys only in the HSM.

Issuance is a pipeline of steps on this actor's thread, none of which waits:

1. policy: parse the CSR, check proof of possession, key, names, validity
   (``actors.ca.policy``); a refusal is a typed error and nothing is written;
2. build the precertificate's TBS (CT poison) under the current intermediate
   and queue it for signing; the queue goes to the HSMActor as one
   ``sign_batch`` whenever the mailbox runs dry (or the batch is full), so under
   load many requests share one HSM round trip while the issuer goes on
   parsing the next CSRs;
3. add-pre-chain the precertificate to the CT log and take its SCT;
4. build the final certificate with the SCT list embedded, sign it the same
   way, and add-chain it to the log too: nothing leaves unlogged;
5. record the finished certificates in SQLite in one transaction (group
   commit), and only then answer each caller (certificate, chain, SCT, index).

Every signature is checked against the intermediate's key before it is used: the
HSM does it (``SignBatch.verify_with``), in the token's own process.
Each step continues in a callback on this thread (``request``), so the
issuer never waits; ``_Job`` carries a request's state between steps. The
consensus vote will slot in as a step between 1 and 2.

At first start the CA hierarchy is created inside the HSM: a root key and a
self-signed root, an intermediate key and certificate signed by the root, and
a first CRL; later starts reload it from the database (crash-only: a restart
and a cold boot take the same path). Start-up waits on nobody either: each key
(``EnsureKey``), signature (``SignData``) and finally ``AcceptRoots`` to the log
is a request, and the issuer is ready in the last continuation.
CRLs are regenerated on every revocation and every ``ca.crl_refresh_s``, and a
rotation makes a new intermediate, each in steps like issuance: ``Hierarchy``
returns the TBS, the HSM signs it (``request``), and the continuation records
it, writes the CRL files and answers the caller (``defer``). Time is
``self.clock``'s.

A database or CRL directory that cannot be written (a full disk, an I/O
error) is a fault of the environment: the requests that needed it get
``ca_store_unavailable`` (certificates logged but not recorded are not handed
out), the fault (``ca_store``) shows in status and ``/ready``, and a durable
probe write plus a CRL refresh is retried with backoff until it succeeds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import outcome
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustchain.actors.ca import (
    ApprovedRequest,
    CACertificateRecord,
    CAStore,
    CaStoreUnavailable,
    Hierarchy,
    IssuancePolicy,
    IssuerNotValid,
    LeafProfile,
    MalformedCSR,
    NewCACertificate,
    NewCRL,
    ToBeSigned,
    assemble,
    ca_public_key,
    check_request,
    new_serial,
    parse_csr,
    parse_serial,
    pem,
    serial_hex,
    with_poison,
    with_sct_list,
)
from trustchain.actors.ca.hierarchy import MAX_CREATION_STEPS
from trustchain.actors.ca.keys import CAPublicKey
from trustchain.actors.ca.policy import check_validity_seconds
from trustchain.actors.ct import (
    LogEntryInput,
    SignedCertificateTimestamp,
    issuer_key_hash,
    sct_list_extension_value,
)
from trustchain.actors.ctlog.messages import AcceptRoots, LogIssued
from trustchain.actors.durable import replace_file
from trustchain.actors.hsm.messages import EnsureKey, SignBatch, SignData
from trustchain.actors.issuer.messages import (
    GetCAStatus,
    GetCertificate,
    GetCRL,
    IssueCertificate,
    RefreshCRLs,
    RevokeCertificate,
    RotateIntermediate,
)
from trustchain.config import CaConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, TrustChainError, handles
from trustchain.supervisors.registry import Reply

# Most TBSs per HSM request (and entries per log request, records per commit): a larger
# batch made the requests behind it wait (p99 at 500/s offered ~70 ms at 16, 100-150 ms
# at 64, for the same throughput flat out).
MAX_SIGN_BATCH = 16
STORE = "ca_store"  # the resource name shown in status and /ready
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop
STORE_FAULTS = (OSError, sqlite3.OperationalError)  # disk full, I/O error, read-only


@dataclass(frozen=True)
class _RetryStore(Message):
    """Time to try opening the CA store again after a failure."""


@dataclass(frozen=True)
class _IssuingCA:
    """What every certificate under one CA needs from it, worked out once."""

    record: CACertificateRecord
    leaves: LeafProfile
    spki: bytes  # every signature the HSM returns is checked with it (SignBatch.verify_with)
    der: bytes  # the chain the log is given
    key_hash: bytes  # RFC 6962 PreCert.issuer_key_hash

    @classmethod
    def of(cls, record: CACertificateRecord, ca: Hierarchy) -> _IssuingCA:
        label = record.key_label
        leaves = LeafProfile.of(record.certificate, ca.crl_url(label), ca.ca_issuers_url(label))
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
    tbs: ToBeSigned | None = None  # neither poison nor SCTs: both are added to it
    certificate: x509.Certificate | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key_label(self) -> str:
        return self.issuer.record.key_label


_Signing = tuple[ToBeSigned, _Job, Any]  # what to sign, for whom, and what comes next
_Logged = Callable[[_Job, dict[str, Any]], None]  # what comes after an entry is logged


def policy_from_config(ca: CaConfig) -> IssuancePolicy:
    return IssuancePolicy(
        permitted_zones=tuple(ca.permitted_zones),
        allow_wildcards=ca.allow_wildcards,
        allow_ipv6_sans=ca.allow_ipv6_sans,
        allowed_key_types=frozenset(ca.allowed_key_types),
        min_validity=timedelta(seconds=ca.min_validity_s),
        max_validity=timedelta(seconds=ca.max_validity_s),
        default_validity=timedelta(seconds=ca.default_validity_s),
        max_csr_bytes=ca.max_csr_bytes,
        max_sans=ca.max_sans,
        subject_mode=ca.subject,
    )


def _csr_bytes(text: str) -> bytes:
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode("ascii", "replace")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCSR("pkcs10", "the CSR is neither PEM nor base64 DER") from None


class IssuerActor(SupervisedActor):
    def __init__(
        self,
        context: ActorContext,
        config: CaConfig,
        hsm: str = "hsm",
        ctlog: str | None = "ctlog",
    ) -> None:
        super().__init__(context)
        self.config = config
        self.hsm = hsm
        self.ctlog = ctlog
        self.policy = policy_from_config(config)
        self.store: CAStore | None = None
        self._to_sign: list[tuple[str, ToBeSigned, _Job, Any]] = []
        self._to_record: list[_Job] = []
        self._to_log: list[tuple[LogEntryInput, bool, _Job, _Logged]] = []
        self._issuing: dict[str, _IssuingCA] = {}  # by CA fingerprint
        self._store_retry_pending = False

    # Lifecycle --------------------------------------------------------------------

    def setup(self) -> None:
        self.config.database.parent.mkdir(parents=True, exist_ok=True)
        self.config.crl_dir.mkdir(parents=True, exist_ok=True)
        self.store = CAStore(self.config.database)
        self.ca = Hierarchy(self.config, self.store, self.policy.permitted_ipv6_networks)
        self.starting()  # each step below is a request; an error in any fails the start
        self._create_missing(self.clock.now(), MAX_CREATION_STEPS)

    def _create_missing(self, now: datetime, steps_left: int) -> None:
        """Start-up, step 1: each missing CA (root, then intermediate): its key
        (``EnsureKey``), its signature (``SignData``), recorded; then load."""
        label = self.ca.key_to_create(now) if steps_left else None
        if label is None:
            self.ca.load(now)
            self._publish_at_start(now)
            return

        def have_key(result: outcome.Outcome) -> None:
            new = self.ca.new_missing(now, label, _ca_key(result.unwrap().public_key_der))
            sign = SignData(new.signer, new.tbs.der, new.tbs.hash_name)
            self.request(self.hsm, sign, lambda signed: made(new, signed))

        def made(new: NewCACertificate, result: outcome.Outcome) -> None:
            self.ca.add_ca_certificate(new, result.unwrap())
            self._create_missing(now, steps_left - 1)

        self.request(self.hsm, EnsureKey(label, self.config.key_type), have_key)

    def _publish_at_start(self, now: datetime) -> None:
        """Start-up, step 2: ``root.pem`` and every live CA's CRL, then the roots to
        the log (``AcceptRoots``), then ready."""
        # The trust anchor where users look for it (curl --cacert var/ca/root.pem).
        replace_file(self.ca.root_pem_path, pem(self.ca.root.certificate).encode("ascii"))

        def published(results: list[outcome.Outcome]) -> None:
            for result in results:
                result.unwrap()
            if self.ctlog is None:
                running()
                return
            roots = AcceptRoots(self.ca.roots_der())
            self.request(self.ctlog, roots, lambda accepted: running(accepted.unwrap()))

        def running(_accepted: Any = None) -> None:
            self.every(self.config.crl_refresh_s, RefreshCRLs())
            self.ready()

        self._publish_crls(self.ca.live_labels(now), now, published)

    def cleanup(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def on_receive(self, envelope: Any) -> Any:
        result = super().on_receive(envelope)
        idle = self.actor_inbox.empty()
        if self._to_sign and (idle or len(self._to_sign) >= MAX_SIGN_BATCH):
            self._flush_signatures()
        if self._to_log and (idle or len(self._to_log) >= MAX_SIGN_BATCH):
            self._flush_log()
        if self._to_record and (idle or len(self._to_record) >= MAX_SIGN_BATCH):
            self._record_and_answer()
        return result

    # Issuance ---------------------------------------------------------------------

    @handles(IssueCertificate)
    def issue_certificate(self, msg: IssueCertificate) -> None:
        csr = parse_csr(_csr_bytes(msg.csr), self.policy.max_csr_bytes)
        validity = check_validity_seconds(msg.validity_s, self.policy)  # no timedelta overflow
        approved = check_request(csr, self.policy, validity, client_auth=msg.client_auth)
        now = self.clock.now()
        issuer = self._issuing_ca(self.ca.issuer_for(now, approved.validity))
        job = _Job(self.defer(), approved, issuer, new_serial(), now)
        # One TBS per certificate: the precertificate adds the poison to it, the final
        # certificate the SCT list, so the two are equal but for those (RFC 6962 §3.2).
        job.tbs = issuer.leaves.tbs(approved, job.serial, now)
        if self.ctlog is None:
            self._sign(job, job.tbs, self._final_signed)
        else:
            self._sign(job, with_poison(job.tbs), self._precert_signed)

    def _issuing_ca(self, record: CACertificateRecord) -> _IssuingCA:
        issuing = self._issuing.get(record.fingerprint)
        if issuing is None:
            issuing = self._issuing[record.fingerprint] = _IssuingCA.of(record, self.ca)
        return issuing

    def _precert_signed(self, job: _Job, precert: x509.Certificate) -> None:
        assert self.ctlog is not None and job.tbs is not None
        # LogIssued: this chain was built and signed here, the log need not check it
        # again; the entry's TBS is the one the poison was added to
        entry = LogEntryInput.precert(
            precert.public_bytes(serialization.Encoding.DER), job.issuer.key_hash,
            (job.issuer.der,), tbs_certificate=job.tbs.der,
        )  # fmt: skip
        self._to_log.append((entry, True, job, self._precert_logged))

    def _precert_logged(self, job: _Job, logged: dict[str, Any]) -> None:
        sct = SignedCertificateTimestamp.decode(logged["sct"])
        job.extra.update(sct=logged["sct"], leaf_index=logged["leaf_index"])
        assert job.tbs is not None
        final = with_sct_list(job.tbs, sct_list_extension_value([sct]))
        self._sign(job, final, self._final_logged_next)

    def _final_logged_next(self, job: _Job, cert: x509.Certificate) -> None:
        """The final certificate is logged too before anyone gets it."""
        assert self.ctlog is not None
        job.certificate = cert
        entry = LogEntryInput.x509(cert.public_bytes(serialization.Encoding.DER), (job.issuer.der,))
        self._to_log.append((entry, False, job, self._final_logged))  # its SCT: nobody's

    def _final_logged(self, job: _Job, logged: dict[str, Any]) -> None:
        job.extra["final_leaf_index"] = logged["leaf_index"]
        self._to_record.append(job)

    def _flush_log(self) -> None:
        """Send the queued entries to the log: one ``LogIssued`` with SCTs (the
        precertificates) and one without (the final certificates)."""
        assert self.ctlog is not None
        queued, self._to_log = self._to_log, []
        for scts in (True, False):
            items = [(job, then) for _, with_sct, job, then in queued if with_sct is scts]
            if items:
                entries = tuple(entry for entry, with_sct, _, _ in queued if with_sct is scts)
                self.request(self.ctlog, LogIssued(entries, scts),
                             functools.partial(self._logged, items))  # fmt: skip

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
        self._to_sign.append((job.key_label, tbs, job, then))

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
            (job.certificate, job.key_label, job.approved.san_names)
            for job in jobs
            if job.certificate
        ]
        try:
            refusals = self.store.record_issued_batch(batch)
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
                "chain": self.ca.chain_pem[job.key_label],
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "issuer": job.key_label,
                "names": list(job.approved.names),
                **job.extra,
            }))  # fmt: skip

    # Revocation and CRLs ----------------------------------------------------------

    @handles(RevokeCertificate)
    def revoke_certificate(self, msg: RevokeCertificate) -> None:
        """Answered once the new CRL is signed and written."""
        assert self.store is not None
        now = self.clock.now()
        try:
            record = self.store.revoke(parse_serial(msg.serial), msg.reason, now)
        except STORE_FAULTS as exc:
            raise self._store_failed(exc, "the revocation was not recorded") from None
        reply = self.defer()

        def published(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(self._crl_failed(result.error, "the revocation is recorded; its CRL is "
                                       "published once the disk takes writes"))  # fmt: skip
                return
            self._store_works()
            assert record.revoked_at is not None
            reply(outcome.Value({
                "serial": serial_hex(record.serial),
                "status": record.status,
                "reason": record.reason,
                "revoked_at": record.revoked_at.isoformat(),
                "crl_number": self.ca.crl_number(record.issuer_key_label),
            }))  # fmt: skip

        self._publish_crls([record.issuer_key_label], now, lambda results: published(results[0]))

    @handles(GetCertificate)
    def get_certificate(self, msg: GetCertificate) -> dict[str, Any]:
        assert self.store is not None
        record = self.store.get(parse_serial(msg.serial))
        return {
            "serial": serial_hex(record.serial),
            "names": list(record.names),
            "status": record.status,
            "not_before": record.not_before.isoformat(),
            "not_after": record.not_after.isoformat(),
            "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
            "reason": record.reason,
            "issuer": record.issuer_key_label,
            "certificate": pem(record.certificate),
        }

    @handles(GetCRL)
    def get_crl(self, msg: GetCRL) -> dict[str, Any]:
        label = msg.issuer or self.ca.current.key_label
        crl = self.ca.crls.get(label)
        if crl is None:
            raise IssuerNotValid(
                f"no CRL for issuer {label!r}; issuers: {', '.join(sorted(self.ca.crls))}"
            )
        return {
            "issuer": label,
            "crl": crl.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "crl_number": self.ca.crl_number(label),
            "this_update": crl.last_update_utc.isoformat(),
            "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
            "revoked": len(crl),
        }

    @handles(RefreshCRLs)
    def refresh_crls(self, msg: RefreshCRLs) -> None:
        """Answered with the labels whose CRLs were re-signed, once all are written."""
        now = self.clock.now()
        labels = self.ca.live_labels(now)
        reply = self.defer()

        def published(results: list[outcome.Outcome]) -> None:
            for result in results:
                if isinstance(result, outcome.Error):
                    reply(self._crl_failed(result.error, "the CRLs were not refreshed"))
                    return
            self._store_works()
            reply(outcome.Value(labels))

        self._publish_crls(labels, now, published)

    def _publish_crls(
        self, labels: list[str], now: datetime, then: Callable[[list[outcome.Outcome]], None]
    ) -> None:
        """Make, sign (one HSM request each, no waiting) and write the CRL of each
        CA in ``labels``; ``then`` gets one outcome per label, in order, when all
        are done (the CRL, or the store fault or HSM error that stopped it)."""
        results: list[outcome.Outcome | None] = [None] * len(labels)

        def done(index: int, result: outcome.Outcome) -> None:
            results[index] = result
            if all(r is not None for r in results):
                then([r for r in results if r is not None])

        if not labels:
            then([])
        for index, label in enumerate(labels):
            try:
                new = self.ca.new_crl(label, now)  # takes a CRL number: a database write
            except STORE_FAULTS as exc:
                done(index, outcome.Error(exc))
                continue
            self._sign_crl(new, functools.partial(done, index))

    def _sign_crl(self, new: NewCRL, then: Callable[[outcome.Outcome], None]) -> None:
        def signed(result: outcome.Outcome) -> None:
            then(self._crl_signed_outcome(new, result))

        self.request(self.hsm, SignData(new.signer, new.tbs.der, new.tbs.hash_name), signed)

    def _crl_signed_outcome(self, new: NewCRL, result: outcome.Outcome) -> outcome.Outcome:
        if isinstance(result, outcome.Error):
            return outcome.Error(result.error)
        try:
            return outcome.Value(self._crl_signed(new, result.unwrap()))
        except (*STORE_FAULTS, TrustChainError) as exc:
            return outcome.Error(exc)

    def _crl_signed(self, new: NewCRL, signature: bytes) -> x509.CertificateRevocationList:
        """Check and keep the signed CRL, and write its files (unless a newer one is out)."""
        crl = self.ca.add_crl(new, signature)
        if crl is not None:
            for path, content in self.ca.crl_files(new.key_label).items():
                replace_file(path, content)
        return self.ca.crls[new.key_label]

    def _crl_failed(self, error: BaseException, what: str) -> outcome.Outcome:
        """What a caller gets when a CRL could not be made: a store fault is
        ca_store_unavailable (and probed); an HSM or signature error as it came."""
        if isinstance(error, STORE_FAULTS):
            return outcome.Error(self._store_failed(error, what))
        return outcome.Error(error)

    # Faults of the environment ----------------------------------------------------

    def _store_failed(self, exc: BaseException, what: str) -> CaStoreUnavailable:
        """Show the fault, schedule a probe (once), and say what happened."""
        fault = self.fault(STORE)
        retries = 0 if fault is None else fault.retries + 1
        delay = max(MIN_RETRY_S, self.context.backoff.delay(retries))
        self.report_fault(STORE, exc, next_retry_s=delay)
        if not self._store_retry_pending:
            self._store_retry_pending = True
            self.after(delay, _RetryStore())
        return CaStoreUnavailable(
            f"the CA's database or CRL directory cannot be written "
            f"({type(exc).__name__}: {exc}); {what}; try again shortly",
            retry_after_s=1,
        )

    def _store_works(self) -> None:
        if self.fault(STORE) is not None:
            self.clear_fault(STORE)

    @handles(_RetryStore)
    def retry_store(self, msg: _RetryStore) -> None:
        self._store_retry_pending = False
        if self.fault(STORE) is None:
            return
        assert self.store is not None
        now = self.clock.now()
        try:
            self.store.probe(now)  # a durable write to the database ...
        except STORE_FAULTS as exc:
            self._store_failed(exc, "probe")
            return

        def refreshed(results: list[outcome.Outcome]) -> None:
            for result in results:
                if isinstance(result, outcome.Error) and isinstance(result.error, STORE_FAULTS):
                    self._store_failed(result.error, "probe")
                    return
            # (an HSM that could not sign is its own fault, shown by the HSM actor)
            self._store_works()

        # ... and to the CRL directory (CRLs missed meanwhile)
        self._publish_crls(self.ca.live_labels(now), now, refreshed)

    # The hierarchy ----------------------------------------------------------------

    @handles(GetCAStatus)
    def get_ca_status(self, msg: GetCAStatus) -> list[dict[str, Any]]:
        return self.ca.status(self.clock.now())

    @handles(RotateIntermediate)
    def rotate_intermediate(self, msg: RotateIntermediate) -> None:
        """A new intermediate: its key (HSM), the root's signature (HSM), its first
        CRL (HSM), each a request; answered when it issues."""
        now = self.clock.now()
        label = self.ca.next_intermediate_label()
        reply = self.defer()

        def have_key(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(outcome.Error(result.error))
                return
            new = self.ca.new_intermediate(now, label, _ca_key(result.unwrap().public_key_der))
            self.request(self.hsm, SignData(new.signer, new.tbs.der, new.tbs.hash_name),
                         lambda result: signed(new, result))  # fmt: skip

        def signed(new: NewCACertificate, result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(outcome.Error(result.error))
                return
            try:
                record = self.ca.add_ca_certificate(new, result.unwrap())
            except STORE_FAULTS as exc:
                reply(outcome.Error(self._store_failed(exc, "no intermediate was made")))
                return
            except TrustChainError as exc:
                reply(outcome.Error(exc))
                return
            self._publish_crls([record.key_label], now,
                               lambda results: published(record, results[0]))  # fmt: skip

        def published(record: CACertificateRecord, result: outcome.Outcome) -> None:
            self.ca.load(now)  # it issues from now on, its CRL out or not (refreshed later)
            if isinstance(result, outcome.Error):
                reply(self._crl_failed(result.error, "the intermediate is made; its CRL is "
                                       "published once the disk takes writes"))  # fmt: skip
                return
            self._store_works()
            reply(outcome.Value({"key_label": record.key_label,
                                 "not_after": record.not_after.isoformat(),
                                 "certificate": pem(record.certificate)}))  # fmt: skip

        self.request(self.hsm, EnsureKey(label, self.config.key_type), have_key)


def _ca_key(public_key_der: bytes) -> CAPublicKey:
    key = serialization.load_der_public_key(public_key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey), "the HSM makes EC or RSA"
    return key
