"""Identity's rules: accounts, credentials, real-name verification, willingness, grants, privacy.

Who someone is (real-name verification through local checks and provider adapters), that
they meant to sign (willingness checks that yield single-use signing grants), and what
happens to the personal data those checks need (vault, export, correction, deletion,
cancellation with legal retention). Every state change writes its event through the
outbox in the same transaction. Nothing here imports gRPC or protobuf: the servicer
converts, the ports (:class:`CodeSender`, :class:`GrantKeyBackend`, the providers, the
vault's key wrapper) are implemented in :mod:`signet.identity.backends`.
"""

from __future__ import annotations

from signet.identity.accounts import AccountRules
from signet.identity.base import CodeSender, GrantKeyBackend
from signet.identity.privacy import PrivacyRules
from signet.identity.verification import VerificationRules
from signet.identity.willingness import WillingnessRules, jwk_of


class IdentityService(AccountRules, VerificationRules, WillingnessRules, PrivacyRules):
    """The identity domain over a database, the vault, providers, notify and the signer."""


__all__ = ["CodeSender", "GrantKeyBackend", "IdentityService", "jwk_of"]
