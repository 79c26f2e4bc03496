"""The ca-gateway process: ``python -m signet.ca_gateway`` or ``signet-ca-gateway``."""

from __future__ import annotations

from signet.ca_gateway.config import CaGatewaySettings
from signet.ca_gateway.models import MIGRATIONS_DIR
from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.runtime import Runtime, run

SERVICE_NAME = ca_gateway_pb2.DESCRIPTOR.services_by_name["CaGatewayService"].full_name


def main() -> None:
    """Migrate the database, then serve until SIGTERM."""
    runtime = Runtime.open(CaGatewaySettings(), MIGRATIONS_DIR)
    run(
        runtime,
        # Every RPC answers UNIMPLEMENTED until this service's servicer is built.
        ca_gateway_pb2_grpc.CaGatewayServiceServicer(),  # type: ignore[abstract]
        ca_gateway_pb2_grpc.add_CaGatewayServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
