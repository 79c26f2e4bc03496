"""Notify's domain values and the interfaces of what it talks to.

Channels (email, SMS, webhook) sit behind :class:`ChannelSender`; identity's contact
details behind :class:`ContactDirectory`; the evidence log behind :class:`EvidenceLog`.
Each has a real implementation under :mod:`signet.notify.backends` and test doubles in
the tests, so the rules in :mod:`signet.notify.service` never see a socket.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from signet.events.v1.events_pb2 import EventEnvelope


class ChannelKind(enum.StrEnum):
    """How a notification travels."""

    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"


class Category(enum.StrEnum):
    """What kind of message it is; preferences apply per category."""

    ONE_TIME_CODE = "one_time_code"
    SECURITY_NOTICE = "security_notice"
    INCIDENT_NOTICE = "incident_notice"
    SIGNING_INVITATION = "signing_invitation"
    REMINDER = "reminder"
    CERTIFICATE_NOTICE = "certificate_notice"
    CONTRACT_COMPLETED = "contract_completed"
    WEBHOOK_EVENT = "webhook_event"


MANDATORY_CATEGORIES = frozenset(
    {Category.ONE_TIME_CODE, Category.SECURITY_NOTICE, Category.INCIDENT_NOTICE}
)
"""Categories a recipient cannot turn off."""


class Outcome(enum.StrEnum):
    """What one attempt came to."""

    SUCCESS = "success"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt: a short error class and the peer's reply code, no content."""

    outcome: Outcome
    error_class: str = ""
    response_code: int = 0

    @classmethod
    def ok(cls, response_code: int = 0) -> SendResult:
        """A delivered message."""
        return cls(Outcome.SUCCESS, "", response_code)

    @classmethod
    def transient(cls, error_class: str, response_code: int = 0) -> SendResult:
        """Worth another try later."""
        return cls(Outcome.TRANSIENT, error_class, response_code)

    @classmethod
    def permanent(cls, error_class: str, response_code: int = 0) -> SendResult:
        """Not worth retrying."""
        return cls(Outcome.PERMANENT, error_class, response_code)


@dataclass(frozen=True)
class EmailMessage:
    """A rendered e-mail to one address."""

    notification_id: str
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class SmsMessage:
    """A rendered text message to one phone number."""

    notification_id: str
    to: str
    text: str


@dataclass(frozen=True)
class WebhookMessage:
    """A JSON body for one endpoint, signed with its current secret (and the previous one)."""

    notification_id: str
    url: str
    body: bytes
    secrets: tuple[str, ...]
    event_type: str = ""


OutboundMessage = EmailMessage | SmsMessage | WebhookMessage


class ChannelSender(Protocol):
    """Delivers rendered messages of one channel; classifies failures instead of raising."""

    kind: ChannelKind

    def send(self, message: OutboundMessage) -> SendResult:
        """Try once; never raises for a delivery failure."""
        ...


@dataclass(frozen=True)
class Contact:
    """Where an account is reached; in clear only in memory, for one delivery."""

    account_id: str
    email: str = ""
    phone: str = ""
    locale: str = ""


class ContactDirectory(Protocol):
    """Looks up an account's contact details (identity's GetContactDetails)."""

    def contact(self, account_id: str) -> Contact:
        """The account's contact; NotFound when unknown, Unavailable when unreachable."""
        ...


class EvidenceLog(Protocol):
    """Appends an event to the evidence log (evidence's Append)."""

    def append(self, envelope: EventEnvelope) -> None:
        """Record ``envelope``; a repeated event id is a no-op. Unavailable when unreachable."""
        ...


@dataclass(frozen=True)
class RecipientSpec:
    """Whom a notification goes to: exactly one of the fields is set."""

    account_id: str = ""
    email: str = ""
    phone: str = ""
    endpoint_id: str = ""


@dataclass(frozen=True)
class SendRequest:
    """A direct send (SendNotification)."""

    tenant: str
    channel: ChannelKind
    recipient: RecipientSpec
    template_id: str
    # None: the template's own category.
    category: Category | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    sensitive_params: frozenset[str] = frozenset()
    locale: str = ""
    idempotency_key: str = ""
    deliver_before: datetime | None = None


@dataclass(frozen=True)
class Intent:
    """A notification an event asks for, before it is stored."""

    channel: ChannelKind
    category: Category
    template_id: str
    account_id: str = ""
    endpoint_id: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True)
class AttemptView:
    """One attempt as GetDeliveryStatus shows it."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error_class: str
    response_code: int


@dataclass(frozen=True)
class DeliveryView:
    """A delivery and its attempts, with nothing in clear."""

    notification_id: str
    tenant: str
    channel: ChannelKind
    masked_recipient: str
    template_id: str
    category: Category
    state: str
    attempts: tuple[AttemptView, ...]
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    source_event_id: str


@dataclass(frozen=True)
class SendOutcome:
    """What SendNotification answers."""

    notification_id: str
    state: str
    duplicate: bool


@dataclass(frozen=True)
class EndpointView:
    """A webhook endpoint (never its secret)."""

    endpoint_id: str
    tenant: str
    url: str
    event_types: tuple[str, ...]
    description: str
    active: bool
    created_at: datetime
    secret_rotated_at: datetime | None
    previous_secret_valid_until: datetime | None


@dataclass(frozen=True)
class IncidentNotice:
    """The four things an affected user must be told."""

    what_happened_and_impact: str
    measures_taken: str
    advice: str
    remedies: str


@dataclass(frozen=True)
class IncidentRequest:
    """A DeclareIncident call."""

    title: str
    severity: str
    notice: IncidentNotice
    happened_at: datetime | None
    discovered_at: datetime | None
    account_ids: tuple[str, ...] = ()
    tenant_scope: str = ""
    all_accounts: bool = False
    channels: tuple[ChannelKind, ...] = ()
    regulator_notified_at: datetime | None = None
    declared_by: str = ""
    idempotency_key: str = ""


@dataclass(frozen=True)
class PreferencesView:
    """A recipient's preferences: locale and channels turned off per category."""

    account_id: str
    locale: str
    disabled: Mapping[Category, tuple[ChannelKind, ...]]
    updated_at: datetime | None
