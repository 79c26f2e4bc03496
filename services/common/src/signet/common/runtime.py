"""How a Signet service process is put together, once for all five.

A service's ``main()`` builds its settings and servicer and hands them to :func:`run`:
the database is opened and migrated to head before the port opens, the outbox relay runs
beside the server when Kafka is configured, and :func:`~signet.common.server.serve` does
the rest (health, reflection, interceptors, metrics, drain on SIGTERM).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from signet.common.auth import Authenticator
from signet.common.config import ServiceSettings
from signet.common.credentials import platform_authenticator
from signet.common.db import Database
from signet.common.kafka import KafkaPublisher
from signet.common.kafkaconfig import kafka_client_config
from signet.common.logging import configure_logging
from signet.common.outbox import OutboxRelay
from signet.common.server import Background, serve

_log = logging.getLogger("signet.common.runtime")


@dataclass
class Runtime:
    """What a servicer is built on: settings, the migrated database, background loops."""

    settings: ServiceSettings
    db: Database
    relay: OutboxRelay | None = None
    background: list[Background] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: ServiceSettings,
        migrations_dir: str | Path | None,
        *,
        relay: bool = True,
    ) -> Runtime:
        """Open the database, migrate it, and set up the outbox relay when Kafka is set.

        ``migrations_dir`` None skips migrating and ``relay`` False skips the relay: worker
        processes of one service pass ``None`` (their parent migrated) and let only
        one of them relay.
        """
        configure_logging(settings.service_name, settings.log_level)
        db = Database.from_url(settings.database_url, echo=settings.database_echo)
        if migrations_dir is not None:
            db.migrate(migrations_dir)
        runtime = cls(settings=settings, db=db)
        if not relay:
            return runtime
        if settings.kafka_bootstrap:
            publisher = KafkaPublisher(
                settings.kafka_bootstrap,
                client_id=settings.kafka_client_id or f"signet-{settings.service_name}",
                **kafka_client_config(settings),
            )
            runtime.relay = OutboxRelay(db, publisher, settings.outbox_poll_seconds)
            runtime.background.append(_RelayTask(runtime.relay, publisher))
        else:
            _log.warning("no Kafka bootstrap configured: events stay in the outbox")
        return runtime

    def committed(self) -> None:
        """Tell the relay a transaction with events committed, so it publishes now."""
        if self.relay is not None:
            self.relay.wake()

    def close(self) -> None:
        """Release the database pool."""
        self.db.dispose()


@dataclass
class _RelayTask:
    """The relay and its producer as one background task: stop the relay, then close."""

    relay: OutboxRelay
    publisher: KafkaPublisher

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        try:
            self.relay.stop()
        finally:
            self.publisher.close()


def run(
    runtime: Runtime,
    servicer: Any,
    add_to_server: Callable[[Any, grpc.Server], None],
    *,
    service_names: Sequence[str],
    authenticator: Authenticator | None = None,
) -> None:
    """Serve ``servicer`` until SIGTERM, then drain, stop the loops and close the database.

    ``authenticator`` defaults to the service's ``auth_mode`` credentials plus tenants'
    API credentials checked by identity (:func:`~signet.common.credentials.platform_authenticator`).
    """
    try:
        serve(
            runtime.settings,
            lambda server: add_to_server(servicer, server),
            service_names=service_names,
            authenticator=authenticator or platform_authenticator(runtime.settings),
            background=runtime.background,
        )
    finally:
        runtime.close()
