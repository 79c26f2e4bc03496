"""What the CA gateway needs from other services, as interfaces.

The gateway never touches the HSM or identity's data: keys are made, read, used and
disabled through the signer (:class:`KeyService`), accounts are looked up in identity
(:class:`AccountDirectory`). :mod:`signet.ca_gateway.clients` implements both over gRPC;
tests may put in-process doubles behind them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from signet.ca_gateway.domain import AccountInfo, KeyInfo
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme

CA_OWNER = "ca-gateway"
"""System owner of the CA's own keys (root, issuing CA, OCSP responder) in the signer."""


class KeyService(Protocol):
    """Keys in the HSM, through the signer."""

    def create_key(
        self,
        *,
        algorithm: KeyAlgorithm,
        purpose: str,
        tenant: str = "",
        account_id: str = "",
        system_owner: str = "",
        request_id: str = "",
    ) -> KeyInfo:
        """Generate a key in the token for a subscriber or a platform component.

        ``request_id`` makes it idempotent: the same id returns the same key.
        """
        ...

    def get_key(self, key_id: str) -> KeyInfo:
        """A key's record and public key; NotFound when it does not exist."""
        ...

    def sign_digest(
        self, key_id: str, digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme
    ) -> bytes:
        """Sign ``digest`` with one of the gateway's own (system) keys."""
        ...

    def disable_key(self, key_id: str, *, compromised: bool) -> None:
        """Disable a key because its certificate was revoked (no-op when already retired)."""
        ...


class AccountDirectory(Protocol):
    """Subscriber accounts, as identity knows them."""

    def account(self, account_id: str) -> AccountInfo:
        """The account; NotFound when identity does not know it."""
        ...

    def operator_may_manage_certificates(
        self, enterprise_id: str, operator_id: str, at: datetime
    ) -> bool:
        """Whether ``operator_id`` may manage the enterprise's certificates at ``at``."""
        ...
