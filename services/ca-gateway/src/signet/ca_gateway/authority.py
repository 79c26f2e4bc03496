"""Where certificates come from: the CA interface, and the built-in CA behind it.

The gateway is a registration authority: it checks who asks, keeps the records, answers
status questions and publishes events. Signing a certificate is the CA's job, behind
:class:`CertificateAuthority`, so a third-party CA can take over by implementing that
interface (an adapter that sends the order to the upstream CA and returns its DER).

:class:`BuiltinCa` is the CA that ships with Signet: a root and an issuing CA whose keys
were generated in the HSM through the signer (system owner ``ca-gateway``), bootstrapped
on first start by :func:`ensure_builtin_ca`. It also signs the CRLs and is the issuer the
OCSP responder answers for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from asn1crypto import x509

from signet.ca_gateway import certs
from signet.ca_gateway.certs import CertificateTemplate, Extensions, Issuer
from signet.ca_gateway.domain import CaRole, serial_hex
from signet.ca_gateway.models import CaCertificateRecord
from signet.ca_gateway.ports import CA_OWNER, KeyService
from signet.ca_gateway.profiles import Profile
from signet.ca_gateway.repository import CaCertificateRepository
from signet.common.db import Database
from signet.common.errors import AlreadyExists
from signet.common.keys import KeyAlgorithm

_log = logging.getLogger("signet.ca_gateway.authority")


@dataclass(frozen=True)
class PublicUrls:
    """Where relying parties reach the gateway's HTTP endpoints."""

    base_url: str

    def crl(self, ca_id: str) -> str:
        """The CRL of ``ca_id`` (DER)."""
        return f"{self.base_url}/crl/{ca_id}.crl"

    def ca_certificate(self, ca_id: str) -> str:
        """The certificate of ``ca_id`` (DER), for AIA caIssuers."""
        return f"{self.base_url}/ca/{ca_id}.crt"

    @property
    def ocsp(self) -> str:
        """The OCSP responder."""
        return f"{self.base_url}/ocsp"


@dataclass(frozen=True)
class IssueOrder:
    """What the gateway asks a CA to certify, everything already checked."""

    serial: int
    subject: x509.Name
    spki_der: bytes
    not_before: datetime
    not_after: datetime
    profile: Profile


class CertificateAuthority(Protocol):
    """A CA that signs the certificates the gateway approved."""

    @property
    def ca_id(self) -> str:
        """Stable id of the issuing CA (recorded with each certificate)."""
        ...

    @property
    def issuer_name(self) -> str:
        """The issuing CA's subject in RFC 4514 form."""
        ...

    def chain(self) -> tuple[bytes, ...]:
        """The CA certificates above an end-entity certificate: issuing CA first, root last."""
        ...

    def issue(self, order: IssueOrder) -> bytes:
        """Sign the certificate ``order`` describes; return its DER."""
        ...

    def revoked(self, serial: int, revoked_at: datetime, rfc_reason: int) -> None:
        """Tell the CA that the gateway revoked ``serial`` (an upstream CA publishes it)."""
        ...


@dataclass(frozen=True)
class CaKey:
    """One CA of the built-in hierarchy: its certificate and its key in the HSM."""

    ca_id: str
    role: CaRole
    key_id: str
    algorithm: KeyAlgorithm
    der: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.Certificate.load(self.der)

    @property
    def name(self) -> x509.Name:
        """The CA's subject, the issuer of what it signs."""
        return self.certificate.subject

    @property
    def not_after(self) -> datetime:
        """When the CA certificate expires."""
        value: datetime = self.certificate.not_valid_after
        return value

    @classmethod
    def of(cls, record: CaCertificateRecord) -> CaKey:
        """The CA a stored record describes."""
        return cls(
            ca_id=record.ca_id,
            role=CaRole(record.role),
            key_id=record.key_id,
            algorithm=KeyAlgorithm(record.key_algorithm),
            der=record.der,
        )


def hsm_issuer(ca: CaKey, keys: KeyService) -> Issuer:
    """An :class:`~signet.ca_gateway.certs.Issuer` that signs with ``ca``'s key in the HSM."""
    spki = ca.certificate.public_key.dump()
    return Issuer(
        name=ca.name,
        key_id=certs.key_identifier(spki),
        spec=certs.signature_spec(ca.algorithm),
        sign_digest=lambda digest, h, scheme: keys.sign_digest(ca.key_id, digest, h, scheme),
    )


@dataclass(frozen=True)
class BuiltinCa:
    """The CA that ships with Signet: certificates signed by the issuing CA's HSM key."""

    keys: KeyService
    root: CaKey
    issuing: CaKey
    urls: PublicUrls
    policy_oid: str = ""
    cps_url: str = ""

    @property
    def ca_id(self) -> str:
        """The issuing CA's id."""
        return self.issuing.ca_id

    @property
    def issuer_name(self) -> str:
        """The issuing CA's subject."""
        return certs.subject_text(self.issuing.name)

    def chain(self) -> tuple[bytes, ...]:
        """Issuing CA, then root."""
        return (self.issuing.der, self.root.der)

    def issuer(self, ca_id: str) -> Issuer:
        """The signing side of one of the hierarchy's CAs (for CRLs and certificates)."""
        ca = self.by_id(ca_id)
        return hsm_issuer(ca, self.keys)

    def by_id(self, ca_id: str) -> CaKey:
        """The CA called ``ca_id`` (the root or the issuing CA)."""
        for ca in (self.root, self.issuing):
            if ca.ca_id == ca_id:
                return ca
        raise KeyError(ca_id)

    def issue(self, order: IssueOrder) -> bytes:
        """A subscriber or system certificate from the issuing CA."""
        profile = order.profile
        template = CertificateTemplate(
            serial=order.serial,
            subject=order.subject,
            spki_der=order.spki_der,
            not_before=order.not_before,
            not_after=min(order.not_after, self.issuing.not_after),
            extensions=Extensions(
                is_ca=False,
                path_length=None,
                key_usage=profile.key_usage,
                extended_key_usage=profile.extended_key_usage,
                extended_key_usage_critical=profile.extended_key_usage_critical,
                ocsp_no_check=profile.ocsp_no_check,
                crl_url=self.urls.crl(self.issuing.ca_id),
                # The responder does not answer for its own certificate (it has nocheck).
                ocsp_url="" if profile.ocsp_no_check else self.urls.ocsp,
                ca_issuers_url=self.urls.ca_certificate(self.issuing.ca_id),
                policy_oid=self.policy_oid,
                cps_url=self.cps_url,
            ),
        )
        return certs.issue_certificate(template, hsm_issuer(self.issuing, self.keys))

    def revoked(self, serial: int, revoked_at: datetime, rfc_reason: int) -> None:
        """Nothing to forward: the gateway's own CRL and OCSP read the revocation store."""


@dataclass(frozen=True)
class HierarchySettings:
    """How the built-in hierarchy is made at first start."""

    organization: str
    country: str
    root_ca_id: str
    issuing_ca_id: str
    root_algorithm: KeyAlgorithm
    issuing_algorithm: KeyAlgorithm
    root_validity: timedelta
    issuing_validity: timedelta
    policy_oid: str
    cps_url: str


def ensure_builtin_ca(
    db: Database,
    keys: KeyService,
    settings: HierarchySettings,
    urls: PublicUrls,
    clock: Callable[[], datetime],
) -> BuiltinCa:
    """The built-in CA, bootstrapping its root and issuing CA the first time.

    Safe when several replicas start at once: the signer's CreateKey is idempotent on the
    request id (every replica gets the same key), and the first CA certificate stored
    wins; the others read it back.
    """
    root = _ensure(
        db,
        settings.root_ca_id,
        lambda: _make_root(keys, settings, urls, clock()),
    )
    issuing = _ensure(
        db,
        settings.issuing_ca_id,
        lambda: _make_issuing(keys, settings, urls, root, clock()),
    )
    return BuiltinCa(
        keys=keys,
        root=root,
        issuing=issuing,
        urls=urls,
        policy_oid=settings.policy_oid,
        cps_url=settings.cps_url,
    )


def _ensure(db: Database, ca_id: str, make: Callable[[], CaCertificateRecord]) -> CaKey:
    with db.session() as session:
        found = CaCertificateRepository(session).get(ca_id)
        if found is not None:
            return CaKey.of(found)
    record = make()
    try:
        with db.session() as session:
            CaCertificateRepository(session).add(record)
            _log.info("created CA certificate", extra={"ca_id": ca_id, "role": record.role})
            return CaKey.of(record)
    except AlreadyExists:
        with db.session() as session:
            stored = CaCertificateRepository(session).get(ca_id)
            assert stored is not None
            return CaKey.of(stored)


def _ca_name(settings: HierarchySettings, common_name: str) -> x509.Name:
    return certs.build_name(
        [
            ("country_name", settings.country),
            ("organization_name", settings.organization),
            ("common_name", common_name),
        ]
    )


def _record(
    ca_id: str, role: CaRole, issuer_ca_id: str, key_id: str, algorithm: KeyAlgorithm, der: bytes
) -> CaCertificateRecord:
    cert = x509.Certificate.load(der)
    return CaCertificateRecord(
        ca_id=ca_id,
        role=role.value,
        issuer_ca_id=issuer_ca_id,
        key_id=key_id,
        key_algorithm=algorithm.value,
        serial=serial_hex(cert.serial_number),
        subject=certs.subject_text(cert.subject),
        der=der,
        not_before=cert.not_valid_before,
        not_after=cert.not_valid_after,
    )


def _make_root(
    keys: KeyService, settings: HierarchySettings, urls: PublicUrls, now: datetime
) -> CaCertificateRecord:
    key = keys.create_key(
        algorithm=settings.root_algorithm,
        purpose="ca_signing",
        system_owner=CA_OWNER,
        request_id=f"{CA_OWNER}:{settings.root_ca_id}",
    )
    template = CertificateTemplate(
        serial=certs.new_serial(),
        subject=_ca_name(settings, f"{settings.organization} Root CA"),
        spki_der=key.spki_der,
        not_before=now - timedelta(minutes=5),
        not_after=now + settings.root_validity,
        extensions=Extensions(
            is_ca=True, path_length=1, key_usage=frozenset({"key_cert_sign", "crl_sign"})
        ),
    )
    spec = certs.signature_spec(key.algorithm)
    issuer = certs.self_issuer(
        template,
        spec,
        lambda digest, h, scheme: keys.sign_digest(key.key_id, digest, h, scheme),
    )
    der = certs.issue_certificate(template, issuer)
    return _record(
        settings.root_ca_id, CaRole.ROOT, settings.root_ca_id, key.key_id, key.algorithm, der
    )


def _make_issuing(
    keys: KeyService,
    settings: HierarchySettings,
    urls: PublicUrls,
    root: CaKey,
    now: datetime,
) -> CaCertificateRecord:
    key = keys.create_key(
        algorithm=settings.issuing_algorithm,
        purpose="ca_signing",
        system_owner=CA_OWNER,
        request_id=f"{CA_OWNER}:{settings.issuing_ca_id}",
    )
    template = CertificateTemplate(
        serial=certs.new_serial(),
        subject=_ca_name(settings, f"{settings.organization} Issuing CA {settings.issuing_ca_id}"),
        spki_der=key.spki_der,
        not_before=now - timedelta(minutes=5),
        not_after=min(now + settings.issuing_validity, root.not_after),
        extensions=Extensions(
            is_ca=True,
            path_length=0,
            key_usage=frozenset({"key_cert_sign", "crl_sign"}),
            crl_url=urls.crl(root.ca_id),
            ca_issuers_url=urls.ca_certificate(root.ca_id),
            policy_oid=settings.policy_oid,
            cps_url=settings.cps_url,
        ),
    )
    der = certs.issue_certificate(template, hsm_issuer(root, keys))
    return _record(
        settings.issuing_ca_id, CaRole.ISSUING, root.ca_id, key.key_id, key.algorithm, der
    )
