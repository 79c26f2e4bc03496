"""The evidence service's own system keys in the signer: created once, remembered here."""

from __future__ import annotations

from signet.common.db import Database
from signet.common.errors import AlreadyExists, Internal
from signet.evidence.domain import KeyPurpose, KeyService, SigningKey
from signet.evidence.models import ServiceKey
from signet.evidence.repository import LogRepository


def ensure_service_key(db: Database, keys: KeyService, purpose: KeyPurpose) -> SigningKey:
    """Our system key for ``purpose``: recorded here, else created in the signer once.

    The request id makes creation idempotent in the signer, so two replicas starting at
    once end up with the same key.
    """
    with db.session() as session:
        row = LogRepository(session).service_key(purpose.value)
        if row is not None:
            return SigningKey(row.key_id, row.spki_der)
    key = keys.create_system_key(purpose, request_id=f"evidence-{purpose.value}-1")
    try:
        with db.session() as session:
            LogRepository(session).add_service_key(
                ServiceKey(purpose=purpose.value, key_id=key.key_id, spki_der=key.spki_der)
            )
    except AlreadyExists:
        with db.session() as session:
            row = LogRepository(session).service_key(purpose.value)
            if row is None:
                raise Internal() from None
            return SigningKey(row.key_id, row.spki_der)
    return key
