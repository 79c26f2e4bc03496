"""Notify's rules: what is sent to whom, when it is tried again, and when it is given up.

A notification becomes a *delivery* row first (one per idempotency key, channel and
recipient, so a repeated request or a redelivered event adds nothing), then the dispatcher
tries it outside any transaction and records each attempt with its outcome:

* success: DELIVERED, a NotificationSent event, sealed parameters (codes) dropped;
* a transient failure: RETRYING, the next attempt after an exponential backoff with
  jitter (tenacity's wait strategy), a NotificationFailed event;
* a permanent failure, an expired deadline or the retry budget spent: DEAD_LETTERED,
  NotificationDeadLettered on the notify topic and on the delivery dead-letter topic,
  until an operator replays it.

Every state change and its events commit in one transaction (outbox). Addresses reach
this module in clear only in memory, during one attempt; stored records hold the masked
form, a keyed hash and, for literal addresses, a sealed copy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy.orm import Session
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
    wait_random_exponential,
)

from signet.common.auth import Principal
from signet.common.db import Database, utcnow
from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from signet.common.events import (
    NOTIFY_TOPIC,
    EventEnvelope,
    dead_letter_topic,
    decode_envelope,
    encode_envelope,
    new_envelope,
)
from signet.common.masking import mask_email, mask_phone
from signet.common.outbox import Outbox, process_once
from signet.notify import convert, triggers
from signet.notify.domain import (
    MANDATORY_CATEGORIES,
    AttemptView,
    Category,
    ChannelKind,
    ChannelSender,
    Contact,
    ContactDirectory,
    DeliveryView,
    EmailMessage,
    EndpointView,
    EvidenceLog,
    IncidentRequest,
    Intent,
    OutboundMessage,
    Outcome,
    PreferencesView,
    RecipientSpec,
    SendOutcome,
    SendRequest,
    SendResult,
    SmsMessage,
    WebhookMessage,
)
from signet.notify.metrics import NotifyMetrics
from signet.notify.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Incident,
    WebhookEndpoint,
)
from signet.notify.repository import (
    AccountRosterRepository,
    DeliveryRepository,
    IncidentRepository,
    PreferenceRepository,
    WebhookEndpointRepository,
)
from signet.notify.sealing import Sealer
from signet.notify.templates import LOCALES, TemplateCatalog, normalise_locale

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SOURCE = "notify"
MAX_REPLAY = 1000
DEFAULT_REPLAY = 100
MAX_PAGE = 100
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE_RE = re.compile(r"^\+?[0-9]{6,15}$")
_PERSON_CHANNELS = frozenset({ChannelKind.EMAIL, ChannelKind.SMS})


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retries, leases and rate limits of the dispatcher."""

    max_attempts: int = 6
    retry_initial_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    retry_jitter_seconds: float = 1.0
    claim_lease_seconds: float = 120.0
    recipient_rate_limit: int = 20
    recipient_rate_window_seconds: float = 3600.0
    webhook_secret_grace_seconds: float = 86400.0
    webhook_allow_http: bool = False


@dataclass(frozen=True)
class _Snapshot:
    """What one attempt needs from a delivery row, read in a short transaction."""

    delivery_id: str
    channel: ChannelKind
    category: Category
    tenant: str
    account_id: str
    template: str
    locale: str
    params: dict[str, str]
    sensitive: dict[str, str]
    address: str
    body: str | None
    event_type: str
    endpoint: tuple[str, tuple[str, ...]] | None
    deliver_before: datetime | None
    # Why the delivery cannot be attempted (an error class), or "".
    unusable: str = ""


def delivery_dead_letter_topic(consumer_group: str) -> str:
    """Where notify puts the notifications it gave up on (one record per notification)."""
    return dead_letter_topic(NOTIFY_TOPIC, consumer_group)


@dataclass
class NotifyService:
    """Notifications, their delivery, webhook endpoints, incidents and preferences."""

    db: Database
    sealer: Sealer
    catalog: TemplateCatalog
    senders: Mapping[ChannelKind, ChannelSender]
    directory: ContactDirectory
    evidence: EvidenceLog
    metrics: NotifyMetrics
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    consumer_group: str = "notify"
    operators: frozenset[str] = frozenset()
    on_commit: Callable[[], None] = lambda: None
    on_queued: Callable[[], None] = lambda: None
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)

    def __post_init__(self) -> None:
        self._wait = wait_exponential_jitter(
            multiplier=self.policy.retry_initial_seconds,
            max=self.policy.retry_max_seconds,
            jitter=self.policy.retry_jitter_seconds,
        )
        self._retrying = Retrying()
        # SQLite has one writer; a transaction that read before another committed fails at
        # once (not after the busy timeout). Such a unit of work is simply run again.
        # Within this process SQLite's writers also take turns on a lock, which keeps the
        # dispatcher's threads from tripping over each other; PostgreSQL needs neither.
        self._write_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock()
            if self.db.engine.dialect.name == "sqlite"
            else contextlib.nullcontext()
        )
        self._busy = Retrying(
            retry=retry_if_exception_type(Unavailable),
            stop=stop_after_attempt(12),
            wait=wait_random_exponential(multiplier=0.005, max=0.25),
            reraise=True,
        )
        self.dead_letter_topic = delivery_dead_letter_topic(self.consumer_group)

    def _unit(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one unit of work (its own transaction), again if the database was busy."""

        def locked() -> _T:
            with self._write_lock:
                return fn(*args)

        return self._busy(locked)

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after failed attempt number ``attempt`` (1-based)."""
        state = RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt
        return float(self._wait(state))

    # ---- direct sends ------------------------------------------------------------------

    def send(self, caller: Principal, request: SendRequest) -> SendOutcome:
        """Queue one notification; a repeated idempotency key returns the first one."""
        return self._unit(self._send, caller, request)

    def _send(self, caller: Principal, request: SendRequest) -> SendOutcome:
        tenant = self._tenant_for(caller, request.tenant)
        category = self._check_send(request)
        kind, value = _recipient_target(request.channel, request.recipient)
        if len(request.idempotency_key) > 128:
            raise InvalidArgument("idempotency_key is at most 128 characters")
        key = (
            f"send:{tenant}:{request.idempotency_key}"
            if request.idempotency_key
            else f"send:{uuid.uuid4().hex}"
        )
        recipient_hash = self.sealer.recipient_hash(kind, value)
        with self.db.session() as session:
            if kind == "account" and caller.tenant is not None:
                known = AccountRosterRepository(session).tenant_of(value)
                if known is not None and known != caller.tenant:
                    raise PermissionDenied("the account belongs to another tenant")
            repo = DeliveryRepository(session)
            existing = repo.find(key, request.channel.value, recipient_hash)
            if existing is not None:
                return SendOutcome(existing.id, existing.state.value, duplicate=True)
            endpoint = None
            if kind == "webhook":
                endpoint = WebhookEndpointRepository(session).get(value)
                if endpoint.tenant != tenant:
                    raise NotFound("webhook endpoint not found")
                if not endpoint.active:
                    raise FailedPrecondition("the webhook endpoint is not active")
            plain = {k: v for k, v in request.params.items() if k not in request.sensitive_params}
            sensitive = {k: v for k, v in request.params.items() if k in request.sensitive_params}
            delivery = self._new_delivery(
                session,
                key=key,
                channel=request.channel,
                category=category,
                template=request.template_id,
                tenant=tenant,
                recipient_kind=kind,
                recipient_value=value,
                recipient_hash=recipient_hash,
                params=plain,
                locale=normalise_locale(request.locale),
                deliver_before=request.deliver_before,
            )
            if sensitive:
                delivery.sealed_params = self.sealer.seal_json(sensitive, delivery.id)
            if endpoint is not None:
                delivery.body = json.dumps(
                    {
                        "notificationId": delivery.id,
                        "tenant": tenant,
                        "templateId": request.template_id,
                        "category": category.value,
                        "params": plain,
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                    separators=(",", ":"),
                )
            try:
                with session.begin_nested():
                    repo.add(delivery)
            except AlreadyExists:
                raced = repo.find(key, request.channel.value, recipient_hash)
                if raced is None:
                    raise
                return SendOutcome(raced.id, raced.state.value, duplicate=True)
            outcome = SendOutcome(delivery.id, delivery.state.value, duplicate=False)
        self._after_queue(request.channel, outcome.state)
        return outcome

    def _check_send(self, request: SendRequest) -> Category:
        """Validate template, category and parameters; returns the category to use."""
        if not request.template_id:
            raise InvalidArgument("template_id is required")
        if len(request.template_id) > 64:
            raise InvalidArgument("template_id is at most 64 characters")
        unknown = request.sensitive_params - set(request.params)
        if unknown:
            raise InvalidArgument(
                f"sensitive_params names parameters not given: {', '.join(sorted(unknown))}"
            )
        for name, value in request.params.items():
            if len(name) > 64 or len(value) > 2000:
                raise InvalidArgument("parameter names are at most 64 and values 2000 characters")
        if request.deliver_before is not None and request.deliver_before <= self._clock():
            raise InvalidArgument("deliver_before is in the past")
        if request.channel is ChannelKind.WEBHOOK:
            if request.category not in (None, Category.WEBHOOK_EVENT):
                raise InvalidArgument("a webhook notification has category WEBHOOK_EVENT")
            if request.sensitive_params:
                raise InvalidArgument("sensitive parameters are never sent to webhooks")
            return Category.WEBHOOK_EVENT
        template = self.catalog.get(request.template_id)
        if request.category is not None and request.category is not template.category:
            raise InvalidArgument(
                f"template {request.template_id!r} has category "
                f"{template.category.name}, not {request.category.name}"
            )
        self.catalog.check_params(request.template_id, request.params)
        if template.category is Category.ONE_TIME_CODE and "code" not in request.sensitive_params:
            raise InvalidArgument("a one-time code must be listed in sensitive_params")
        return template.category

    def _tenant_for(self, caller: Principal, tenant: str) -> str:
        """The tenant a call acts for: a tenant principal only ever for its own."""
        if caller.tenant is not None:
            if tenant and tenant != caller.tenant:
                raise PermissionDenied("the caller acts for another tenant")
            return caller.tenant
        if len(tenant) > 64:
            raise InvalidArgument("tenant_id is at most 64 characters")
        return tenant

    def _new_delivery(
        self,
        session: Session,
        *,
        key: str,
        channel: ChannelKind,
        category: Category,
        template: str,
        tenant: str,
        recipient_kind: str,
        recipient_value: str,
        recipient_hash: str,
        params: Mapping[str, str],
        locale: str = "",
        deliver_before: datetime | None = None,
        source_event_id: str | None = None,
        body: str | None = None,
    ) -> Delivery:
        """A delivery row (not yet added), SUPPRESSED when the recipient turned it off."""
        now = self._clock()
        delivery = Delivery(
            id="n-" + uuid.uuid4().hex,
            idempotency_key=key,
            channel=channel.value,
            recipient_hash=recipient_hash,
            recipient_masked=_masked(recipient_kind, recipient_value),
            account_id=recipient_value if recipient_kind == "account" else None,
            endpoint_id=recipient_value if recipient_kind == "webhook" else None,
            template=template,
            category=category.value,
            locale=locale,
            tenant=tenant or None,
            params=dict(params),
            body=body,
            source_event_id=source_event_id,
            state=DeliveryState.PENDING,
            attempts=0,
            round_attempts=0,
            next_attempt_at=now,
            deliver_before=deliver_before,
            last_error_class="",
            created_at=now,
            updated_at=now,
        )
        if recipient_kind in ("email", "phone"):
            delivery.sealed_address = self.sealer.seal(recipient_value.encode(), delivery.id)
        if recipient_kind == "account" and category not in MANDATORY_CATEGORIES:
            prefs = PreferenceRepository(session).get(recipient_value)
            if prefs is not None and channel.value in prefs.disabled.get(category.value, []):
                delivery.state = DeliveryState.SUPPRESSED
                delivery.next_attempt_at = None
        return delivery

    def _after_queue(self, channel: ChannelKind, state: str) -> None:
        if state == DeliveryState.SUPPRESSED.value:
            self.metrics.suppressed.labels(channel.value).inc()
        else:
            self.on_queued()

    # ---- events ------------------------------------------------------------------------

    def handle_event(self, envelope: EventEnvelope) -> int:
        """Queue what ``envelope`` asks for, once per event id; returns how many were queued.

        The processed-event marker and the deliveries commit together, so a redelivered
        event queues nothing; the consumer commits its offset only after this returns.
        """
        return self._unit(self._handle_event, envelope)

    def _handle_event(self, envelope: EventEnvelope) -> int:
        queued: list[tuple[ChannelKind, str]] = []
        with self.db.session() as session:
            if not process_once(session, self.consumer_group, envelope.id):
                return 0
            change = triggers.roster_change(envelope)
            if change is not None:
                AccountRosterRepository(session).upsert(
                    change.account_id, change.tenant, change.active
                )
            intents = triggers.person_intents(envelope)
            if envelope.tenant:
                intents.extend(self._webhook_intents(session, envelope))
            repo = DeliveryRepository(session)
            for intent in intents:
                delivery = self._delivery_for_intent(session, envelope, intent)
                # Another consumer group (or a lost marker) may have queued it already.
                if repo.find(delivery.idempotency_key, delivery.channel, delivery.recipient_hash):
                    continue
                repo.add(delivery)
                queued.append((intent.channel, delivery.state.value))
        for channel, state in queued:
            self._after_queue(channel, state)
        return len(queued)

    def _webhook_intents(self, session: Session, envelope: EventEnvelope) -> list[Intent]:
        endpoints = WebhookEndpointRepository(session).active_for_tenant(envelope.tenant)
        wanted = [e for e in endpoints if not e.event_types or envelope.type in e.event_types]
        if not wanted:
            return []
        body = triggers.webhook_body(envelope)
        return [
            Intent(
                channel=ChannelKind.WEBHOOK,
                category=Category.WEBHOOK_EVENT,
                template_id="event",
                endpoint_id=endpoint.id,
                body=body,
            )
            for endpoint in wanted
        ]

    def _delivery_for_intent(
        self, session: Session, envelope: EventEnvelope, intent: Intent
    ) -> Delivery:
        kind, value = (
            ("webhook", intent.endpoint_id)
            if intent.endpoint_id
            else ("account", intent.account_id)
        )
        return self._new_delivery(
            session,
            key=f"event:{envelope.id}",
            channel=intent.channel,
            category=intent.category,
            template=intent.template_id,
            tenant=envelope.tenant,
            recipient_kind=kind,
            recipient_value=value,
            recipient_hash=self.sealer.recipient_hash(kind, value),
            params=intent.params,
            source_event_id=envelope.id,
            body=intent.body,
        )

    # ---- delivery ----------------------------------------------------------------------

    def claim_due(self, limit: int) -> list[str]:
        """Lease up to ``limit`` due deliveries to this dispatcher; returns their ids."""
        now = self._clock()
        lease = now + timedelta(seconds=self.policy.claim_lease_seconds)

        def claim() -> list[str]:
            with self.db.session() as session:
                return DeliveryRepository(session).claim_due(now, lease, limit)

        return self._unit(claim)

    def attempt(self, delivery_id: str) -> Outcome | None:
        """Try one claimed delivery once and record the outcome (None: not tried now)."""
        snapshot = self._unit(self._snapshot, delivery_id)
        if snapshot is None:
            return None
        started = self._clock()
        clock_start = time.perf_counter()
        result, masked = self._try(snapshot)
        elapsed = time.perf_counter() - clock_start
        self.metrics.attempt_duration.labels(snapshot.channel.value).observe(elapsed)
        self._unit(self._record, snapshot, result, started, masked)
        return result.outcome

    def _snapshot(self, delivery_id: str) -> _Snapshot | None:
        with self.db.session() as session:
            repo = DeliveryRepository(session)
            row = repo.get(delivery_id)
            if row.state not in (DeliveryState.PENDING, DeliveryState.RETRYING):
                return None
            channel = ChannelKind(row.channel)
            if channel in _PERSON_CHANNELS and self._rate_limited(repo, row):
                return None
            endpoint: tuple[str, tuple[str, ...]] | None = None
            sensitive: dict[str, str] = {}
            address, unusable = "", ""
            try:
                if row.endpoint_id:
                    unusable = "endpoint_inactive"
                    endpoint = self._endpoint_target(session, row.endpoint_id)
                unusable = "sealed_data_unreadable"
                if row.sealed_params:
                    sensitive = self.sealer.open_json(row.sealed_params, row.id)
                if row.sealed_address:
                    address = self.sealer.open(row.sealed_address, row.id).decode()
                unusable = ""
            except (Internal, NotFound):
                # The attempt records a permanent failure of this class.
                endpoint = None
            return _Snapshot(
                delivery_id=row.id,
                channel=channel,
                category=Category(row.category),
                tenant=row.tenant or "",
                account_id=row.account_id or "",
                template=row.template,
                locale=row.locale,
                params=dict(row.params),
                sensitive=sensitive,
                address=address,
                body=row.body,
                event_type=_event_type_of(row.body),
                endpoint=endpoint,
                deliver_before=row.deliver_before,
                unusable=unusable,
            )

    def _rate_limited(self, repo: DeliveryRepository, row: Delivery) -> bool:
        """Whether the recipient had its fill of attempts on this channel; if so, postpone."""
        now = self._clock()
        window = timedelta(seconds=self.policy.recipient_rate_window_seconds)
        recent = repo.attempts_since(row.recipient_hash, row.channel, now - window)
        if len(recent) < self.policy.recipient_rate_limit:
            return False
        row.next_attempt_at = recent[len(recent) - self.policy.recipient_rate_limit] + window
        self.metrics.rate_limited.labels(row.channel).inc()
        log.info(
            "recipient rate limit reached; delivery postponed",
            extra={"notification_id": row.id, "channel": row.channel},
        )
        return True

    def _endpoint_target(self, session: Session, endpoint_id: str) -> tuple[str, tuple[str, ...]]:
        endpoint = WebhookEndpointRepository(session).get(endpoint_id)
        if not endpoint.active:
            raise NotFound("webhook endpoint not active")
        found = [self.sealer.open(endpoint.sealed_secret, endpoint.id).decode()]
        until = endpoint.previous_secret_valid_until
        if endpoint.sealed_previous_secret and until is not None and until > self._clock():
            previous = self.sealer.open(endpoint.sealed_previous_secret, endpoint.id + ":previous")
            found.append(previous.decode())
        return endpoint.url, tuple(found)

    def _try(self, snap: _Snapshot) -> tuple[SendResult, str | None]:
        """Build the message and send it; returns the result and a newly known masked address."""
        if snap.deliver_before is not None and self._clock() >= snap.deliver_before:
            return SendResult.permanent("expired"), None
        if snap.unusable:
            return SendResult.permanent(snap.unusable), None
        try:
            message, masked = self._message(snap)
        except NotFound:
            return SendResult.permanent("recipient_unknown"), None
        except Unavailable:
            return SendResult.transient("directory_unavailable"), None
        except InvalidArgument:
            return SendResult.permanent("template_error"), None
        except ServiceError:
            return SendResult.transient("directory_error"), None
        if message is None:
            return SendResult.permanent("no_address"), masked
        sender = self.senders.get(snap.channel)
        if sender is None:
            return SendResult.permanent("channel_not_configured"), masked
        try:
            return sender.send(message), masked
        except Exception as err:  # noqa: BLE001  (a sender bug must not kill the dispatcher)
            log.error("channel sender failed", extra={"error": type(err).__name__})
            return SendResult.transient("sender_error"), masked

    def _message(self, snap: _Snapshot) -> tuple[OutboundMessage | None, str | None]:
        if snap.channel is ChannelKind.WEBHOOK:
            if snap.endpoint is None or snap.body is None:
                raise NotFound("webhook endpoint not found")
            url, secrets_ = snap.endpoint
            message = WebhookMessage(
                snap.delivery_id, url, snap.body.encode("utf-8"), secrets_, snap.event_type
            )
            return message, None
        locale = snap.locale
        address = snap.address
        masked: str | None = None
        if snap.account_id:
            contact = self.directory.contact(snap.account_id)
            address = _address_of(contact, snap.channel)
            if not address:
                return None, None
            masked = _masked("email" if snap.channel is ChannelKind.EMAIL else "phone", address)
            locale = locale or self._locale_of(snap.account_id) or contact.locale
        params = {**snap.params, **snap.sensitive}
        text = self.catalog.render(
            snap.template, locale, params, tenant=snap.tenant, channel=snap.channel
        )
        if snap.channel is ChannelKind.EMAIL:
            return EmailMessage(snap.delivery_id, address, text.subject, text.body), masked
        return SmsMessage(snap.delivery_id, address, text.sms), masked

    def _locale_of(self, account_id: str) -> str:
        with self.db.session() as session:
            prefs = PreferenceRepository(session).get(account_id)
            return prefs.locale if prefs is not None else ""

    def _record(
        self, snap: _Snapshot, result: SendResult, started: datetime, masked: str | None
    ) -> None:
        """Store the attempt and the delivery's new state with its events, in one transaction."""
        now = self._clock()
        channel = snap.channel
        with self.db.session() as session:
            row = DeliveryRepository(session).get(snap.delivery_id)
            row.attempts += 1
            row.round_attempts += 1
            if masked:
                row.recipient_masked = masked
            DeliveryRepository(session).add_attempt(
                DeliveryAttempt(
                    delivery_id=row.id,
                    attempt=row.attempts,
                    recipient_hash=row.recipient_hash,
                    channel=row.channel,
                    attempted_at=started,
                    finished_at=now,
                    succeeded=result.outcome is Outcome.SUCCESS,
                    outcome=result.outcome.value,
                    error_class=result.error_class,
                    response_code=result.response_code,
                    detail="",
                )
            )
            events: list[tuple[str, Message]] = []
            if result.outcome is Outcome.SUCCESS:
                row.state = DeliveryState.DELIVERED
                row.delivered_at = now
                row.next_attempt_at = None
                row.sealed_params = None
                row.last_error_class = ""
                events.append((NOTIFY_TOPIC, self._sent_event(row, snap)))
            else:
                row.last_error_class = result.error_class
                give_up = (
                    result.outcome is Outcome.PERMANENT
                    or row.round_attempts >= self.policy.max_attempts
                )
                next_at = None if give_up else now + timedelta(seconds=self.backoff(row.attempts))
                if (
                    next_at is not None
                    and snap.deliver_before is not None
                    and next_at >= snap.deliver_before
                ):
                    give_up, next_at = True, None
                events.append(
                    (
                        NOTIFY_TOPIC,
                        convert.notification_failed(
                            notification_id=row.id,
                            channel=channel,
                            masked_recipient=row.recipient_masked,
                            attempt=row.attempts,
                            outcome=result.outcome,
                            error_class=result.error_class,
                            next_attempt_at=next_at,
                        ),
                    )
                )
                if give_up:
                    row.state = DeliveryState.DEAD_LETTERED
                    row.next_attempt_at = None
                    if snap.category is Category.ONE_TIME_CODE:
                        row.sealed_params = None
                    dead = convert.notification_dead_lettered(
                        notification_id=row.id,
                        channel=channel,
                        masked_recipient=row.recipient_masked,
                        attempts=row.attempts,
                        last_error_class=result.error_class,
                    )
                    events.append((NOTIFY_TOPIC, dead))
                    events.append((self.dead_letter_topic, dead))
                else:
                    row.state = DeliveryState.RETRYING
                    row.next_attempt_at = next_at
            self._emit(session, row.id, row.tenant or "", events)
            state = row.state
            latency = (now - row.created_at).total_seconds()
        self.on_commit()
        self._count(channel, result, state, latency, row.id)

    def _sent_event(self, row: Delivery, snap: _Snapshot) -> Message:
        return convert.notification_sent(
            notification_id=row.id,
            channel=snap.channel,
            category=snap.category,
            template_id=row.template,
            masked_recipient=row.recipient_masked,
            account_id=row.account_id or "",
            attempts=row.attempts,
            source_event_id=row.source_event_id or "",
        )

    def _emit(
        self, session: Session, subject: str, tenant: str, events: Sequence[tuple[str, Message]]
    ) -> None:
        """Write events to the outbox; one payload on two topics keeps one event id."""
        built: dict[int, EventEnvelope] = {}
        for topic, payload in events:
            envelope = built.get(id(payload))
            if envelope is None:
                envelope = new_envelope(payload, source=SOURCE, subject=subject, tenant=tenant)
                built[id(payload)] = envelope
            Outbox.add(session, topic, envelope)

    def _count(
        self,
        channel: ChannelKind,
        result: SendResult,
        state: DeliveryState,
        latency: float,
        id_: str,
    ) -> None:
        label = channel.value
        if result.outcome is Outcome.SUCCESS:
            self.metrics.sends.labels(label).inc()
            self.metrics.delivery_latency.labels(label).observe(max(latency, 0.0))
            log.info("notification delivered", extra={"notification_id": id_, "channel": label})
            return
        self.metrics.failures.labels(label, result.outcome.value).inc()
        if state is DeliveryState.DEAD_LETTERED:
            self.metrics.dead_letters.labels(label).inc()
            log.warning(
                "notification dead-lettered",
                extra={"notification_id": id_, "channel": label, "error": result.error_class},
            )
        else:
            self.metrics.retries.labels(label).inc()
            log.info(
                "notification attempt failed; retrying",
                extra={"notification_id": id_, "channel": label, "error": result.error_class},
            )

    # ---- status and replay -------------------------------------------------------------

    def delivery_status(self, caller: Principal, notification_id: str) -> DeliveryView:
        """A notification with every attempt; another tenant's is NotFound."""
        if not notification_id:
            raise InvalidArgument("notification_id is required")
        with self.db.session() as session:
            repo = DeliveryRepository(session)
            row = repo.get(notification_id)
            if caller.tenant is not None and row.tenant != caller.tenant:
                raise NotFound("notification not found")
            attempts = tuple(
                AttemptView(
                    attempt=a.attempt,
                    started_at=a.attempted_at,
                    finished_at=a.finished_at,
                    outcome=a.outcome,
                    error_class=a.error_class,
                    response_code=a.response_code,
                )
                for a in repo.attempts(row.id)
            )
            return DeliveryView(
                notification_id=row.id,
                tenant=row.tenant or "",
                channel=ChannelKind(row.channel),
                masked_recipient=row.recipient_masked,
                template_id=row.template,
                category=Category(row.category),
                state=row.state.value,
                attempts=attempts,
                created_at=row.created_at,
                delivered_at=row.delivered_at,
                next_attempt_at=(
                    row.next_attempt_at if row.state is DeliveryState.RETRYING else None
                ),
                source_event_id=row.source_event_id or "",
            )

    def replay(
        self,
        caller: Principal,
        *,
        tenant: str = "",
        channel: ChannelKind | None = None,
        notification_ids: Sequence[str] = (),
        limit: int = 0,
    ) -> list[str]:
        """Put dead-lettered notifications back into delivery with a fresh retry budget.

        Notifications whose deliver_before has passed stay dead, and so do one-time codes:
        their code is dropped when they die, and a late code is of no use anyway.
        """
        self._require_operator(caller)
        if limit < 0:
            raise InvalidArgument("limit must not be negative")
        count = min(limit or DEFAULT_REPLAY, MAX_REPLAY)
        now = self._clock()
        replayed: list[str] = []
        with self.db.session() as session:
            rows = DeliveryRepository(session).dead_lettered(
                tenant=tenant,
                channel=channel.value if channel is not None else "",
                ids=notification_ids,
                limit=count,
            )
            for row in rows:
                if row.deliver_before is not None and row.deliver_before <= now:
                    continue
                if row.category == Category.ONE_TIME_CODE.value and row.sealed_params is None:
                    # Its code was dropped when it died; the caller issues a fresh one.
                    continue
                row.state = DeliveryState.PENDING
                row.round_attempts = 0
                row.next_attempt_at = now
                replayed.append(row.id)
            if replayed:
                payload = convert.notification_replayed(replayed, caller.subject)
                self._emit(session, replayed[0], tenant, [(NOTIFY_TOPIC, payload)])
        if replayed:
            self.on_commit()
            self.on_queued()
            log.info("dead letters replayed", extra={"count": len(replayed)})
        return replayed

    def _require_operator(self, caller: Principal) -> None:
        """Operators only (and anyone while authentication is off, as everywhere locally)."""
        if caller.kind in ("operator", "anonymous"):
            return
        if caller.kind == "service" and caller.subject in self.operators:
            return
        raise PermissionDenied("only platform operators may do this")

    # ---- webhook endpoints -------------------------------------------------------------

    def register_endpoint(
        self,
        caller: Principal,
        *,
        tenant: str,
        url: str,
        event_types: Sequence[str],
        description: str,
    ) -> tuple[EndpointView, str]:
        """Register a tenant's webhook URL; returns it and its secret (shown only now)."""
        tenant = self._tenant_for(caller, tenant)
        if not tenant:
            raise InvalidArgument("tenant_id is required")
        self._check_url(url)
        unknown = sorted(set(event_types) - triggers.EVENT_TYPES)
        if unknown:
            raise InvalidArgument(f"unknown event types: {', '.join(unknown)}")
        if len(description) > 200:
            raise InvalidArgument("description is at most 200 characters")
        secret = _new_secret()
        now = self._clock()
        endpoint_id = "we-" + uuid.uuid4().hex
        with self.db.session() as session:
            row = WebhookEndpointRepository(session).add(
                WebhookEndpoint(
                    id=endpoint_id,
                    tenant=tenant,
                    url=url,
                    event_types=sorted(set(event_types)),
                    description=description,
                    active=True,
                    sealed_secret=self.sealer.seal(secret.encode(), endpoint_id),
                    created_at=now,
                )
            )
            payload = convert.webhook_endpoint_registered(
                endpoint_id, _url_for_event(url), row.event_types
            )
            self._emit(session, endpoint_id, tenant, [(NOTIFY_TOPIC, payload)])
            view = _endpoint_view(row)
        self.on_commit()
        return view, secret

    def rotate_secret(
        self, caller: Principal, endpoint_id: str, grace: timedelta | None
    ) -> tuple[EndpointView, str]:
        """A new secret; the current one stays valid for ``grace`` (the default when None)."""
        if not endpoint_id:
            raise InvalidArgument("endpoint_id is required")
        if grace is None:
            grace = timedelta(seconds=self.policy.webhook_secret_grace_seconds)
        if grace < timedelta(0) or grace > timedelta(days=30):
            raise InvalidArgument("grace_period must be between 0 and 30 days")
        secret = _new_secret()
        now = self._clock()
        with self.db.session() as session:
            row = WebhookEndpointRepository(session).get(endpoint_id)
            if caller.tenant is not None and row.tenant != caller.tenant:
                raise NotFound("webhook endpoint not found")
            current = self.sealer.open(row.sealed_secret, row.id)
            row.sealed_previous_secret = self.sealer.seal(current, row.id + ":previous")
            row.previous_secret_valid_until = now + grace
            row.sealed_secret = self.sealer.seal(secret.encode(), row.id)
            row.secret_rotated_at = now
            payload = convert.webhook_secret_rotated(row.id, now + grace)
            self._emit(session, row.id, row.tenant, [(NOTIFY_TOPIC, payload)])
            view = _endpoint_view(row)
        self.on_commit()
        return view, secret

    def list_endpoints(
        self, caller: Principal, tenant: str, page_size: int, page_token: str
    ) -> tuple[list[EndpointView], str]:
        """A tenant's endpoints, a page at a time."""
        tenant = self._tenant_for(caller, tenant)
        if not tenant:
            raise InvalidArgument("tenant_id is required")
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or MAX_PAGE, MAX_PAGE)
        with self.db.session() as session:
            rows = WebhookEndpointRepository(session).list_for_tenant(
                tenant, after=page_token, limit=size + 1
            )
            views = [_endpoint_view(r) for r in rows[:size]]
        token = views[-1].endpoint_id if len(rows) > size else ""
        return views, token

    def _check_url(self, url: str) -> None:
        if not url or len(url) > 2000:
            raise InvalidArgument("url is required (at most 2000 characters)")
        parsed = urllib.parse.urlsplit(url)
        allowed = ("https", "http") if self.policy.webhook_allow_http else ("https",)
        if parsed.scheme not in allowed:
            raise InvalidArgument("url must be an https URL")
        if not parsed.hostname:
            raise InvalidArgument("url must name a host")
        if parsed.username or parsed.password:
            raise InvalidArgument("url must not carry credentials")
        if parsed.fragment:
            raise InvalidArgument("url must not have a fragment")

    # ---- preferences -------------------------------------------------------------------

    def set_preferences(
        self,
        caller: Principal,
        account_id: str,
        changes: Mapping[Category, Sequence[ChannelKind]],
        locale: str,
    ) -> PreferencesView:
        """Replace the choices of the categories given; mandatory ones cannot be turned off."""
        self._check_account_access(caller, account_id)
        for category, channels in changes.items():
            if category in MANDATORY_CATEGORIES and channels:
                raise InvalidArgument(f"{category.name} notifications cannot be turned off")
        chosen = ""
        if locale:
            chosen = normalise_locale(locale)
            if chosen not in LOCALES:
                raise InvalidArgument(f"locale must be one of: {', '.join(LOCALES)}")
        with self.db.session() as session:
            prefs = PreferenceRepository(session).get_or_create(account_id)
            disabled = dict(prefs.disabled)
            for category, channels in changes.items():
                values = sorted({c.value for c in channels})
                if values:
                    disabled[category.value] = values
                else:
                    disabled.pop(category.value, None)
            prefs.disabled = disabled
            if chosen:
                prefs.locale = chosen
            prefs.updated_at = self._clock()
            session.flush()
            return _preferences_view(account_id, prefs.locale, prefs.disabled, prefs.updated_at)

    def get_preferences(self, caller: Principal, account_id: str) -> PreferencesView:
        """A recipient's preferences (defaults when none were set)."""
        self._check_account_access(caller, account_id)
        with self.db.session() as session:
            prefs = PreferenceRepository(session).get(account_id)
            if prefs is None:
                return _preferences_view(account_id, "", {}, None)
            return _preferences_view(account_id, prefs.locale, prefs.disabled, prefs.updated_at)

    def _check_account_access(self, caller: Principal, account_id: str) -> None:
        if not account_id:
            raise InvalidArgument("account_id is required")
        if len(account_id) > 64:
            raise InvalidArgument("account_id is at most 64 characters")
        if caller.tenant is None:
            return
        with self.db.session() as session:
            tenant = AccountRosterRepository(session).tenant_of(account_id)
        if tenant != caller.tenant:
            raise PermissionDenied("the account belongs to another tenant")

    # ---- incidents ---------------------------------------------------------------------

    def declare_incident(self, caller: Principal, request: IncidentRequest) -> tuple[str, int]:
        """Notify every affected account and record the notice in the evidence log.

        The incident, its notifications and the IncidentDeclared event commit together;
        the evidence append follows. When evidence is unreachable the call fails with
        UNAVAILABLE and a retry with the same idempotency key appends the same event
        (evidence ignores a repeated event id) without notifying anyone twice.
        """
        self._require_operator(caller)
        _check_incident(request)
        if request.idempotency_key:
            with self.db.session() as session:
                found = IncidentRepository(session).by_idempotency_key(request.idempotency_key)
                earlier = (
                    None
                    if found is None
                    else (
                        found.id,
                        found.notifications_queued,
                        found.event,
                        found.evidence_recorded,
                    )
                )
            if earlier is not None:
                incident_id, queued, event, recorded = earlier
                if not recorded:
                    self._record_evidence(incident_id, event)
                return incident_id, queued
        incident_id = "inc-" + uuid.uuid4().hex
        channels = request.channels or (ChannelKind.EMAIL, ChannelKind.SMS)
        declared_by = request.declared_by or caller.subject
        params = {
            "title": request.title,
            "what_happened_and_impact": request.notice.what_happened_and_impact,
            "measures_taken": request.notice.measures_taken,
            "advice": request.notice.advice,
            "remedies": request.notice.remedies,
        }
        with self.db.session() as session:
            accounts = self._affected(session, request)
            payload = convert.incident_declared(
                incident_id=incident_id,
                title=request.title,
                severity=request.severity,
                notice=request.notice,
                affected_account_count=len(accounts),
                declared_by=declared_by,
                happened_at=request.happened_at,
                discovered_at=request.discovered_at,
                regulator_notified_at=request.regulator_notified_at,
            )
            envelope = new_envelope(
                payload, source=SOURCE, subject=incident_id, tenant=request.tenant_scope
            )
            repo = DeliveryRepository(session)
            queued = 0
            for account_id in accounts:
                for channel in channels:
                    repo.add(
                        self._new_delivery(
                            session,
                            key=f"incident:{incident_id}",
                            channel=channel,
                            category=Category.INCIDENT_NOTICE,
                            template="incident-notice",
                            tenant=request.tenant_scope,
                            recipient_kind="account",
                            recipient_value=account_id,
                            recipient_hash=self.sealer.recipient_hash("account", account_id),
                            params=params,
                            source_event_id=envelope.id,
                        )
                    )
                    queued += 1
            IncidentRepository(session).add(
                Incident(
                    id=incident_id,
                    idempotency_key=request.idempotency_key or None,
                    title=request.title,
                    severity=request.severity,
                    notice=dict(
                        (k, params[k])
                        for k in (
                            "what_happened_and_impact",
                            "measures_taken",
                            "advice",
                            "remedies",
                        )
                    ),
                    scope=_scope_text(request),
                    affected_count=len(accounts),
                    notifications_queued=queued,
                    declared_by=declared_by,
                    declared_at=self._clock(),
                    event=encode_envelope(envelope),
                    evidence_recorded=False,
                )
            )
            Outbox.add(session, NOTIFY_TOPIC, envelope)
        self.on_commit()
        self.on_queued()
        log.warning(
            "security incident declared",
            extra={"incident_id": incident_id, "accounts": len(accounts), "queued": queued},
        )
        self._record_evidence(incident_id, encode_envelope(envelope))
        return incident_id, queued

    def _affected(self, session: Session, request: IncidentRequest) -> list[str]:
        if request.account_ids:
            return sorted(set(request.account_ids))
        roster = AccountRosterRepository(session)
        return roster.active(request.tenant_scope if not request.all_accounts else "")

    def _record_evidence(self, incident_id: str, event: bytes) -> None:
        envelope = decode_envelope(event)
        try:
            self.evidence.append(envelope)
        except ServiceError as err:
            log.warning(
                "incident notice not yet in the evidence log",
                extra={"incident_id": incident_id, "error": type(err).__name__},
            )
            raise Unavailable(
                "the incident is recorded and its notices are queued, but the evidence log "
                "is unavailable; retry with the same idempotency_key"
            ) from err
        with self.db.session() as session:
            IncidentRepository(session).get(incident_id).evidence_recorded = True


def _check_incident(request: IncidentRequest) -> None:
    if not request.title.strip():
        raise InvalidArgument("title is required")
    if len(request.title) > 200:
        raise InvalidArgument("title is at most 200 characters")
    notice = request.notice
    for name in ("what_happened_and_impact", "measures_taken", "advice", "remedies"):
        value = getattr(notice, name)
        if not value.strip():
            raise InvalidArgument(f"notice.{name} is required: users must be told all four items")
        if len(value) > 4000:
            raise InvalidArgument(f"notice.{name} is at most 4000 characters")
    scopes = sum(
        (bool(request.account_ids), bool(request.tenant_scope), bool(request.all_accounts))
    )
    if scopes != 1:
        raise InvalidArgument("scope is required: accounts, tenant_id or all_accounts")
    if any(c not in _PERSON_CHANNELS for c in request.channels):
        raise InvalidArgument("incident notices go by CHANNEL_EMAIL or CHANNEL_SMS")
    if len(request.idempotency_key) > 128:
        raise InvalidArgument("idempotency_key is at most 128 characters")


def _scope_text(request: IncidentRequest) -> str:
    if request.all_accounts:
        return "all"
    if request.tenant_scope:
        return f"tenant:{request.tenant_scope}"[:100]
    return "accounts"


def _recipient_target(channel: ChannelKind, recipient: RecipientSpec) -> tuple[str, str]:
    """(kind, normalised value) of a direct send's recipient, checked against the channel."""
    given = [
        (k, v)
        for k, v in (
            ("account", recipient.account_id),
            ("email", recipient.email),
            ("phone", recipient.phone),
            ("webhook", recipient.endpoint_id),
        )
        if v
    ]
    if len(given) != 1:
        raise InvalidArgument("recipient is required: one of account_id, address or endpoint")
    kind, value = given[0]
    allowed = {
        ChannelKind.EMAIL: ("account", "email"),
        ChannelKind.SMS: ("account", "phone"),
        ChannelKind.WEBHOOK: ("webhook",),
    }[channel]
    if kind not in allowed:
        raise InvalidArgument(f"a {channel.value} notification cannot go to a {kind} recipient")
    if len(value) > 254:
        raise InvalidArgument("recipient is too long")
    if kind == "email":
        value = value.strip()
        if not _EMAIL_RE.match(value):
            raise InvalidArgument("recipient.email_address is not an e-mail address")
        local, _, domain = value.partition("@")
        value = f"{local}@{domain.lower()}"
    if kind == "phone":
        value = re.sub(r"[\s-]", "", value)
        if not _PHONE_RE.match(value):
            raise InvalidArgument("recipient.phone_number is not a phone number")
    return kind, value


def _masked(kind: str, value: str) -> str:
    if kind == "email":
        return mask_email(value)
    if kind == "phone":
        return mask_phone(value)
    if kind == "account":
        return f"account:{value}"
    return value


def _address_of(contact: Contact, channel: ChannelKind) -> str:
    return contact.email if channel is ChannelKind.EMAIL else contact.phone


def _event_type_of(body: str | None) -> str:
    if not body:
        return ""
    try:
        value = json.loads(body).get("type", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _url_for_event(url: str) -> str:
    """The URL without its query (which may carry a receiver's token) for events."""
    parsed = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))


def _endpoint_view(row: WebhookEndpoint) -> EndpointView:
    return EndpointView(
        endpoint_id=row.id,
        tenant=row.tenant,
        url=row.url,
        event_types=tuple(row.event_types),
        description=row.description,
        active=row.active,
        created_at=row.created_at,
        secret_rotated_at=row.secret_rotated_at,
        previous_secret_valid_until=row.previous_secret_valid_until,
    )


def _preferences_view(
    account_id: str, locale: str, disabled: Mapping[str, list[str]], updated_at: datetime | None
) -> PreferencesView:
    return PreferencesView(
        account_id=account_id,
        locale=locale,
        disabled={
            Category(category): tuple(ChannelKind(c) for c in channels)
            for category, channels in disabled.items()
        },
        updated_at=updated_at,
    )
