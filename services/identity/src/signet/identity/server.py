"""The identity process: ``python -m signet.identity`` or ``signet-identity``."""

from __future__ import annotations

from signet.common.runtime import Runtime, run
from signet.identity.config import IdentitySettings
from signet.identity.models import MIGRATIONS_DIR
from signet.identity.v1 import identity_pb2, identity_pb2_grpc

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    runtime = Runtime.open(IdentitySettings(), MIGRATIONS_DIR)
    run(
        runtime,
        # Every RPC answers UNIMPLEMENTED until this service's servicer is built.
        identity_pb2_grpc.IdentityServiceServicer(),  # type: ignore[abstract]
        identity_pb2_grpc.add_IdentityServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
