"""Data access for deliveries, attempts, webhook endpoints, preferences, roster, incidents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from signet.common.db import get_or_not_found
from signet.notify.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Incident,
    KnownAccount,
    Preference,
    WebhookEndpoint,
)

_DUE_STATES = (DeliveryState.PENDING, DeliveryState.RETRYING)


class DeliveryRepository:
    """Deliveries of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, delivery: Delivery) -> Delivery:
        """Store a new delivery; the same (key, channel, recipient) twice is AlreadyExists."""
        self._session.add(delivery)
        self._session.flush()
        return delivery

    def get(self, delivery_id: str) -> Delivery:
        """The delivery, or NotFound."""
        return get_or_not_found(self._session, Delivery, delivery_id, "notification")

    def find(self, idempotency_key: str, channel: str, recipient_hash: str) -> Delivery | None:
        """The delivery with this idempotency key, channel and recipient, if any."""
        stmt = select(Delivery).where(
            Delivery.idempotency_key == idempotency_key,
            Delivery.channel == channel,
            Delivery.recipient_hash == recipient_hash,
        )
        return self._session.scalars(stmt).first()

    def add_attempt(self, attempt: DeliveryAttempt) -> None:
        """Record one try of a delivery."""
        self._session.add(attempt)
        self._session.flush()

    def attempts(self, delivery_id: str) -> Sequence[DeliveryAttempt]:
        """Every try of a delivery, oldest first."""
        stmt = (
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.id)
        )
        return self._session.scalars(stmt).all()

    def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Ids of deliveries due by ``now``, leased until ``lease_until``.

        No other dispatcher takes them meanwhile (rows locked with SKIP LOCKED on PostgreSQL).
        """
        stmt = (
            select(Delivery)
            .where(
                Delivery.state.in_(_DUE_STATES),
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            )
            .order_by(Delivery.next_attempt_at, Delivery.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self._session.scalars(stmt).all()
        for row in rows:
            row.next_attempt_at = lease_until
        self._session.flush()
        return [row.id for row in rows]

    def attempts_since(self, recipient_hash: str, channel: str, since: datetime) -> list[datetime]:
        """When ``recipient_hash`` was tried on ``channel`` since ``since``, oldest first."""
        stmt = (
            select(DeliveryAttempt.attempted_at)
            .where(
                DeliveryAttempt.recipient_hash == recipient_hash,
                DeliveryAttempt.channel == channel,
                DeliveryAttempt.attempted_at >= since,
            )
            .order_by(DeliveryAttempt.attempted_at)
        )
        return list(self._session.scalars(stmt).all())

    def dead_lettered(
        self,
        *,
        tenant: str = "",
        channel: str = "",
        ids: Sequence[str] = (),
        limit: int,
    ) -> Sequence[Delivery]:
        """Dead-lettered deliveries matching the filters (ids win over the others)."""
        stmt = select(Delivery).where(Delivery.state == DeliveryState.DEAD_LETTERED)
        if ids:
            stmt = stmt.where(Delivery.id.in_(list(ids)))
        else:
            if tenant:
                stmt = stmt.where(Delivery.tenant == tenant)
            if channel:
                stmt = stmt.where(Delivery.channel == channel)
        return self._session.scalars(stmt.order_by(Delivery.created_at).limit(limit)).all()

    def count_by_state(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        stmt = select(Delivery.state, func.count()).group_by(Delivery.state)
        return {str(state): int(n) for state, n in self._session.execute(stmt)}


class WebhookEndpointRepository:
    """Webhook endpoints of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        """Store a new endpoint."""
        self._session.add(endpoint)
        self._session.flush()
        return endpoint

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """The endpoint, or NotFound."""
        return get_or_not_found(self._session, WebhookEndpoint, endpoint_id, "webhook endpoint")

    def list_for_tenant(
        self, tenant: str, *, after: str = "", limit: int = 100
    ) -> Sequence[WebhookEndpoint]:
        """A tenant's endpoints ordered by id, starting after ``after``."""
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant)
        if after:
            stmt = stmt.where(WebhookEndpoint.id > after)
        return self._session.scalars(stmt.order_by(WebhookEndpoint.id).limit(limit)).all()

    def active_for_tenant(self, tenant: str) -> Sequence[WebhookEndpoint]:
        """A tenant's active endpoints."""
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.tenant == tenant, WebhookEndpoint.active.is_(True)
        )
        return self._session.scalars(stmt.order_by(WebhookEndpoint.id)).all()


class PreferenceRepository:
    """Recipients' preferences."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, account_id: str) -> Preference | None:
        """The stored preferences, or None (defaults apply)."""
        return self._session.get(Preference, account_id)

    def get_or_create(self, account_id: str) -> Preference:
        """The stored preferences, created empty when there are none."""
        found = self.get(account_id)
        if found is None:
            found = Preference(account_id=account_id, locale="", disabled={})
            self._session.add(found)
            self._session.flush()
        return found


class AccountRosterRepository:
    """The accounts notify has heard of, per tenant (for incident notices)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert(self, account_id: str, tenant: str, active: bool) -> None:
        """Record that ``account_id`` of ``tenant`` exists (or was cancelled)."""
        found = self._session.get(KnownAccount, account_id)
        if found is None:
            self._session.add(KnownAccount(account_id=account_id, tenant=tenant, active=active))
        else:
            found.active = active
            if tenant:
                found.tenant = tenant
        self._session.flush()

    def tenant_of(self, account_id: str) -> str | None:
        """The tenant of a known account, or None."""
        found = self._session.get(KnownAccount, account_id)
        return found.tenant if found is not None else None

    def active(self, tenant: str = "") -> list[str]:
        """Active accounts of ``tenant`` (all tenants when empty), ordered by id."""
        stmt = select(KnownAccount.account_id).where(KnownAccount.active.is_(True))
        if tenant:
            stmt = stmt.where(KnownAccount.tenant == tenant)
        return list(self._session.scalars(stmt.order_by(KnownAccount.account_id)).all())


class IncidentRepository:
    """Declared incidents."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, incident: Incident) -> Incident:
        """Store a new incident; a repeated idempotency key is AlreadyExists."""
        self._session.add(incident)
        self._session.flush()
        return incident

    def get(self, incident_id: str) -> Incident:
        """The incident, or NotFound."""
        return get_or_not_found(self._session, Incident, incident_id, "incident")

    def by_idempotency_key(self, key: str) -> Incident | None:
        """The incident declared with ``key``, if any."""
        stmt = select(Incident).where(Incident.idempotency_key == key)
        return self._session.scalars(stmt).first()
