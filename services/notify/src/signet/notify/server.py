"""The notify process: ``python -m signet.notify`` or ``signet-notify``."""

from __future__ import annotations

from signet.common.runtime import Runtime, run
from signet.notify.config import NotifySettings
from signet.notify.models import MIGRATIONS_DIR
from signet.notify.v1 import notify_pb2, notify_pb2_grpc

SERVICE_NAME = notify_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    runtime = Runtime.open(NotifySettings(), MIGRATIONS_DIR)
    run(
        runtime,
        # Every RPC answers UNIMPLEMENTED until this service's servicer is built.
        notify_pb2_grpc.NotifyServiceServicer(),  # type: ignore[abstract]
        notify_pb2_grpc.add_NotifyServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
