"""The flows a product team runs on Signet, each a few calls of the typed client.

* :meth:`Flows.onboard_person`: register, real-name verification (name + resident ID +
  a one-time code to the phone), certificate (key made in the HSM).
* :meth:`Flows.onboard_enterprise`: register, authorise a verified person as its operator,
  enterprise verification (registry check + the amount of a small bank transfer), seal
  certificate requested by the operator.
* :meth:`Flows.sign_pdf`: willingness check bound to the PDF's digest (code by SMS or
  email) -> signing grant -> PAdES signature in the HSM. The next party signs the PDF
  the previous one returned (an incremental update; earlier signatures stay valid).
* :meth:`Flows.authorize_auto_sign` / :meth:`Flows.auto_sign_pdf`: a standing, willingness-
  confirmed authorisation for unattended sealing, then one grant per use.
* :meth:`Flows.wait_for_evidence`, :meth:`Flows.export_evidence` and
  :func:`verify_evidence`: the transaction's entries in the log, the package, and its
  offline verification by the evidence verifier library (nothing is re-implemented here).
* :meth:`Flows.register_webhook` and :func:`verify_webhook`: a tenant's endpoint and the
  HMAC check of what it receives.

One-time codes reach people, not the API: the flows ask an :class:`Inbox` for them (a
person typing the code, or the local sandbox's SMS outbox and maildir). Nothing here
prints or logs; every failure is a :class:`~signet.sdk.errors.SignetError`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from signet.ca_gateway.v1 import ca_gateway_pb2
from signet.common.v1 import common_pb2
from signet.evidence.v1 import evidence_pb2
from signet.evidence.verify import Check, verify_package
from signet.identity.v1 import identity_pb2
from signet.notify import webhooks
from signet.notify.v1 import notify_pb2
from signet.sdk.client import Signet
from signet.sdk.errors import SignetError
from signet.signer.v1 import signer_pb2

SIGNATURE_CREATED = "signet.events.v1.SignatureCreated"
WILLINGNESS_CONFIRMED = "signet.events.v1.WillingnessConfirmed"
SHA256 = common_pb2.HASH_ALGORITHM_SHA256

ALL_OPERATOR_RIGHTS = (
    identity_pb2.OPERATOR_RIGHT_SIGN,
    identity_pb2.OPERATOR_RIGHT_MANAGE_CERTIFICATES,
    identity_pb2.OPERATOR_RIGHT_MANAGE_ACCOUNT,
    identity_pb2.OPERATOR_RIGHT_MANAGE_AUTO_SIGN,
)


class Inbox(Protocol):
    """Where the people of a flow receive one-time codes and verification transfers.

    Each ``expect_*`` is called just before the platform sends something and returns a
    ``wait(timeout_seconds)`` for exactly that message, raising TimeoutError when it does
    not come.
    """

    def expect_code(self, channel: str, destination: str) -> Callable[[float], str]:
        """Prepare to receive a code by ``channel`` ("sms" or "email") at ``destination``."""
        ...

    def expect_transfer(self, credit_code: str) -> Callable[[float], int]:
        """Prepare to read the amount (fen) of a verification transfer to an enterprise."""
        ...


@dataclass(frozen=True)
class Signatory:
    """Who signs: an account, its certified HSM key, and where its confirmer gets codes.

    For an enterprise the confirmer is its operator (``operator_account_id``), and the
    phone and email are the operator's.
    """

    tenant_id: str
    account_id: str
    key_id: str
    certificate_serial: str
    certificate_chain_der: tuple[bytes, ...]
    phone: str
    email: str
    operator_account_id: str = ""


@dataclass(frozen=True)
class Person:
    """An onboarded person: verified account and signing certificate."""

    account: identity_pb2.Account
    certificate: ca_gateway_pb2.Certificate
    chain_der: tuple[bytes, ...]
    phone: str
    email: str

    @property
    def account_id(self) -> str:
        """The account id."""
        return self.account.account_id

    @property
    def signatory(self) -> Signatory:
        """The person as a signing party."""
        return Signatory(
            tenant_id=self.account.tenant_id,
            account_id=self.account.account_id,
            key_id=self.certificate.key_id,
            certificate_serial=self.certificate.serial,
            certificate_chain_der=(self.certificate.der, *self.chain_der),
            phone=self.phone,
            email=self.email,
        )


@dataclass(frozen=True)
class Enterprise:
    """An onboarded enterprise: verified account, its operator and its seal certificate."""

    account: identity_pb2.Account
    operator: Person
    authorization: identity_pb2.OperatorAuthorization
    certificate: ca_gateway_pb2.Certificate
    chain_der: tuple[bytes, ...]

    @property
    def account_id(self) -> str:
        """The account id."""
        return self.account.account_id

    @property
    def signatory(self) -> Signatory:
        """The enterprise seal as a signing party, confirmed by its operator."""
        return Signatory(
            tenant_id=self.account.tenant_id,
            account_id=self.account.account_id,
            key_id=self.certificate.key_id,
            certificate_serial=self.certificate.serial,
            certificate_chain_der=(self.certificate.der, *self.chain_der),
            phone=self.operator.phone,
            email=self.operator.email,
            operator_account_id=self.operator.account_id,
        )


@dataclass(frozen=True)
class Grant:
    """A confirmed willingness check and the single-use signing grant it yielded."""

    willingness_id: str
    grant: identity_pb2.SigningGrant


@dataclass(frozen=True)
class SignedPdf:
    """A PDF signed by one party (it contains every earlier signature too)."""

    pdf: bytes
    signature_id: str
    grant_id: str
    document_digest: bytes
    signing_time: datetime
    certificate_serial: str
    transaction_id: str
    field_name: str


@dataclass(frozen=True)
class EvidenceBundle:
    """An exported evidence package and the public material that verifies it offline."""

    package: bytes
    file_name: str
    package_sha256: bytes
    entry_count: int
    log_public_key_spki: bytes
    log_public_key_pem: str
    ca_certificates_der: tuple[bytes, ...]


@dataclass(frozen=True)
class EvidenceVerification:
    """The offline verifier's verdict on a package."""

    passed: bool
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)


@dataclass(frozen=True)
class Webhook:
    """A registered webhook endpoint and its signing secret (shown only at registration)."""

    endpoint: notify_pb2.WebhookEndpoint
    secret: str


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``: the digest grants and evidence name documents by."""
    return hashlib.sha256(data).digest()


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _flow_error(step: str, message: str, code: grpc.StatusCode) -> SignetError:
    return SignetError(code, message, step)


class Flows:
    """The flows over one :class:`Signet` client; codes come from ``inbox``.

    ``code_timeout`` bounds the wait for each code or transfer to arrive.
    """

    def __init__(self, client: Signet, inbox: Inbox, *, code_timeout: float = 60.0) -> None:
        self.client = client
        self.inbox = inbox
        self.code_timeout = code_timeout

    # ---- tenants and accounts ---------------------------------------------------------

    def create_tenant(self, name: str) -> identity_pb2.Tenant:
        """A new tenant (a business customer of the platform)."""
        reply = self.client.identity.CreateTenant(identity_pb2.CreateTenantRequest(name=name))
        return reply.tenant

    def _wait(self, wait: Callable[[float], str | int], step: str) -> str | int:
        try:
            return wait(self.code_timeout)
        except TimeoutError as err:
            raise _flow_error(step, str(err), grpc.StatusCode.DEADLINE_EXCEEDED) from None

    def onboard_person(
        self,
        tenant_id: str,
        *,
        name: str,
        id_number: str,
        phone: str,
        email: str,
        locale: str = "en",
        key_algorithm: common_pb2.KeyAlgorithm.ValueType = common_pb2.KEY_ALGORITHM_EC_P256,
    ) -> Person:
        """Register a person, verify them (ID + phone code) and issue their certificate."""
        identity = self.client.identity
        account = identity.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=tenant_id,
                person=identity_pb2.PersonRegistration(name=name, phone=phone, email=email),
                locale=locale,
            )
        ).account
        wait = self.inbox.expect_code("sms", phone)
        started = identity.StartRealNameVerification(
            identity_pb2.StartRealNameVerificationRequest(
                account_id=account.account_id,
                person_id_phone=identity_pb2.PersonIdPhoneInput(
                    name=name, id_number=id_number, phone=phone
                ),
            )
        )
        if started.failure_reason:
            raise _flow_error(
                "StartRealNameVerification",
                "verification refused: "
                + identity_pb2.VerificationFailureReason.Name(started.failure_reason),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        code = str(self._wait(wait, "real-name code"))
        done = identity.CompleteRealNameVerification(
            identity_pb2.CompleteRealNameVerificationRequest(
                verification_id=started.verification_id, one_time_code=code
            )
        )
        self._require_verified(done)
        certificate, chain = self._issue(
            tenant_id,
            account.account_id,
            ca_gateway_pb2.CERTIFICATE_PROFILE_PERSON_SIGNING,
            key_algorithm,
        )
        return Person(done.account, certificate, chain, phone, email)

    def onboard_enterprise(
        self,
        tenant_id: str,
        operator: Person,
        *,
        name: str,
        credit_code: str,
        legal_representative_name: str,
        contact_phone: str,
        contact_email: str,
        authorization_days: int = 365,
        locale: str = "en",
        key_algorithm: common_pb2.KeyAlgorithm.ValueType = common_pb2.KEY_ALGORITHM_EC_P256,
    ) -> Enterprise:
        """Register an enterprise, authorise ``operator``, verify it, issue its seal certificate.

        The operator receives every right (sign, certificates, account, automatic signing)
        for ``authorization_days``; verification uses the registry check plus the amount
        of the verification transfer, which the inbox reads off the bank statement.
        """
        identity = self.client.identity
        account = identity.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=tenant_id,
                enterprise=identity_pb2.EnterpriseRegistration(
                    enterprise_name=name,
                    credit_code=credit_code,
                    legal_representative_name=legal_representative_name,
                    contact_phone=contact_phone,
                    contact_email=contact_email,
                ),
                locale=locale,
            )
        ).account
        now = datetime.now(UTC)
        authorization = identity.GrantOperatorAuthorization(
            identity_pb2.GrantOperatorAuthorizationRequest(
                enterprise_account_id=account.account_id,
                operator_account_id=operator.account_id,
                rights=ALL_OPERATOR_RIGHTS,
                valid_from=_timestamp(now - timedelta(minutes=1)),
                valid_until=_timestamp(now + timedelta(days=authorization_days)),
            )
        ).authorization
        wait = self.inbox.expect_transfer(credit_code)
        started = identity.StartRealNameVerification(
            identity_pb2.StartRealNameVerificationRequest(
                account_id=account.account_id,
                enterprise=identity_pb2.EnterpriseInput(
                    enterprise_name=name,
                    credit_code=credit_code,
                    legal_representative_name=legal_representative_name,
                    operator_account_id=operator.account_id,
                    operator_authorization_id=authorization.authorization_id,
                ),
            )
        )
        if started.failure_reason:
            raise _flow_error(
                "StartRealNameVerification",
                "verification refused: "
                + identity_pb2.VerificationFailureReason.Name(started.failure_reason),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        amount = int(self._wait(wait, "verification transfer"))
        done = identity.CompleteRealNameVerification(
            identity_pb2.CompleteRealNameVerificationRequest(
                verification_id=started.verification_id,
                enterprise=identity_pb2.EnterpriseProof(transfer_amount_fen=amount),
            )
        )
        self._require_verified(done)
        certificate, chain = self._issue(
            tenant_id,
            account.account_id,
            ca_gateway_pb2.CERTIFICATE_PROFILE_ENTERPRISE_SEAL,
            key_algorithm,
            operator_account_id=operator.account_id,
        )
        return Enterprise(done.account, operator, authorization, certificate, chain)

    @staticmethod
    def _require_verified(done: identity_pb2.CompleteRealNameVerificationResponse) -> None:
        if done.status != identity_pb2.VERIFICATION_STATUS_VERIFIED:
            reason = identity_pb2.VerificationFailureReason.Name(done.failure_reason)
            raise _flow_error(
                "CompleteRealNameVerification",
                f"verification not completed: {reason}",
                grpc.StatusCode.FAILED_PRECONDITION,
            )

    def _issue(
        self,
        tenant_id: str,
        account_id: str,
        profile: ca_gateway_pb2.CertificateProfile.ValueType,
        key_algorithm: common_pb2.KeyAlgorithm.ValueType,
        operator_account_id: str = "",
    ) -> tuple[ca_gateway_pb2.Certificate, tuple[bytes, ...]]:
        reply = self.client.ca_gateway.IssueCertificate(
            ca_gateway_pb2.IssueCertificateRequest(
                tenant_id=tenant_id,
                account_id=account_id,
                profile=profile,
                key_algorithm=key_algorithm,
                operator_account_id=operator_account_id,
            )
        )
        return reply.certificate, tuple(reply.chain_der)

    # ---- willingness and signing -------------------------------------------------------

    def confirm_willingness(
        self,
        signatory: Signatory,
        digests: Sequence[bytes],
        *,
        transaction_id: str = "",
        method: identity_pb2.WillingnessMethod.ValueType = identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
        code: str | None = None,
    ) -> Grant:
        """Run a willingness check over ``digests`` (SHA-256) and return its signing grant.

        The code goes to the signatory's phone (SMS) or email and is read from the inbox,
        unless ``code`` is given (e.g. to show what a wrong code does).
        """
        identity = self.client.identity
        channel = "email" if method == identity_pb2.WILLINGNESS_METHOD_EMAIL_CODE else "sms"
        destination = signatory.email if channel == "email" else signatory.phone
        wait = self.inbox.expect_code(channel, destination)
        started = identity.StartWillingness(
            identity_pb2.StartWillingnessRequest(
                account_id=signatory.account_id,
                key_id=signatory.key_id,
                digests=[common_pb2.Digest(algorithm=SHA256, value=d) for d in digests],
                method=method,
                operator_account_id=signatory.operator_account_id,
                transaction_id=transaction_id,
            )
        )
        if code is None:
            code = str(self._wait(wait, "willingness code"))
        confirmed = identity.ConfirmWillingness(
            identity_pb2.ConfirmWillingnessRequest(
                willingness_id=started.willingness_id, one_time_code=code
            )
        )
        if confirmed.status != identity_pb2.WILLINGNESS_STATUS_CONFIRMED:
            status = identity_pb2.WillingnessStatus.Name(confirmed.status)
            raise _flow_error(
                "ConfirmWillingness",
                f"willingness not confirmed: {status}",
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        return Grant(started.willingness_id, confirmed.grant)

    def sign_pdf_with_grant(
        self,
        signatory: Signatory,
        pdf: bytes,
        grant: identity_pb2.SigningGrant,
        *,
        transaction_id: str,
        field_name: str,
        level: signer_pb2.SignatureLevel.ValueType = signer_pb2.SIGNATURE_LEVEL_B_B,
        reason: str = "",
    ) -> SignedPdf:
        """PAdES-sign ``pdf`` with ``grant`` (which must name its SHA-256) in the HSM."""
        reply = self.client.signer.SignDocument(
            signer_pb2.SignDocumentRequest(
                key_id=signatory.key_id,
                grant=grant.token,
                format=signer_pb2.DOCUMENT_FORMAT_PADES,
                document=pdf,
                hash_algorithm=SHA256,
                certificate_chain_der=list(signatory.certificate_chain_der),
                level=level,
                pades=signer_pb2.PadesOptions(field_name=field_name, reason=reason),
                transaction_id=transaction_id,
            )
        )
        return SignedPdf(
            pdf=reply.signed_output,
            signature_id=reply.signature_id,
            grant_id=grant.grant_id,
            document_digest=reply.document_digest.value,
            signing_time=reply.signing_time.ToDatetime(tzinfo=UTC),
            certificate_serial=reply.certificate_serial,
            transaction_id=transaction_id,
            field_name=field_name,
        )

    def sign_pdf(
        self,
        signatory: Signatory,
        pdf: bytes,
        *,
        transaction_id: str,
        field_name: str,
        method: identity_pb2.WillingnessMethod.ValueType = identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
        level: signer_pb2.SignatureLevel.ValueType = signer_pb2.SIGNATURE_LEVEL_B_B,
        reason: str = "",
    ) -> SignedPdf:
        """Willingness check over the PDF's digest, then its PAdES signature.

        To sign after another party, pass the PDF that party's :class:`SignedPdf` holds.
        ``field_name`` must differ per party.
        """
        grant = self.confirm_willingness(
            signatory, [sha256(pdf)], transaction_id=transaction_id, method=method
        )
        return self.sign_pdf_with_grant(
            signatory,
            pdf,
            grant.grant,
            transaction_id=transaction_id,
            field_name=field_name,
            level=level,
            reason=reason,
        )

    # ---- automatic signing -------------------------------------------------------------

    def authorize_auto_sign(
        self,
        signatory: Signatory,
        *,
        business_scope: str,
        authorization_text: str,
        max_uses: int,
        valid_for: timedelta,
        method: identity_pb2.WillingnessMethod.ValueType = identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
    ) -> identity_pb2.AutoSignAuthorization:
        """A standing authorisation for unattended signing, confirmed by a willingness check.

        The signatory confirms the digest of ``authorization_text`` (what the product showed
        them); the grant of that check is consumed by the authorisation.
        """
        digest = sha256(authorization_text.encode("utf-8"))
        grant = self.confirm_willingness(signatory, [digest], method=method)
        now = datetime.now(UTC)
        reply = self.client.identity.CreateAutoSignAuthorization(
            identity_pb2.CreateAutoSignAuthorizationRequest(
                account_id=signatory.account_id,
                key_id=signatory.key_id,
                business_scope=business_scope,
                valid_from=_timestamp(now - timedelta(minutes=1)),
                valid_until=_timestamp(now + valid_for),
                max_uses=max_uses,
                confirmation_grant=grant.grant.token,
                authorization_text_digest=common_pb2.Digest(algorithm=SHA256, value=digest),
                operator_account_id=signatory.operator_account_id,
            )
        )
        return reply.authorization

    def auto_sign_pdf(
        self,
        signatory: Signatory,
        authorization_id: str,
        pdf: bytes,
        *,
        transaction_id: str,
        field_name: str,
        request_id: str = "",
        level: signer_pb2.SignatureLevel.ValueType = signer_pb2.SIGNATURE_LEVEL_B_B,
    ) -> SignedPdf:
        """Seal ``pdf`` unattended: one grant from the authorisation, then PAdES.

        ``request_id`` makes the grant request idempotent (a retry counts one use); a fresh
        one is made when empty.
        """
        issued = self.client.identity.IssueAutoSignGrant(
            identity_pb2.IssueAutoSignGrantRequest(
                authorization_id=authorization_id,
                digests=[common_pb2.Digest(algorithm=SHA256, value=sha256(pdf))],
                transaction_id=transaction_id,
                request_id=request_id or _new_id("auto"),
            )
        )
        return self.sign_pdf_with_grant(
            signatory,
            pdf,
            issued.grant,
            transaction_id=transaction_id,
            field_name=field_name,
            level=level,
        )

    # ---- evidence ----------------------------------------------------------------------

    def evidence_entries(
        self, transaction_id: str, event_type: str = "", tenant_id: str = ""
    ) -> list[evidence_pb2.Entry]:
        """Every integrated log entry of ``transaction_id`` (of ``event_type``, when given)."""
        entries: list[evidence_pb2.Entry] = []
        token = ""
        while True:
            reply = self.client.evidence.GetEntries(
                evidence_pb2.GetEntriesRequest(
                    transaction_id=transaction_id,
                    event_type=event_type,
                    tenant_id=tenant_id,
                    page_size=500,
                    page_token=token,
                )
            )
            entries.extend(reply.entries)
            token = reply.next_page_token
            if not token:
                return entries

    def wait_for_evidence(
        self,
        transaction_id: str,
        *,
        signatures: int,
        timeout: float = 60.0,
        poll_seconds: float = 0.5,
        tenant_id: str = "",
    ) -> list[evidence_pb2.Entry]:
        """Wait until the log holds ``signatures`` signatures of the transaction.

        Their willingness confirmations must be there too: events reach the log through
        Kafka, a moment after the call that caused them. Returns the SignatureCreated
        entries; DEADLINE_EXCEEDED when they do not all come in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            signed = self.evidence_entries(transaction_id, SIGNATURE_CREATED, tenant_id)
            confirmed = self.evidence_entries(transaction_id, WILLINGNESS_CONFIRMED, tenant_id)
            if len(signed) >= signatures and len(confirmed) >= signatures:
                return signed
            if time.monotonic() > deadline:
                raise _flow_error(
                    "wait_for_evidence",
                    f"the log holds {len(signed)} of {signatures} signatures and "
                    f"{len(confirmed)} willingness confirmations after {timeout:.0f}s",
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
            time.sleep(poll_seconds)

    def trust_roots(self) -> tuple[bytes, ...]:
        """The platform's root CA certificates (DER), as relying parties trust them."""
        reply = self.client.ca_gateway.GetCaCertificates(ca_gateway_pb2.GetCaCertificatesRequest())
        return tuple(c.der for c in reply.certificates if c.role == ca_gateway_pb2.CA_ROLE_ROOT)

    def export_evidence(self, transaction_id: str, tenant_id: str = "") -> EvidenceBundle:
        """The transaction's evidence package with the log key and the CA roots."""
        exported = self.client.evidence.ExportEvidencePackage(
            evidence_pb2.ExportEvidencePackageRequest(
                transaction_id=transaction_id, tenant_id=tenant_id
            )
        )
        if hashlib.sha256(exported.package).digest() != exported.package_sha256:
            raise _flow_error(
                "ExportEvidencePackage",
                "the package does not match its SHA-256 (damaged in transit)",
                grpc.StatusCode.DATA_LOSS,
            )
        log_key = self.client.evidence.GetLogPublicKey(evidence_pb2.GetLogPublicKeyRequest())
        return EvidenceBundle(
            package=exported.package,
            file_name=exported.file_name,
            package_sha256=exported.package_sha256,
            entry_count=exported.entry_count,
            log_public_key_spki=log_key.spki_der,
            log_public_key_pem=log_key.pem,
            ca_certificates_der=self.trust_roots(),
        )

    # ---- webhooks ----------------------------------------------------------------------

    def register_webhook(
        self, tenant_id: str, url: str, event_types: Sequence[str] = (), description: str = ""
    ) -> Webhook:
        """Register a tenant's webhook endpoint (every event type when none are named)."""
        reply = self.client.notify.RegisterWebhookEndpoint(
            notify_pb2.RegisterWebhookEndpointRequest(
                tenant_id=tenant_id,
                url=url,
                event_types=list(event_types),
                description=description,
            )
        )
        return Webhook(reply.endpoint, reply.secret)


def verify_evidence(bundle: EvidenceBundle) -> EvidenceVerification:
    """Verify ``bundle`` offline with the evidence verifier: no server is asked anything."""
    passed, checks = verify_package(
        bundle.package,
        log_key_spki=bundle.log_public_key_spki,
        ca_certificates=list(bundle.ca_certificates_der),
    )
    return EvidenceVerification(passed, tuple(checks))


def verify_webhook(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """Check a webhook delivery's HMAC signature and freshness; returns its delivery id.

    Raises SignetError (UNAUTHENTICATED) when the delivery is not authentic.
    """
    try:
        return webhooks.verify(secret, body, headers)
    except webhooks.WebhookVerificationError as err:
        raise SignetError(grpc.StatusCode.UNAUTHENTICATED, str(err), "verify_webhook") from None
