"""The notify process: ``python -m signet.notify`` or ``signet-notify``.

Composition root: the channel senders (SMTP, the HTTP SMS provider, webhooks), the gRPC
clients of identity and evidence, the service, its dispatcher loop and, when Kafka is
configured, the consumer of the Signet topics that turns events into notifications.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry

from signet.common.channels import create_channel
from signet.common.db import Database
from signet.common.events import EventEnvelope
from signet.common.kafka import KafkaConsumerLoop
from signet.common.runtime import Runtime, run
from signet.common.server import Background
from signet.notify.backends.grpc_peers import GrpcContactDirectory, GrpcEvidenceLog
from signet.notify.backends.sms_http import HttpSmsSender
from signet.notify.backends.smtp import SmtpEmailSender
from signet.notify.backends.webhook import HttpWebhookSender
from signet.notify.config import NotifySettings
from signet.notify.dispatcher import Dispatcher
from signet.notify.domain import ChannelKind, ChannelSender, ContactDirectory, EvidenceLog
from signet.notify.metrics import NotifyMetrics
from signet.notify.models import MIGRATIONS_DIR
from signet.notify.sealing import Sealer
from signet.notify.service import DeliveryPolicy, NotifyService
from signet.notify.servicer import NotifyServicer
from signet.notify.templates import TemplateCatalog
from signet.notify.triggers import TOPICS
from signet.notify.v1 import notify_pb2, notify_pb2_grpc

SERVICE_NAME = notify_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name


def senders_from(settings: NotifySettings) -> dict[ChannelKind, ChannelSender]:
    """The channel senders the settings describe."""
    return {
        ChannelKind.EMAIL: SmtpEmailSender(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.smtp_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout_seconds,
        ),
        ChannelKind.SMS: HttpSmsSender(
            settings.sms_provider_url,
            settings.sms_provider_token.get_secret_value(),
            timeout=settings.sms_timeout_seconds,
        ),
        ChannelKind.WEBHOOK: HttpWebhookSender(timeout=settings.webhook_timeout_seconds),
    }


def policy_from(settings: NotifySettings) -> DeliveryPolicy:
    """Retry, lease and rate-limit policy from the settings."""
    return DeliveryPolicy(
        max_attempts=settings.max_attempts,
        retry_initial_seconds=settings.retry_initial_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        retry_jitter_seconds=settings.retry_jitter_seconds,
        claim_lease_seconds=settings.claim_lease_seconds,
        recipient_rate_limit=settings.recipient_rate_limit,
        recipient_rate_window_seconds=settings.recipient_rate_window_seconds,
        webhook_secret_grace_seconds=settings.webhook_secret_grace_seconds,
        webhook_allow_http=settings.webhook_allow_http,
    )


@dataclass
class NotifyApp:
    """The service and the loops that run beside the gRPC server."""

    service: NotifyService
    dispatcher: Dispatcher
    consumer: KafkaConsumerLoop | None

    @property
    def background(self) -> list[Background]:
        """Dispatcher first, so the consumer's first events find it running."""
        loops: list[Background] = [self.dispatcher]
        if self.consumer is not None:
            loops.append(self.consumer)
        return loops


def build(
    settings: NotifySettings,
    db: Database,
    *,
    directory: ContactDirectory,
    evidence: EvidenceLog,
    senders: dict[ChannelKind, ChannelSender] | None = None,
    registry: CollectorRegistry = REGISTRY,
    on_commit: Callable[[], None] | None = None,
    topics: Sequence[str] = TOPICS,
) -> NotifyApp:
    """Wire service, dispatcher and (with Kafka) the event consumer of ``topics``."""
    catalog = TemplateCatalog.from_file(
        settings.template_overrides_file,
        default_locale=settings.default_locale,
        sms_signature=settings.sms_signature,
    )
    service = NotifyService(
        db=db,
        sealer=Sealer.from_setting(settings.data_key.get_secret_value()),
        catalog=catalog,
        senders=senders if senders is not None else senders_from(settings),
        directory=directory,
        evidence=evidence,
        metrics=NotifyMetrics.create(registry),
        policy=policy_from(settings),
        consumer_group=settings.consumer_group,
        operators=frozenset(
            p.strip() for p in settings.operator_principals.split(",") if p.strip()
        ),
    )
    if on_commit is not None:
        service.on_commit = on_commit
    dispatcher = Dispatcher(
        service, workers=settings.dispatch_workers, poll_seconds=settings.dispatch_poll_seconds
    )
    service.on_queued = dispatcher.wake
    consumer = None
    if settings.kafka_bootstrap:

        def handle(envelope: EventEnvelope, _record: object) -> None:
            service.handle_event(envelope)

        consumer = KafkaConsumerLoop(
            settings.kafka_bootstrap,
            settings.consumer_group,
            topics,
            handle,
            client_id=settings.kafka_client_id or f"signet-{settings.service_name}",
        )
    return NotifyApp(service, dispatcher, consumer)


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    settings = NotifySettings()
    runtime = Runtime.open(settings, MIGRATIONS_DIR)
    # Notify presents its own service token to identity and evidence unless told otherwise.
    token = (
        settings.peer_token.get_secret_value() or settings.service_token.get_secret_value() or None
    )
    identity = create_channel(
        settings.identity_targets,
        default_timeout=settings.peer_timeout_seconds,
        bearer_token=token,
    )
    evidence = create_channel(
        settings.evidence_targets,
        default_timeout=settings.peer_timeout_seconds,
        bearer_token=token,
    )
    app = build(
        settings,
        runtime.db,
        directory=GrpcContactDirectory(identity),
        evidence=GrpcEvidenceLog(evidence),
        on_commit=runtime.committed,
    )
    runtime.background.extend(app.background)
    try:
        run(
            runtime,
            NotifyServicer(app.service),
            notify_pb2_grpc.add_NotifyServiceServicer_to_server,
            service_names=[SERVICE_NAME],
        )
    finally:
        identity.close()
        evidence.close()
