"""Third-party identity checks, one interface per kind of check.

The platform asks providers whether identity elements belong together (carrier: name, ID
number and phone; bank: the four card elements; business registry: enterprise name,
credit code and legal representative) and runs face matches with liveness on their pages.
It keeps only the outcome and the provider's reference, never images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from signet.identity.models import FailureReason


class ProviderUnavailable(Exception):
    """The provider could not be reached or gave no usable answer (nothing is known)."""


@dataclass(frozen=True)
class CheckResult:
    """A provider's answer: whether the elements matched, its reference, why not."""

    provider: str
    matched: bool
    reference: str
    reason: FailureReason | None = None


@dataclass(frozen=True)
class FaceSession:
    """A face-capture session opened at the provider."""

    provider: str
    session_token: str
    url: str
    reference: str


class CarrierCheck(Protocol):
    """Mobile carrier: are name, ID number and phone registered together."""

    def check_phone(self, name: str, id_number: str, phone: str) -> CheckResult:
        """Ask the carrier; ProviderUnavailable when it cannot answer."""
        ...


class BankCardCheck(Protocol):
    """Bank card four elements: name, ID number, card number, bank-reserved phone."""

    def check_bank_card(
        self, name: str, id_number: str, card_number: str, phone: str
    ) -> CheckResult:
        """Ask the bank network; ProviderUnavailable when it cannot answer."""
        ...


class FaceMatch(Protocol):
    """Face match with liveness against the ID photo, on the provider's capture page."""

    def start_session(self, name: str, id_number: str, return_url: str) -> FaceSession:
        """Open a capture session for the person."""
        ...

    def session_result(self, session_token: str) -> CheckResult:
        """The outcome of a finished session (FACE_MISMATCH or LIVENESS_FAILED on failure)."""
        ...


class EnterpriseRegistry(Protocol):
    """Business registry plus a verification transfer to the enterprise's bank account."""

    def check_enterprise(
        self, enterprise_name: str, credit_code: str, legal_representative_name: str
    ) -> CheckResult:
        """Do name, credit code and legal representative match the registry."""
        ...

    def send_verification_transfer(self, credit_code: str, amount_fen: int) -> str:
        """Send ``amount_fen`` to the enterprise's registered account; returns a reference."""
        ...


@dataclass(frozen=True)
class Providers:
    """The configured provider of each kind of check."""

    carrier: CarrierCheck
    bank_card: BankCardCheck
    face: FaceMatch
    registry: EnterpriseRegistry
