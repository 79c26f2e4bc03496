"""The certificate lifecycle: issue, renew, revoke, status at an instant, CRL and OCSP.

The gateway is the registration authority. It checks who asks (the caller's principal
and, for subscribers, identity's verdict that the account is real-name verified), keeps
the records, answers status questions from them, and publishes every change as an event
through the outbox in the same transaction. The signing itself is the CA's
(:class:`~signet.ca_gateway.authority.CertificateAuthority`) and every key operation goes
through the signer, so no private key is ever here.

Slow calls (the signer, identity) happen outside database transactions; each change is
then written in one short transaction that also re-checks what could have changed
meanwhile (a concurrent revocation or renewal of the same certificate).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asn1crypto import x509
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from signet.ca_gateway import certs, convert, telemetry
from signet.ca_gateway.authority import BuiltinCa, CertificateAuthority, IssueOrder
from signet.ca_gateway.domain import (
    NOT_REVOCABLE_FOR,
    AccountType,
    CaCertificateView,
    CaRole,
    CertificateProfile,
    CertificateStatus,
    CertificateView,
    IssuedCertificate,
    KeyInfo,
    Page,
    RevocationInitiator,
    RevocationReason,
    RevocationView,
    StatusAnswer,
    normalize_serial,
    serial_hex,
)
from signet.ca_gateway.models import (
    CertificateRecord,
    CertificateRequest,
    CertificateState,
    CrlRecord,
    Revocation,
)
from signet.ca_gateway.ocsp import Responder, SerialStatus
from signet.ca_gateway.ocsp import respond as ocsp_respond
from signet.ca_gateway.ports import CA_OWNER, AccountDirectory, KeyService
from signet.ca_gateway.profiles import PROFILES, Profile
from signet.ca_gateway.repository import (
    CaCertificateRepository,
    CertificateRepository,
    CrlRepository,
)
from signet.common.auth import Principal
from signet.common.db import Database, utcnow
from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
)
from signet.common.events import CERTIFICATE_TOPIC, EventEnvelope, new_envelope
from signet.common.keys import KeyAlgorithm
from signet.common.outbox import Outbox

_log = logging.getLogger("signet.ca_gateway.service")

SOURCE = "ca-gateway"
ARCHIVE_YEARS = 5
"""Records are kept at least this many years after the certificate expires."""

MAX_ID = 64
MAX_REQUEST_ID = 96
MAX_PAGE = 500
DEFAULT_PAGE = 50
MAX_RENEW_BEFORE = timedelta(days=180)
CA_PRINCIPAL = Principal(subject=CA_OWNER, kind="service")
"""The gateway itself, for what it does on its own (bootstrap, scheduled renewals)."""


def archive_until(not_after: datetime) -> datetime:
    """Five calendar years after ``not_after`` (Feb 29 becomes Mar 1), plus a day of margin."""
    try:
        later = not_after.replace(year=not_after.year + ARCHIVE_YEARS)
    except ValueError:
        later = not_after.replace(year=not_after.year + ARCHIVE_YEARS, month=3, day=1)
    return later + timedelta(days=1)


@dataclass(frozen=True)
class IssueRequest:
    """IssueCertificate, as values."""

    tenant: str
    account_id: str
    system_owner: str
    profile: CertificateProfile | None
    key_algorithm: KeyAlgorithm | None = None
    key_id: str = ""
    validity: timedelta | None = None
    auto_renewal: bool = False
    operator_account_id: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class RenewRequest:
    """RenewCertificate, as values."""

    serial: str
    new_key: bool = False
    key_algorithm: KeyAlgorithm | None = None
    validity: timedelta | None = None
    request_id: str = ""


@dataclass(frozen=True)
class RevokeRequest:
    """RevokeCertificate, as values."""

    serial: str
    reason: RevocationReason = RevocationReason.UNSPECIFIED
    initiator: RevocationInitiator = RevocationInitiator.UNSPECIFIED
    invalidity_date: datetime | None = None
    requested_by: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class ListQuery:
    """ListCertificates, as values."""

    tenant: str
    account_id: str = ""
    status: CertificateStatus | None = None
    profile: CertificateProfile | None = None
    expiring_before: datetime | None = None
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class Naming:
    """What goes into subjects besides the account's data."""

    organization: str = "Signet"
    country: str = "CN"


@dataclass
class CaGateway:
    """Certificate lifecycle over a CA, the signer's keys and identity's accounts."""

    db: Database
    keys: KeyService
    accounts: AccountDirectory
    authority: CertificateAuthority
    # The built-in CA, when it is the one issuing: it signs CRLs and OCSP answers for it.
    builtin: BuiltinCa | None = None
    naming: Naming = field(default_factory=Naming)
    crl_validity: timedelta = timedelta(hours=24)
    ocsp_validity: timedelta = timedelta(hours=1)
    expiry_notice_days: tuple[int, ...] = (30, 7, 1)
    on_commit: Callable[[], None] = lambda: None
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)
    _responder: Responder | None = field(default=None, repr=False)
    _responder_until: datetime | None = field(default=None, repr=False)
    _responder_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---- issue ----------------------------------------------------------------------

    def issue(self, caller: Principal, request: IssueRequest) -> IssuedCertificate:
        """Issue a certificate to a verified account or a platform component."""
        profile = self._validate_issue(request)
        system = bool(request.system_owner)
        tenant = "" if system else request.tenant
        if system:
            _check_system_caller(caller, request.system_owner)
        else:
            _check_tenant(caller, tenant)
        scoped = _scoped(request.request_id, tenant or request.system_owner)
        earlier = self._earlier("issue", scoped)
        if earlier is not None:
            return self.get(caller, earlier)
        now = self._clock()
        if system:
            subject = self._system_subject(request.system_owner, profile)
        else:
            subject = self._subscriber_subject(request, profile, now)
        key = self._key_for(request, profile, tenant, scoped)
        view = self._issue_and_store(
            profile=profile,
            key=key,
            subject=subject,
            tenant=tenant,
            account_id=request.account_id,
            system_owner=request.system_owner,
            validity=profile.validity(request.validity),
            auto_renewal=request.auto_renewal,
            renew_before=None,
            renewed_from="",
            request=("issue", scoped, caller.subject),
            now=now,
            event=lambda v: convert.issued_event(v),
        )
        return IssuedCertificate(view, self.authority.chain())

    def _validate_issue(self, request: IssueRequest) -> Profile:
        if bool(request.account_id) == bool(request.system_owner):
            raise InvalidArgument("set exactly one of account_id and system_owner")
        if request.profile is None:
            raise InvalidArgument("profile is required")
        profile = PROFILES[request.profile]
        if profile.is_system and not request.system_owner:
            raise InvalidArgument(f"profile {profile.name.value} is for platform components")
        if not profile.is_system and request.system_owner:
            raise InvalidArgument(f"profile {profile.name.value} is for subscriber accounts")
        if request.account_id and not request.tenant:
            raise InvalidArgument("tenant_id is required for a subscriber certificate")
        for name, value in (
            ("tenant_id", request.tenant),
            ("account_id", request.account_id),
            ("system_owner", request.system_owner),
            ("key_id", request.key_id),
            ("operator_account_id", request.operator_account_id),
        ):
            if len(value) > MAX_ID:
                raise InvalidArgument(f"{name} is at most {MAX_ID} characters")
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"request_id is at most {MAX_REQUEST_ID} characters")
        if request.operator_account_id and profile.account_type is not AccountType.ENTERPRISE:
            raise InvalidArgument("operator_account_id applies to enterprise certificates only")
        return profile

    def _subscriber_subject(
        self, request: IssueRequest, profile: Profile, now: datetime
    ) -> x509.Name:
        account = self.accounts.account(request.account_id)
        if account.tenant != request.tenant:
            raise PermissionDenied(f"account {request.account_id} belongs to another tenant")
        if not account.verified:
            raise FailedPrecondition(
                f"account {request.account_id} has no valid real-name verification; "
                "complete verification before requesting a certificate"
            )
        if profile.account_type is not account.type:
            raise InvalidArgument(
                f"profile {profile.name.value} is for {profile.account_type} accounts, "
                f"and account {request.account_id} is a {account.type.value} account"
            )
        if not account.identifier_hash or not account.name:
            raise FailedPrecondition(
                f"account {request.account_id} lacks the verified name or identifier "
                "a certificate subject needs"
            )
        if request.operator_account_id and not self.accounts.operator_may_manage_certificates(
            request.account_id, request.operator_account_id, now
        ):
            raise PermissionDenied(
                f"operator {request.operator_account_id} has no active authorisation to "
                f"manage certificates of enterprise {request.account_id}"
            )
        attributes = [("country_name", self.naming.country)]
        if account.type is AccountType.ENTERPRISE:
            attributes.append(("organization_name", account.name))
        attributes += [
            ("common_name", account.name),
            # A keyed hash of the resident ID or credit code: never the identifier itself.
            ("serial_number", account.identifier_hash.hex()[:64]),
        ]
        return certs.build_name(attributes)

    def _system_subject(self, owner: str, profile: Profile) -> x509.Name:
        label = profile.name.value.replace("_", " ").title()
        return certs.build_name(
            [
                ("country_name", self.naming.country),
                ("organization_name", self.naming.organization),
                ("organizational_unit_name", owner),
                ("common_name", f"{self.naming.organization} {label}"),
            ]
        )

    def _key_for(
        self, request: IssueRequest, profile: Profile, tenant: str, scoped: str
    ) -> KeyInfo:
        if request.key_id:
            key = self.keys.get_key(request.key_id)
            if request.system_owner:
                owned = key.system_owner == request.system_owner
            else:
                owned = key.tenant == tenant and key.account_id == request.account_id
            if not owned:
                raise PermissionDenied(f"key {request.key_id} does not belong to the subject")
            if not key.active:
                raise FailedPrecondition(f"key {request.key_id} is disabled or destroyed")
            return key
        return self.keys.create_key(
            algorithm=request.key_algorithm or KeyAlgorithm.EC_P256,
            purpose=profile.key_purpose,
            tenant=tenant,
            account_id=request.account_id,
            system_owner=request.system_owner,
            # A retried request gets the same key, not a second one.
            request_id=f"{CA_OWNER}:issue:{scoped}" if scoped else "",
        )

    def _issue_and_store(
        self,
        *,
        profile: Profile,
        key: KeyInfo,
        subject: x509.Name,
        tenant: str,
        account_id: str,
        system_owner: str,
        validity: timedelta,
        auto_renewal: bool,
        renew_before: int | None,
        renewed_from: str,
        request: tuple[str, str, str],
        now: datetime,
        event: Callable[[CertificateView], Message],
    ) -> CertificateView:
        not_before = certs.whole_seconds(now) - timedelta(minutes=1)
        serial = certs.new_serial()
        der = self.authority.issue(
            IssueOrder(
                serial=serial,
                subject=subject,
                spki_der=key.spki_der,
                not_before=not_before,
                not_after=not_before + validity,
                profile=profile,
            )
        )
        cert = x509.Certificate.load(der)
        kind, scoped, requested_by = request
        record = CertificateRecord(
            serial=serial_hex(serial),
            issuer_ca_id=self.authority.ca_id,
            issuer=self.authority.issuer_name,
            tenant=tenant,
            account_id=account_id or None,
            system_owner=system_owner or None,
            key_id=key.key_id,
            key_algorithm=key.algorithm.value,
            profile=profile.name.value,
            subject=certs.subject_text(subject),
            state=CertificateState.ISSUED,
            der=der,
            sha256=certs.certificate_sha256(der),
            not_before=cert.not_valid_before,
            not_after=cert.not_valid_after,
            auto_renewal=auto_renewal,
            renew_before_seconds=renew_before,
            renewed_from=renewed_from or None,
            archive_until=archive_until(cert.not_valid_after),
            created_at=now,
        )
        try:
            with self.db.session() as session:
                repo = CertificateRepository(session)
                if renewed_from:
                    previous = repo.lock(renewed_from)
                    _check_renewable(previous, now)
                    previous.renewed_by = record.serial
                repo.add(record)
                if scoped:
                    repo.add_request(
                        CertificateRequest(
                            kind=kind,
                            request_id=scoped,
                            serial=record.serial,
                            tenant=tenant,
                            requested_by=requested_by,
                            archive_until=record.archive_until,
                        )
                    )
                view = _view(record, None, now)
                self._emit(session, event(view), view)
        except AlreadyExists:
            # A concurrent retry with the same request id won: answer with its certificate.
            earlier = self._earlier(kind, scoped) if scoped else None
            if earlier is None:
                raise
            return self.get(CA_PRINCIPAL, earlier).certificate
        self.on_commit()
        telemetry.CERTIFICATES_ISSUED.labels(profile.name.value, kind).inc()
        _log.info(
            "certificate issued",
            extra={"serial": record.serial, "profile": profile.name.value, "kind": kind},
        )
        return view

    # ---- renew ----------------------------------------------------------------------

    def renew(
        self, caller: Principal, request: RenewRequest, *, automatic: bool = False
    ) -> tuple[IssuedCertificate, str]:
        """Issue a successor to a certificate (same or new key); returns it and the old serial."""
        serial = normalize_serial(request.serial)
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"request_id is at most {MAX_REQUEST_ID} characters")
        with self.db.session() as session:
            old = CertificateRepository(session).get(serial)
            _check_access(caller, old)
            old_view = _view(old, None, self._clock())
        scoped = _scoped(request.request_id, old_view.tenant or old_view.system_owner)
        earlier = self._earlier("renew", scoped)
        if earlier is not None:
            return self.get(caller, earlier), serial
        now = self._clock()
        with self.db.session() as session:
            _check_renewable(CertificateRepository(session).get(serial), now)
        profile = PROFILES[old_view.profile]
        if old_view.system_owner:
            subject = self._system_subject(old_view.system_owner, profile)
        else:
            subject = self._subscriber_subject(
                IssueRequest(
                    tenant=old_view.tenant,
                    account_id=old_view.account_id,
                    system_owner="",
                    profile=old_view.profile,
                ),
                profile,
                now,
            )
        if request.new_key:
            key = self.keys.create_key(
                algorithm=request.key_algorithm or old_view.key_algorithm,
                purpose=profile.key_purpose,
                tenant=old_view.tenant,
                account_id=old_view.account_id,
                system_owner=old_view.system_owner,
                request_id=f"{CA_OWNER}:renew:{scoped}" if scoped else "",
            )
        else:
            if (
                request.key_algorithm is not None
                and request.key_algorithm != old_view.key_algorithm
            ):
                raise InvalidArgument("key_algorithm can change only with new_key")
            key = self.keys.get_key(old_view.key_id)
            if not key.active:
                raise FailedPrecondition(
                    f"key {key.key_id} is disabled; renew with new_key to certify a new key"
                )
        view = self._issue_and_store(
            profile=profile,
            key=key,
            subject=subject,
            tenant=old_view.tenant,
            account_id=old_view.account_id,
            system_owner=old_view.system_owner,
            validity=profile.validity(request.validity),
            auto_renewal=old_view.auto_renewal,
            renew_before=(
                int(old_view.renew_before.total_seconds()) if old_view.renew_before else None
            ),
            renewed_from=serial,
            request=("renew", scoped, caller.subject),
            now=now,
            event=lambda v: convert.renewed_event(
                v, serial, new_key=request.new_key, automatic=automatic
            ),
        )
        return IssuedCertificate(view, self.authority.chain()), serial

    # ---- revoke ---------------------------------------------------------------------

    def revoke(self, caller: Principal, request: RevokeRequest) -> CertificateView:
        """Revoke a certificate for good; its key is disabled and the CRL republished."""
        serial = normalize_serial(request.serial)
        if request.reason in NOT_REVOCABLE_FOR:
            raise InvalidArgument(
                f"reason {request.reason.value} is not accepted: revocation here is permanent"
            )
        now = self._clock()
        if request.invalidity_date is not None and request.invalidity_date > now:
            raise InvalidArgument("invalidity_date must not be in the future")
        if len(request.request_id) > MAX_REQUEST_ID or len(request.requested_by) > 128:
            raise InvalidArgument("request_id or requested_by is too long")
        revoked: list[str] = []
        with self.db.session() as session:
            repo = CertificateRepository(session)
            record = repo.lock(serial)
            _check_access(caller, record)
            scoped = _scoped(request.request_id, record.tenant or record.system_owner or "")
            earlier = repo.request("revoke", scoped) if scoped else None
            if earlier is not None and earlier.serial == serial:
                return _view(record, repo.revocation(serial), now)
            existing = repo.revocation(serial)
            if existing is not None:
                raise FailedPrecondition(
                    f"certificate {serial} is already revoked "
                    f"(since {existing.revoked_at.isoformat()})"
                )
            targets = [record]
            if request.reason.compromises_key:
                # The key is unsafe: every other good certificate over it goes too.
                targets += [
                    other
                    for other in repo.with_key(record.key_id)
                    if other.serial != serial and other.state is CertificateState.ISSUED
                ]
            view = None
            for target in targets:
                revocation = Revocation(
                    serial=target.serial,
                    revoked_at=now,
                    reason=request.reason.value,
                    reason_code=request.reason.rfc_code,
                    initiator=request.initiator.value,
                    invalidity_date=request.invalidity_date,
                    requested_by=request.requested_by or caller.subject,
                    key_settled_at=None,
                    archive_until=target.archive_until,
                )
                repo.add_revocation(revocation)
                target_view = _view(target, revocation, now)
                assert target_view.revocation is not None
                self._emit(
                    session, convert.revoked_event(target_view, target_view.revocation), target_view
                )
                revoked.append(target.serial)
                if target is record:
                    view = target_view
            if scoped:
                repo.add_request(
                    CertificateRequest(
                        kind="revoke",
                        request_id=scoped,
                        serial=serial,
                        tenant=record.tenant,
                        requested_by=request.requested_by or caller.subject,
                        archive_until=record.archive_until,
                    )
                )
            issuer_ca_id = record.issuer_ca_id
        self.on_commit()
        telemetry.REVOCATIONS.labels(request.reason.value).inc(len(revoked))
        _log.info("certificate revoked", extra={"serial": serial, "reason": request.reason.value})
        for target_serial in revoked:
            self.authority.revoked(int(target_serial, 16), now, request.reason.rfc_code)
        # The revocation stands whatever happens next; the scheduler retries what fails.
        self._refresh_crl_after_revocation(issuer_ca_id)
        for target_serial in revoked:
            self._settle_key(target_serial)
        assert view is not None
        return view

    def _refresh_crl_after_revocation(self, ca_id: str) -> None:
        if self.builtin is None or ca_id not in (
            self.builtin.root.ca_id,
            self.builtin.issuing.ca_id,
        ):
            return
        try:
            self.publish_crl(ca_id)
        except ServiceError as err:
            _log.warning("CRL not republished; will retry", extra={"error": err.code.name})

    def _settle_key(self, serial: str) -> None:
        """Disable the revoked certificate's key unless another good certificate needs it."""
        now = self._clock()
        with self.db.session() as session:
            repo = CertificateRepository(session)
            revocation = repo.revocation(serial)
            if revocation is None or revocation.key_settled_at is not None:
                return
            record = repo.get(serial)
            key_id, owner = record.key_id, record.system_owner
            still_used = any(
                other.serial != serial
                and other.state is CertificateState.ISSUED
                and other.not_after > now
                for other in repo.with_key(key_id)
            )
            compromised = RevocationReason(revocation.reason).compromises_key
        # The signer lets only the owning component retire its system keys; that component
        # learns of the revocation from the CertificateRevoked event.
        foreign_system_key = bool(owner) and owner != CA_OWNER
        needs_disable = not foreign_system_key and (compromised or not still_used)
        if needs_disable:
            try:
                self.keys.disable_key(key_id, compromised=compromised)
            except ServiceError as err:
                _log.warning(
                    "key not disabled yet; will retry",
                    extra={"serial": serial, "error": err.code.name},
                )
                return
        with self.db.session() as session:
            stored = CertificateRepository(session).revocation(serial)
            if stored is not None and stored.key_settled_at is None:
                stored.key_settled_at = self._clock()

    # ---- read -----------------------------------------------------------------------

    def get(self, caller: Principal, serial: str) -> IssuedCertificate:
        """A certificate with its chain."""
        serial = normalize_serial(serial)
        with self.db.session() as session:
            repo = CertificateRepository(session)
            record = repo.get(serial)
            _check_access(caller, record)
            view = _view(record, repo.revocation(serial), self._clock())
        return IssuedCertificate(view, self._chain_of(record.issuer_ca_id))

    def _chain_of(self, ca_id: str) -> tuple[bytes, ...]:
        if ca_id == self.authority.ca_id:
            return self.authority.chain()
        # Issued by an earlier issuing CA of the built-in hierarchy.
        with self.db.session() as session:
            repo = CaCertificateRepository(session)
            chain: list[bytes] = []
            current = repo.get(ca_id)
            while current is not None and len(chain) < 5:
                chain.append(current.der)
                if current.issuer_ca_id == current.ca_id:
                    break
                current = repo.get(current.issuer_ca_id)
        return tuple(chain)

    def list_certificates(self, caller: Principal, query: ListQuery) -> Page:
        """One page of a tenant's certificates, in issue order."""
        if not query.tenant:
            raise InvalidArgument("tenant_id is required")
        _check_tenant(caller, query.tenant)
        if query.page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(query.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = _decode_page_token(query.page_token) if query.page_token else None
        now = self._clock()
        out: list[CertificateView] = []
        with self.db.session() as session:
            repo = CertificateRepository(session)
            cursor = after
            # Status is derived (expiry), so filter while paging; stop at a full page.
            while len(out) < size:
                batch = repo.page(
                    tenant=query.tenant,
                    account_id=query.account_id,
                    profile=query.profile.value if query.profile else "",
                    expiring_before=query.expiring_before,
                    after=cursor,
                    limit=size,
                )
                for record in batch:
                    cursor = (record.created_at, record.serial)
                    view = _view(record, repo.revocation(record.serial), now)
                    if query.status is None or view.status is query.status:
                        out.append(view)
                        if len(out) == size:
                            break
                if len(out) == size:
                    break
                if len(batch) < size:
                    cursor = None
                    break
        token = _encode_page_token(cursor) if cursor is not None and len(out) == size else ""
        return Page(tuple(out), token)

    def status(self, serial: str, at: datetime | None) -> StatusAnswer:
        """The status ``serial`` had at ``at`` (now when None).

        Revoked only if the revocation took effect at or before ``at``: a signature made
        before a revocation was made with a good certificate.
        """
        serial = normalize_serial(serial)
        now = self._clock()
        at = at or now
        with self.db.session() as session:
            repo = CertificateRepository(session)
            record = repo.find(serial)
            if record is None:
                return StatusAnswer(serial, at, CertificateStatus.UNKNOWN, None, now)
            view = _view(record, repo.revocation(serial), at)
        return StatusAnswer(
            serial,
            at,
            view.status,
            view.revocation if view.status is CertificateStatus.REVOKED else None,
            now,
        )

    def ca_certificates(self) -> list[CaCertificateView]:
        """The root, issuing CAs, and the platform's OCSP responder and TSA certificates."""
        now = self._clock()
        out: list[CaCertificateView] = []
        urls = self.builtin.urls if self.builtin is not None else None
        with self.db.session() as session:
            for ca in CaCertificateRepository(session).all():
                role = CaRole(ca.role)
                out.append(
                    CaCertificateView(
                        ca_id=ca.ca_id,
                        role=role,
                        subject=ca.subject,
                        not_before=ca.not_before,
                        not_after=ca.not_after,
                        der=ca.der,
                        crl_url=urls.crl(ca.ca_id) if urls else "",
                        ocsp_url=urls.ocsp if urls and role is CaRole.ISSUING else "",
                    )
                )
            for record in CertificateRepository(session).good_system_certificates(now):
                system_role = _SYSTEM_ROLES.get(CertificateProfile(record.profile))
                if system_role is None:
                    continue
                out.append(
                    CaCertificateView(
                        ca_id=f"{record.system_owner}-{record.serial}",
                        role=system_role,
                        subject=record.subject,
                        not_before=record.not_before,
                        not_after=record.not_after,
                        der=record.der,
                        crl_url="",
                        ocsp_url="",
                    )
                )
        return out

    def ca_certificate(self, ca_id: str) -> bytes:
        """The DER certificate of one of the built-in CAs (for AIA caIssuers)."""
        with self.db.session() as session:
            found = CaCertificateRepository(session).get(ca_id)
            if found is None:
                raise NotFound(f"CA {ca_id} not found")
            return found.der

    def set_auto_renewal(
        self, caller: Principal, serial: str, enabled: bool, renew_before: timedelta | None
    ) -> CertificateView:
        """Turn automatic renewal on or off, as the subscriber authorised."""
        serial = normalize_serial(serial)
        if renew_before is not None and not timedelta(hours=1) <= renew_before <= MAX_RENEW_BEFORE:
            raise InvalidArgument("renew_before must be between one hour and 180 days")
        now = self._clock()
        with self.db.session() as session:
            repo = CertificateRepository(session)
            record = repo.lock(serial)
            _check_access(caller, record)
            if enabled and record.state is CertificateState.REVOKED:
                raise FailedPrecondition(f"certificate {serial} is revoked")
            record.auto_renewal = enabled
            if renew_before is not None:
                record.renew_before_seconds = int(renew_before.total_seconds())
            return _view(record, repo.revocation(serial), now)

    # ---- CRL ------------------------------------------------------------------------

    def crl(self, ca_id: str) -> bytes:
        """The newest CRL of ``ca_id`` (published now if there is none yet or it ran out)."""
        builtin = self._require_builtin()
        if ca_id not in (builtin.root.ca_id, builtin.issuing.ca_id):
            raise NotFound(f"no CRL for CA {ca_id}")
        with self.db.session() as session:
            latest = CrlRepository(session).latest(ca_id)
            if latest is not None and latest.next_update > self._clock():
                return latest.der
        return self.publish_crl(ca_id).der

    def publish_crl(self, ca_id: str) -> CrlRecord:
        """Sign and store a new complete CRL of ``ca_id`` with the next CRL number."""
        builtin = self._require_builtin()
        now = self._clock()
        with self.db.session() as session:
            latest = CrlRepository(session).latest(ca_id)
            number = latest.number + 1 if latest is not None else 1
            entries = [
                certs.CrlEntry(
                    serial=int(r.serial, 16),
                    revoked_at=r.revoked_at,
                    rfc_reason=r.reason_code,
                    invalidity_date=r.invalidity_date,
                )
                for r in CertificateRepository(session).revoked_until(now, ca_id)
            ]
        this_update = certs.whole_seconds(now)
        next_update = this_update + self.crl_validity
        der = certs.issue_crl(
            builtin.issuer(ca_id),
            number=number,
            this_update=this_update,
            next_update=next_update,
            entries=entries,
        )
        record = CrlRecord(
            ca_id=ca_id,
            number=number,
            this_update=this_update,
            next_update=next_update,
            der=der,
            revoked_count=len(entries),
            created_at=now,
        )
        try:
            with self.db.session() as session:
                CrlRepository(session).add(record)
                payload = convert.crl_event(
                    ca_id,
                    number,
                    this_update,
                    next_update,
                    hashlib.sha256(der).digest(),
                    len(entries),
                )
                Outbox.add(session, CERTIFICATE_TOPIC, _envelope(payload, f"crl/{ca_id}", ""))
        except AlreadyExists:
            # Another replica published this number first; serve the newest.
            with self.db.session() as session:
                latest = CrlRepository(session).latest(ca_id)
                assert latest is not None
                return latest
        self.on_commit()
        telemetry.CRLS_PUBLISHED.labels(ca_id).inc()
        telemetry.CRL_NEXT_UPDATE.labels(ca_id).set(next_update.timestamp())
        _log.info(
            "CRL published", extra={"ca_id": ca_id, "number": number, "entries": len(entries)}
        )
        return record

    def _crl_due(self, ca_id: str, now: datetime) -> bool:
        with self.db.session() as session:
            latest = CrlRepository(session).latest(ca_id)
            if latest is None:
                return True
            if now >= latest.this_update + self.crl_validity / 2:
                return True
            newest = CertificateRepository(session).latest_revocation_at(ca_id)
            return newest is not None and newest >= latest.created_at

    # ---- OCSP -----------------------------------------------------------------------

    def ocsp(self, request_der: bytes) -> bytes:
        """The signed OCSP response to a DER OCSPRequest (never raises for bad input)."""
        builtin = self._require_builtin()

        def lookup(serials: list[str]) -> dict[str, SerialStatus]:
            out: dict[str, SerialStatus] = {}
            with self.db.session() as session:
                repo = CertificateRepository(session)
                for serial in serials:
                    record = repo.find(serial)
                    if record is None or record.issuer_ca_id != builtin.issuing.ca_id:
                        continue
                    revocation = repo.revocation(serial)
                    out[serial] = (
                        SerialStatus(revocation.revoked_at, revocation.reason_code)
                        if revocation is not None
                        else SerialStatus()
                    )
            return out

        return ocsp_respond(
            request_der,
            responder=self.responder(),
            lookup=lookup,
            now=self._clock(),
            validity=self.ocsp_validity,
        )

    def responder(self) -> Responder | None:
        """The delegated OCSP responder in use (the newest good one), cached until it expires."""
        builtin = self._require_builtin()
        now = self._clock()
        with self._responder_lock:
            if (
                self._responder is not None
                and self._responder_until
                and now < self._responder_until
            ):
                return self._responder
        with self.db.session() as session:
            record = CertificateRepository(session).latest_of(
                system_owner=CA_OWNER, profile=CertificateProfile.OCSP_RESPONDER.value, now=now
            )
            if record is None:
                return None
            der, key_id, algorithm, until = (
                record.der,
                record.key_id,
                KeyAlgorithm(record.key_algorithm),
                min(record.not_after, now + timedelta(minutes=5)),
            )
        cert = x509.Certificate.load(der)
        responder = Responder(
            issuer=builtin.issuing.certificate,
            certificate=cert,
            signer=certs.Issuer(
                name=cert.subject,
                key_id=certs.key_identifier(cert.public_key.dump()),
                spec=certs.signature_spec(algorithm),
                sign_digest=lambda digest, h, scheme: self.keys.sign_digest(
                    key_id, digest, h, scheme
                ),
            ),
        )
        with self._responder_lock:
            self._responder, self._responder_until = responder, until
        return responder

    def ensure_ocsp_responder(self) -> None:
        """Issue the delegated OCSP responder certificate if there is no good one."""
        builtin = self._require_builtin()
        with self.db.session() as session:
            found = CertificateRepository(session).latest_of(
                system_owner=CA_OWNER,
                profile=CertificateProfile.OCSP_RESPONDER.value,
                now=self._clock(),
            )
        if found is not None:
            return
        self.issue(
            CA_PRINCIPAL,
            IssueRequest(
                tenant="",
                account_id="",
                system_owner=CA_OWNER,
                profile=CertificateProfile.OCSP_RESPONDER,
                key_algorithm=builtin.issuing.algorithm,
                auto_renewal=True,
                request_id=f"ocsp-responder:{builtin.issuing.ca_id}:{self._clock():%Y%m%d%H%M}",
            ),
        )
        with self._responder_lock:
            self._responder = None

    def _require_builtin(self) -> BuiltinCa:
        if self.builtin is None:
            raise FailedPrecondition("CRL and OCSP are the upstream CA's; this gateway has none")
        return self.builtin

    # ---- scheduled work -------------------------------------------------------------

    def tick(self) -> None:
        """One round of scheduled work; each part is independent and retried next round."""
        for name, step in (
            ("ocsp responder", self._tick_responder),
            ("renewals", self.renew_due),
            ("crls", self._tick_crls),
            ("keys", self._tick_keys),
            ("expiry notices", self.announce_expiring),
        ):
            try:
                step()
            except ServiceError as err:
                _log.warning("scheduled step failed", extra={"step": name, "error": err.code.name})
            except Exception:  # noqa: BLE001  (one failing step must not stop the others)
                _log.exception("scheduled step crashed", extra={"step": name})

    def _tick_responder(self) -> None:
        if self.builtin is None:
            return
        self.ensure_ocsp_responder()
        telemetry.CERTIFICATE_NOT_AFTER.labels("root").set(self.builtin.root.not_after.timestamp())
        telemetry.CERTIFICATE_NOT_AFTER.labels("issuing").set(
            self.builtin.issuing.not_after.timestamp()
        )
        responder = self.responder()
        if responder is not None:
            not_after = responder.certificate.not_valid_after
            telemetry.CERTIFICATE_NOT_AFTER.labels("ocsp_responder").set(not_after.timestamp())

    def _tick_crls(self) -> None:
        if self.builtin is None:
            return
        now = self._clock()
        for ca_id in (self.builtin.root.ca_id, self.builtin.issuing.ca_id):
            if self._crl_due(ca_id, now):
                self.publish_crl(ca_id)

    def _tick_keys(self) -> None:
        with self.db.session() as session:
            serials = [r.serial for r in CertificateRepository(session).unsettled_revocations()]
        for serial in serials:
            self._settle_key(serial)
        with self.db.session() as session:
            pending = len(CertificateRepository(session).unsettled_revocations())
        telemetry.KEY_RETIREMENTS_PENDING.set(pending)

    def renew_due(self) -> list[str]:
        """Renew the certificates with automatic renewal whose time has come; the new serials."""
        now = self._clock()
        with self.db.session() as session:
            due = [
                r.serial
                for r in CertificateRepository(session).renewal_candidates(
                    now, now + MAX_RENEW_BEFORE
                )
                if now >= r.not_after - self._renew_before(r)
            ]
        renewed: list[str] = []
        for serial in due:
            try:
                issued, _ = self.renew(
                    CA_PRINCIPAL,
                    RenewRequest(serial=serial, request_id=f"auto:{serial}"),
                    automatic=True,
                )
            except ServiceError as err:
                # E.g. the account is no longer verified: leave it to expire, log why.
                _log.warning(
                    "automatic renewal skipped",
                    extra={"serial": serial, "error": err.code.name, "reason": err.message},
                )
                continue
            renewed.append(issued.certificate.serial)
        return renewed

    @staticmethod
    def _renew_before(record: CertificateRecord) -> timedelta:
        if record.renew_before_seconds:
            return timedelta(seconds=record.renew_before_seconds)
        return PROFILES[CertificateProfile(record.profile)].default_renew_before

    def announce_expiring(self) -> int:
        """CertificateExpiring once per threshold (30, 7, 1 days before); returns how many."""
        if not self.expiry_notice_days:
            return 0
        now = self._clock()
        count = 0
        with self.db.session() as session:
            repo = CertificateRepository(session)
            horizon = now + timedelta(days=max(self.expiry_notice_days))
            for record in repo.unexpired_issued(now, horizon):
                if record.renewed_by:
                    continue
                left = record.not_after - now
                crossed = [d for d in self.expiry_notice_days if left <= timedelta(days=d)]
                threshold = min(crossed)
                if record.expiry_notice_days is not None and record.expiry_notice_days <= threshold:
                    continue
                record.expiry_notice_days = threshold
                view = _view(record, None, now)
                self._emit(session, convert.expiring_event(view), view)
                count += 1
        if count:
            self.on_commit()
        return count

    # ---- helpers --------------------------------------------------------------------

    def _earlier(self, kind: str, scoped: str) -> str | None:
        if not scoped:
            return None
        with self.db.session() as session:
            found = CertificateRepository(session).request(kind, scoped)
            return found.serial if found is not None else None

    @staticmethod
    def _emit(session: Session, payload: Message, view: CertificateView) -> None:
        envelope = _envelope(payload, f"certificate/{view.serial}", view.tenant)
        if view.account_id:
            envelope.actor.account_id = view.account_id
        Outbox.add(session, CERTIFICATE_TOPIC, envelope)


_SYSTEM_ROLES = {
    CertificateProfile.OCSP_RESPONDER: CaRole.OCSP_RESPONDER,
    CertificateProfile.TIMESTAMPING: CaRole.TIMESTAMPING,
}


def _envelope(payload: Message, subject: str, tenant: str) -> EventEnvelope:
    envelope = new_envelope(payload, source=SOURCE, subject=subject, tenant=tenant)
    envelope.actor.service = SOURCE
    if tenant:
        envelope.actor.tenant_id = tenant
    return envelope


def _scoped(request_id: str, scope: str) -> str:
    """Request ids are the caller's: scope them so two tenants' ids cannot collide."""
    return f"{scope}/{request_id}" if request_id else ""


def _check_tenant(caller: Principal, tenant: str) -> None:
    if caller.tenant is not None and caller.tenant != tenant:
        raise PermissionDenied("the certificate belongs to another tenant")


def _check_system_caller(caller: Principal, owner: str) -> None:
    if caller.kind != "service" or caller.subject not in (owner, CA_OWNER):
        raise PermissionDenied(f"only the {owner} service may hold or manage its certificates")


def _check_access(caller: Principal, record: CertificateRecord) -> None:
    if record.system_owner:
        _check_system_caller(caller, record.system_owner)
    else:
        _check_tenant(caller, record.tenant)


def _check_renewable(record: CertificateRecord, now: datetime) -> None:
    if record.state is CertificateState.REVOKED:
        raise FailedPrecondition(
            f"certificate {record.serial} is revoked and cannot be renewed; issue a new one"
        )
    if record.renewed_by:
        raise FailedPrecondition(
            f"certificate {record.serial} was already renewed by {record.renewed_by}"
        )
    if record.not_after <= now:
        raise FailedPrecondition(
            f"certificate {record.serial} has expired; issue a new certificate instead"
        )


def _view(
    record: CertificateRecord, revocation: Revocation | None, at: datetime
) -> CertificateView:
    """A record as a value, with its status at ``at``."""
    revocation_view = (
        RevocationView(
            revoked_at=revocation.revoked_at,
            reason=RevocationReason(revocation.reason),
            initiator=RevocationInitiator(revocation.initiator),
            invalidity_date=revocation.invalidity_date,
            requested_by=revocation.requested_by,
        )
        if revocation is not None
        else None
    )
    if revocation is not None and revocation.revoked_at <= at:
        status = CertificateStatus.REVOKED
    elif at < record.not_before:
        status = CertificateStatus.NOT_YET_VALID
    elif at >= record.not_after:
        status = CertificateStatus.EXPIRED
    else:
        status = CertificateStatus.GOOD
    return CertificateView(
        serial=record.serial,
        tenant=record.tenant,
        account_id=record.account_id or "",
        system_owner=record.system_owner or "",
        key_id=record.key_id,
        key_algorithm=KeyAlgorithm(record.key_algorithm),
        profile=CertificateProfile(record.profile),
        subject=record.subject,
        issuer=record.issuer,
        not_before=record.not_before,
        not_after=record.not_after,
        status=status,
        revocation=revocation_view,
        auto_renewal=record.auto_renewal,
        renew_before=(
            timedelta(seconds=record.renew_before_seconds) if record.renew_before_seconds else None
        ),
        renewed_from=record.renewed_from or "",
        renewed_by=record.renewed_by or "",
        der=record.der,
        sha256=record.sha256,
    )


def _encode_page_token(cursor: tuple[datetime, str]) -> str:
    raw = json.dumps([cursor[0].isoformat(), cursor[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, serial = json.loads(raw)
        return datetime.fromisoformat(created), normalize_serial(str(serial))
    except (binascii.Error, ValueError, TypeError, InvalidArgument):
        raise InvalidArgument(
            "page_token is malformed; pass the token of the previous page"
        ) from None


def record_chain(chain: Sequence[bytes]) -> str:
    """The chain as concatenated PEM (issuing CA first)."""
    return "".join(certs.to_pem(der) for der in chain)
