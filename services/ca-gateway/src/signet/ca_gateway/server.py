"""The ca-gateway process: ``python -m signet.ca_gateway`` or ``signet-ca-gateway``.

At start it migrates its database, connects to the signer and identity, bootstraps the
built-in CA hierarchy in the HSM if this is the first start (root, issuing CA, then the
delegated OCSP responder), and serves gRPC, the relying-party HTTP endpoints and the
scheduler (renewals, CRLs, key retirements, expiry notices) until SIGTERM.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from signet.ca_gateway.authority import HierarchySettings, PublicUrls, ensure_builtin_ca
from signet.ca_gateway.clients import GrpcAccountDirectory, GrpcKeyService
from signet.ca_gateway.config import CaGatewaySettings
from signet.ca_gateway.http import RelyingPartyServer
from signet.ca_gateway.models import MIGRATIONS_DIR
from signet.ca_gateway.service import CaGateway, Naming
from signet.ca_gateway.servicer import CaGatewayServicer
from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.channels import create_channel
from signet.common.db import utcnow
from signet.common.errors import ServiceError, Unavailable
from signet.common.keys import KeyAlgorithm
from signet.common.periodic import PeriodicTask
from signet.common.runtime import Runtime, run

SERVICE_NAME = ca_gateway_pb2.DESCRIPTOR.services_by_name["CaGatewayService"].full_name
_log = logging.getLogger("signet.ca_gateway.server")


def build_gateway(settings: CaGatewaySettings, runtime: Runtime) -> CaGateway:
    """Connect to the signer and identity and bootstrap the built-in CA."""
    token = settings.service_token.get_secret_value() or None
    signer = create_channel(
        settings.signer_targets, default_timeout=settings.call_timeout_seconds, bearer_token=token
    )
    identity = create_channel(
        settings.identity_targets, default_timeout=settings.call_timeout_seconds, bearer_token=token
    )
    keys = GrpcKeyService(signer, settings.call_timeout_seconds)
    builtin = ensure_builtin_ca(
        runtime.db,
        keys,
        HierarchySettings(
            organization=settings.organization,
            country=settings.country,
            root_ca_id=settings.root_ca_id,
            issuing_ca_id=settings.issuing_ca_id,
            root_algorithm=KeyAlgorithm(settings.root_key_algorithm),
            issuing_algorithm=KeyAlgorithm(settings.issuing_key_algorithm),
            root_validity=timedelta(days=settings.root_validity_days),
            issuing_validity=timedelta(days=settings.issuing_validity_days),
            policy_oid=settings.certificate_policy_oid,
            cps_url=settings.cps_url,
        ),
        PublicUrls(settings.base_url),
        clock=utcnow,
    )
    gateway = CaGateway(
        db=runtime.db,
        keys=keys,
        accounts=GrpcAccountDirectory(identity, settings.call_timeout_seconds),
        authority=builtin,
        builtin=builtin,
        naming=Naming(organization=settings.organization, country=settings.country),
        crl_validity=timedelta(hours=settings.crl_validity_hours),
        ocsp_validity=timedelta(seconds=settings.ocsp_validity_seconds),
        on_commit=runtime.committed,
    )
    gateway.ensure_ocsp_responder()
    return gateway


def main() -> None:
    """Migrate, bootstrap the CA, then serve gRPC, HTTP and the scheduler until SIGTERM."""
    settings = CaGatewaySettings()
    runtime = Runtime.open(settings, MIGRATIONS_DIR)
    deadline = time.monotonic() + settings.startup_timeout_seconds
    while True:
        try:
            gateway = build_gateway(settings, runtime)
            break
        except Unavailable as err:
            # The signer (or the database) may still be starting: services start together.
            if time.monotonic() >= deadline:
                runtime.close()
                raise SystemExit(f"ca-gateway: cannot start: {err.message}") from None
            _log.warning("waiting for a dependency", extra={"reason": err.message})
            time.sleep(1.0)
        except ServiceError as err:
            runtime.close()
            raise SystemExit(f"ca-gateway: cannot start: {err.message}") from None
    runtime.background.append(RelyingPartyServer(gateway, settings.http_host, settings.http_port))
    runtime.background.append(
        PeriodicTask("ca-scheduler", settings.scheduler_interval_seconds, gateway.tick)
    )
    run(
        runtime,
        CaGatewayServicer(gateway),
        ca_gateway_pb2_grpc.add_CaGatewayServiceServicer_to_server,
        service_names=[SERVICE_NAME],
    )
