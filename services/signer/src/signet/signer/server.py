"""The signer process: ``python -m signet.signer`` or ``signet-signer``."""

from __future__ import annotations

from signet.common.runtime import Runtime, run
from signet.signer.config import SignerSettings
from signet.signer.models import MIGRATIONS_DIR
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    runtime = Runtime.open(SignerSettings(), MIGRATIONS_DIR)
    run(
        runtime,
        # Every RPC answers UNIMPLEMENTED until this service's servicer is built.
        signer_pb2_grpc.SignerServiceServicer(),  # type: ignore[abstract]
        signer_pb2_grpc.add_SignerServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
