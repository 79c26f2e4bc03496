"""The evidence process: ``python -m signet.evidence`` or ``signet-evidence``.

Composition root: the database, the signer (log and TSA keys) and the ca-gateway (TSA
certificate, certificates for packages) as gRPC clients, the log with its sequencer, the
Kafka consumer of every topic, the TSA with its HTTP face, witnesses, and the gRPC server.

The service serves at once, even while the signer or the ca-gateway is not answering yet:
appends are queued from the first moment; the sequencer obtains the log key and signs the
first head as soon as the signer answers, and the TSA gets its certificate in the
background. Until then the calls that need them answer FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging
import threading

from signet.common.channels import TlsConfig, create_channel
from signet.common.errors import ServiceError
from signet.common.events import ALL_TOPICS
from signet.common.kafka import KafkaConsumerLoop
from signet.common.leader import LeaderLease
from signet.common.runtime import Runtime, run
from signet.evidence.backends.ca_gateway import CaGatewayDirectory, CaGatewayTsaCertificates
from signet.evidence.backends.signer import SignerKeyService
from signet.evidence.backends.witness import FileWitness, HttpWitness
from signet.evidence.config import EvidenceSettings
from signet.evidence.consumer import GROUP, EvidenceConsumer
from signet.evidence.domain import WitnessExporter
from signet.evidence.http import EvidenceHttpServer
from signet.evidence.models import MIGRATIONS_DIR
from signet.evidence.package import PackageBuilder
from signet.evidence.service import EvidenceLog, Sequencer
from signet.evidence.servicer import EvidenceServicer
from signet.evidence.tsa import TimestampAuthority
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc

SERVICE_NAME = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name
_log = logging.getLogger("signet.evidence.server")


def witnesses(settings: EvidenceSettings) -> list[WitnessExporter]:
    """The configured witnesses."""
    found: list[WitnessExporter] = []
    if settings.witness_dir:
        found.append(FileWitness(settings.witness_dir))
    for url in filter(None, (u.strip() for u in settings.witness_urls.split(","))):
        found.append(HttpWitness(url))
    return found


class TsaStarter:
    """Obtains the TSA certificate in the background, retrying until the ca-gateway answers.

    Until then the TSA refuses requests (FAILED_PRECONDITION / an HTTP 503-like rejection),
    and the rest of the service works.
    """

    def __init__(self, tsa: TimestampAuthority) -> None:
        self._tsa = tsa
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start trying."""
        self._thread = threading.Thread(target=self._run, name="evidence-tsa-start", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._tsa.start()
            except ServiceError as err:
                _log.warning(
                    "TSA not ready; retrying",
                    extra={"error": type(err).__name__, "backoff_seconds": backoff},
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            _log.info("TSA ready")
            return


def main() -> None:
    """Migrate the database, start the log, then serve until SIGTERM."""
    settings = EvidenceSettings()
    runtime = Runtime.open(settings, MIGRATIONS_DIR)
    token = settings.service_token.get_secret_value() or None
    tls = TlsConfig.from_settings(settings)
    timeout = settings.call_timeout_seconds
    signer = create_channel(
        settings.signer_targets, default_timeout=timeout, tls=tls, bearer_token=token
    )
    keys = SignerKeyService(signer)
    log = EvidenceLog(
        runtime.db,
        keys,
        batch_size=settings.batch_size,
        on_commit=runtime.committed,
        witnesses=witnesses(settings),
    )
    tsa: TimestampAuthority | None = None
    directory: CaGatewayDirectory | None = None
    if settings.ca_gateway_targets:
        ca = create_channel(
            settings.ca_gateway_targets, default_timeout=timeout, tls=tls, bearer_token=token
        )
        directory = CaGatewayDirectory(ca)
        if settings.tsa_enabled:
            tsa = TimestampAuthority(
                runtime.db,
                keys,
                CaGatewayTsaCertificates(ca),
                policy_oid=settings.tsa_policy_oid,
                on_commit=runtime.committed,
            )
            runtime.background.append(TsaStarter(tsa))
    packages = PackageBuilder(runtime.db, log, directory, tsa, on_commit=runtime.committed)
    runtime.background.append(
        Sequencer(
            log,
            settings.integrate_interval_seconds,
            settings.sign_interval_seconds,
            lease=LeaderLease(runtime.db.engine, "evidence-sequencer"),
        )
    )
    if settings.kafka_bootstrap and settings.consume:
        runtime.background.append(
            KafkaConsumerLoop(
                settings.kafka_bootstrap,
                GROUP,
                ALL_TOPICS,
                EvidenceConsumer(log),
                # A topic created after start-up (a fresh platform) is noticed at the next
                # metadata refresh: every 30 s rather than the client's default 5 minutes.
                metadata_max_age_ms=30_000,
            )
        )
    if settings.http_enabled:
        runtime.background.append(
            EvidenceHttpServer(settings.grpc_host, settings.http_port, log, tsa)
        )
    try:
        run(
            runtime,
            EvidenceServicer(log, tsa, packages),
            evidence_pb2_grpc.add_EvidenceServiceServicer_to_server,
            service_names=[SERVICE_NAME],
        )
    finally:
        log.close()
