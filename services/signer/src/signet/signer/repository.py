"""Data access for the signer's key records and consumed grants."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exc, select
from sqlalchemy.orm import Session

from signet.common.db import get_or_not_found, utcnow
from signet.common.errors import PermissionDenied
from signet.signer.models import ConsumedGrant, KeyRecord, KeyState


class KeyRepository:
    """Key records of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, record: KeyRecord) -> KeyRecord:
        """Store a new key record (flushed, so a duplicate id fails here)."""
        self._session.add(record)
        self._session.flush()
        return record

    def get(self, key_id: str) -> KeyRecord:
        """The record of ``key_id``, or NotFound."""
        return get_or_not_found(self._session, KeyRecord, key_id, "key")

    def list_for_owner(
        self,
        tenant: str | None,
        account_id: str | None = None,
        *,
        system_owner: str | None = None,
        purpose: str | None = None,
        state: KeyState | None = None,
        limit: int = 100,
        after: str = "",
    ) -> Sequence[KeyRecord]:
        """Keys of a tenant (optionally one account) or of a system owner, ordered by id.

        ``after`` is the last id of the page before; ``purpose`` and ``state`` narrow it.
        """
        stmt = select(KeyRecord).where(KeyRecord.id > after)
        if system_owner is not None:
            stmt = stmt.where(KeyRecord.system_owner == system_owner)
        else:
            stmt = stmt.where(KeyRecord.tenant == tenant)
        if account_id is not None:
            stmt = stmt.where(KeyRecord.account_id == account_id)
        if purpose is not None:
            stmt = stmt.where(KeyRecord.purpose == purpose)
        if state is not None:
            stmt = stmt.where(KeyRecord.state == state)
        return self._session.scalars(stmt.order_by(KeyRecord.id).limit(limit)).all()


class ConsumedGrantRepository:
    """The set of signing grant ids already used."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def consume(self, grant_id: str, key_id: str, expires_at: datetime) -> None:
        """Record ``grant_id`` as used; a second use raises PermissionDenied.

        The insert runs in a savepoint so a replay leaves the caller's transaction usable.
        """
        try:
            with self._session.begin_nested():
                self._session.add(
                    ConsumedGrant(grant_id=grant_id, key_id=key_id, expires_at=expires_at)
                )
        except exc.IntegrityError as err:
            raise PermissionDenied("signing grant has already been used") from err

    def purge_expired(self, now: datetime | None = None) -> int:
        """Forget grants past their expiry: they are rejected as expired anyway."""
        result = self._session.execute(
            delete(ConsumedGrant).where(ConsumedGrant.expires_at < (now or utcnow()))
        )
        return int(getattr(result, "rowcount", 0) or 0)
