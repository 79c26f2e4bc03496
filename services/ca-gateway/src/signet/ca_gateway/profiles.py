"""Certificate profiles as data: key usage, extended key usage, validity, who may hold one.

Adding a profile is adding a row here (and its enum value in the API); the certificate
builder has no per-profile code paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from signet.ca_gateway.domain import AccountType, CertificateProfile
from signet.common.errors import InvalidArgument


@dataclass(frozen=True)
class Profile:
    """The contents and limits of one kind of end-entity certificate."""

    name: CertificateProfile
    # The account type that may hold it; None for system certificates (platform components).
    account_type: AccountType | None
    # asn1crypto KeyUsage bit names.
    key_usage: frozenset[str]
    # asn1crypto KeyPurposeId names; empty = no extension.
    extended_key_usage: tuple[str, ...]
    extended_key_usage_critical: bool
    # id-pkix-ocsp-nocheck: relying parties do not check the responder's own status.
    ocsp_no_check: bool
    default_validity: timedelta
    max_validity: timedelta
    # Purpose of the signer key created for it (signer's KeyPurpose value).
    key_purpose: str
    # How long before expiry automatic renewal runs, unless the subscriber chose otherwise.
    default_renew_before: timedelta

    @property
    def is_system(self) -> bool:
        """Whether platform components, not subscribers, hold this kind of certificate."""
        return self.account_type is None

    def validity(self, requested: timedelta | None) -> timedelta:
        """The validity to issue with: the request's, capped by the profile, or the default."""
        if requested is None:
            return self.default_validity
        if requested < timedelta(hours=1):
            raise InvalidArgument("validity must be at least one hour")
        return min(requested, self.max_validity)


def _subscriber(name: CertificateProfile, account_type: AccountType) -> Profile:
    """A subscriber's signing certificate: digitalSignature and nonRepudiation, one year."""
    return Profile(
        name=name,
        account_type=account_type,
        key_usage=frozenset({"digital_signature", "non_repudiation"}),
        extended_key_usage=(),
        extended_key_usage_critical=False,
        ocsp_no_check=False,
        default_validity=timedelta(days=365),
        max_validity=timedelta(days=3 * 365),
        key_purpose="subscriber_signing",
        default_renew_before=timedelta(days=30),
    )


PROFILES: dict[CertificateProfile, Profile] = {
    CertificateProfile.PERSON_SIGNING: _subscriber(
        CertificateProfile.PERSON_SIGNING, AccountType.PERSON
    ),
    CertificateProfile.ENTERPRISE_SEAL: _subscriber(
        CertificateProfile.ENTERPRISE_SEAL, AccountType.ENTERPRISE
    ),
    CertificateProfile.TIMESTAMPING: Profile(
        name=CertificateProfile.TIMESTAMPING,
        account_type=None,
        key_usage=frozenset({"digital_signature", "non_repudiation"}),
        # RFC 3161 section 2.3: the only EKU, and critical.
        extended_key_usage=("time_stamping",),
        extended_key_usage_critical=True,
        ocsp_no_check=False,
        default_validity=timedelta(days=5 * 365),
        max_validity=timedelta(days=10 * 365),
        key_purpose="timestamping",
        default_renew_before=timedelta(days=90),
    ),
    CertificateProfile.OCSP_RESPONDER: Profile(
        name=CertificateProfile.OCSP_RESPONDER,
        account_type=None,
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=("ocsp_signing",),
        extended_key_usage_critical=False,
        # RFC 6960 section 4.2.2.2.1: short-lived and not itself checked.
        ocsp_no_check=True,
        default_validity=timedelta(days=90),
        max_validity=timedelta(days=365),
        key_purpose="ocsp_signing",
        default_renew_before=timedelta(days=30),
    ),
}


def profile_for(name: CertificateProfile) -> Profile:
    """The profile called ``name``."""
    return PROFILES[name]
