"""The evidence process: ``python -m signet.evidence`` or ``signet-evidence``."""

from __future__ import annotations

from signet.common.runtime import Runtime, run
from signet.evidence.config import EvidenceSettings
from signet.evidence.models import MIGRATIONS_DIR
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc

SERVICE_NAME = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    runtime = Runtime.open(EvidenceSettings(), MIGRATIONS_DIR)
    run(
        runtime,
        # Every RPC answers UNIMPLEMENTED until this service's servicer is built.
        evidence_pb2_grpc.EvidenceServiceServicer(),  # type: ignore[abstract]
        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
