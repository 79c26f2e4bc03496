"""Data access for deliveries and their attempts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from signet.common.db import get_or_not_found
from signet.notify.models import Delivery, DeliveryAttempt


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
        return get_or_not_found(self._session, Delivery, delivery_id, "delivery")

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
