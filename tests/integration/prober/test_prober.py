"""The prober against a real signer on SoftHSM and test doubles of the other services.

The signer is the real one (in-process, SoftHSM token): the prober creates its own system
key, signs the probe digest and verifies it. The other services are in-process gRPC test
doubles over the real generated servicer base classes: EvidenceTestDouble signs real RFC
6962 tree heads, CaGatewayTestDouble serves a CA certificate and its CRL over HTTP,
NotifyTestDouble answers NOT_FOUND, and identity is the bare base servicer (UNIMPLEMENTED,
which the prober must report as a failure). The CSV it writes feeds signet-sla.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.auth import StaticTokenAuthenticator, hash_token
from signet.common.channels import create_channel
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from signet.identity.v1 import identity_pb2_grpc
from signet.notify.v1 import notify_pb2_grpc
from signet.prober.checks import tree_head_signed_bytes
from signet.prober.config import ProberSettings
from signet.prober.probe import CsvResults, Prober, ProberMetrics
from signet.prober.server import build_probes, open_channels
from signet.prober.slacli import main as sla_main
from signet.signer.servicer import SignerServicer
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.signer import signer_harness

pytestmark = pytest.mark.softhsm

PROBER_TOKEN = f"token-prober-{uuid.uuid4().hex}"


class EvidenceTestDouble(evidence_pb2_grpc.EvidenceServiceServicer):
    """Signs tree heads with an in-memory P-256 key, as the evidence log will with its HSM key."""

    def __init__(self, *, tamper: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.tamper = tamper

    def GetLogPublicKey(self, request: Any, context: Any) -> Any:
        return evidence_pb2.GetLogPublicKeyResponse(
            log_id=hashlib.sha256(self.spki).digest(), spki_der=self.spki
        )

    def GetSignedTreeHead(self, request: Any, context: Any) -> Any:
        root = hashlib.sha256(b"entries").digest()
        head = evidence_pb2.SignedTreeHead(
            log_id=hashlib.sha256(self.spki).digest(), tree_size=42, root_hash=root
        )
        head.timestamp.FromDatetime(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
        signed = tree_head_signed_bytes(head.timestamp.seconds * 1000, 42, root)
        head.signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        if self.tamper:
            head.tree_size = 43
        return evidence_pb2.GetSignedTreeHeadResponse(tree_head=head)


class NotifyTestDouble(notify_pb2_grpc.NotifyServiceServicer):
    """Knows no notification: every lookup is NOT_FOUND."""

    def GetDeliveryStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such notification")


class CaGatewayTestDouble(ca_gateway_pb2_grpc.CaGatewayServiceServicer):
    """One self-signed CA whose CRL an HTTP server publishes."""

    def __init__(self, crl_base_url: str, ca_der: bytes) -> None:
        self.crl_base_url = crl_base_url
        self.ca_der = ca_der

    def GetCaCertificates(self, request: Any, context: Any) -> Any:
        return ca_gateway_pb2.GetCaCertificatesResponse(
            certificates=[
                ca_gateway_pb2.CaCertificate(
                    ca_id="issuing-1",
                    der=self.ca_der,
                    crl_url=f"{self.crl_base_url}/crl/issuing-1.crl",
                )
            ]
        )


def _ca_and_crl(*, stale: bool = False) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Probe Test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    next_update = now - timedelta(hours=1) if stale else now + timedelta(hours=12)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now - timedelta(hours=2))
        .next_update(next_update)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER), crl.public_bytes(
        serialization.Encoding.DER
    )


class CrlHttpServer:
    """Serves /crl/<ca>.crl like the CA gateway's relying-party endpoint."""

    def __init__(self, crl: bytes) -> None:
        body = crl

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not self.path.startswith("/crl/"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve(register: Any, name: str, auth: StaticTokenAuthenticator) -> InProcessServer:
    server = InProcessServer(
        register,
        service_names=[name],
        settings=settings_for_tests(service_name=name.split(".")[1]),
        authenticator=auth,
    )
    server.start()
    return server


@pytest.fixture
def platform(pkcs11_pool: Pkcs11Pool, tmp_path: Path) -> Iterator[dict[str, Any]]:
    auth = StaticTokenAuthenticator({"prober": hash_token(PROBER_TOKEN)})
    ca_der, crl = _ca_and_crl()
    crl_server = CrlHttpServer(crl)
    servers: list[InProcessServer] = []
    with signer_harness(pkcs11_pool, tmp_path) as harness:
        try:
            signer = SignerServicer(harness.signer)
            servers.append(
                _serve(
                    lambda s: signer_pb2_grpc.add_SignerServiceServicer_to_server(signer, s),
                    "signet.signer.v1.SignerService",
                    auth,
                )
            )
            evidence = EvidenceTestDouble()  # type: ignore[abstract]
            servers.append(
                _serve(
                    lambda s: evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(evidence, s),
                    "signet.evidence.v1.EvidenceService",
                    auth,
                )
            )
            notify = NotifyTestDouble()  # type: ignore[abstract]
            servers.append(
                _serve(
                    lambda s: notify_pb2_grpc.add_NotifyServiceServicer_to_server(notify, s),
                    "signet.notify.v1.NotifyService",
                    auth,
                )
            )
            identity = identity_pb2_grpc.IdentityServiceServicer()  # type: ignore[abstract]
            servers.append(
                _serve(
                    lambda s: identity_pb2_grpc.add_IdentityServiceServicer_to_server(identity, s),
                    "signet.identity.v1.IdentityService",
                    auth,
                )
            )
            ca = CaGatewayTestDouble("https://pki.example.invalid", ca_der)  # type: ignore[abstract]
            servers.append(
                _serve(
                    lambda s: ca_gateway_pb2_grpc.add_CaGatewayServiceServicer_to_server(ca, s),
                    "signet.ca_gateway.v1.CaGatewayService",
                    auth,
                )
            )
            settings = ProberSettings(
                auth_mode="token",
                service_token=SecretStr(PROBER_TOKEN),
                signer_targets=servers[0].address,
                evidence_targets=servers[1].address,
                notify_targets=servers[2].address,
                identity_targets=servers[3].address,
                ca_gateway_targets=servers[4].address,
                ca_gateway_http_url=crl_server.url,
                timeout_seconds=10,
            )
            yield {"settings": settings, "harness": harness, "dir": tmp_path}
        finally:
            for server in servers:
                server.stop()
            crl_server.close()


def test_one_round_checks_every_service_and_reports_unimplemented(platform: dict[str, Any]) -> None:
    settings: ProberSettings = platform["settings"]
    channels = open_channels(settings)
    registry = CollectorRegistry()
    results = CsvResults(platform["dir"] / "probes")
    prober = Prober(build_probes(settings, channels), 10, ProberMetrics(registry), results)
    try:
        outcomes = {o.service: o for o in prober.round()}
        again = {o.service: o for o in prober.round()}
    finally:
        for channel in channels.values():
            channel.close()
    assert outcomes["signer"].ok, outcomes["signer"].detail
    assert outcomes["evidence"].ok, outcomes["evidence"].detail
    assert outcomes["notify"].ok, outcomes["notify"].detail
    assert outcomes["ca-gateway"].ok, outcomes["ca-gateway"].detail
    assert not outcomes["identity"].ok
    assert outcomes["identity"].detail == "grant-verification-keys: UNIMPLEMENTED"
    assert again["signer"].ok
    # The prober's key is created once and reused (CreateKey is idempotent on request_id).
    channel = create_channel(settings.signer_targets, default_timeout=10, bearer_token=PROBER_TOKEN)
    try:
        keys = signer_pb2_grpc.SignerServiceStub(channel).ListKeys(
            signer_pb2.ListKeysRequest(system_owner="prober")
        )
    finally:
        channel.close()
    assert len(keys.keys) == 1
    assert keys.keys[0].sign_count == 2
    assert (
        registry.get_sample_value("signet_prober_minute_success", {"probed_service": "signer"}) == 1
    )
    assert (
        registry.get_sample_value("signet_prober_minute_success", {"probed_service": "identity"})
        == 0
    )
    assert (
        registry.get_sample_value(
            "signet_prober_checks_total",
            {"probed_service": "identity", "check": "grant-verification-keys", "result": "failure"},
        )
        == 2
    )
    csv_files = list((platform["dir"] / "probes").glob("probes-*.csv"))
    assert len(csv_files) == 1
    lines = csv_files[0].read_text().splitlines()
    assert lines[0] == "minute,service,ok,latency_ms,detail,tenant"
    assert len(lines) == 1 + 2 * 5


def test_the_prober_csv_feeds_the_sla_report(
    platform: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings: ProberSettings = platform["settings"]
    channels = open_channels(settings)
    results = CsvResults(platform["dir"] / "probes")
    prober = Prober(
        build_probes(settings, channels), 10, ProberMetrics(CollectorRegistry()), results
    )
    try:
        outcomes = prober.round()
    finally:
        for channel in channels.values():
            channel.close()
    month = outcomes[0].minute.strftime("%Y-%m")
    csv_path = results.path_for(outcomes[0].minute)
    assert sla_main(["--month", month, "--csv", str(csv_path), "--format", "json"]) == 0
    rows = {r["service"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"ALL", "ca-gateway", "evidence", "identity", "notify", "signer"}
    assert rows["identity"]["bad_minutes"] == 1
    # One failed minute is not SLA downtime.
    assert rows["identity"]["unavailable_minutes"] == 0


def test_tampered_tree_head_and_stale_crl_fail(pkcs11_pool: Pkcs11Pool) -> None:
    auth = StaticTokenAuthenticator({"prober": hash_token(PROBER_TOKEN)})
    ca_der, crl = _ca_and_crl(stale=True)
    crl_server = CrlHttpServer(crl)
    evidence = EvidenceTestDouble(tamper=True)  # type: ignore[abstract]
    ca = CaGatewayTestDouble(crl_server.url, ca_der)  # type: ignore[abstract]
    servers = [
        _serve(
            lambda s: evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(evidence, s),
            "signet.evidence.v1.EvidenceService",
            auth,
        ),
        _serve(
            lambda s: ca_gateway_pb2_grpc.add_CaGatewayServiceServicer_to_server(ca, s),
            "signet.ca_gateway.v1.CaGatewayService",
            auth,
        ),
    ]
    settings = ProberSettings(
        auth_mode="token",
        service_token=SecretStr(PROBER_TOKEN),
        evidence_targets=servers[0].address,
        ca_gateway_targets=servers[1].address,
    )
    channels = open_channels(settings)
    try:
        prober = Prober(build_probes(settings, channels), 5, ProberMetrics(CollectorRegistry()))
        outcomes = {o.service: o for o in prober.round()}
    finally:
        for channel in channels.values():
            channel.close()
        for server in servers:
            server.stop()
        crl_server.close()
    assert outcomes["evidence"].detail == "signed-tree-head: signature does not verify"
    assert (
        outcomes["ca-gateway"].detail
        == "ca-certificates-and-crl: CRL of issuing-1 is past its next update"
    )


def test_a_caller_without_the_prober_token_is_refused(platform: dict[str, Any]) -> None:
    settings: ProberSettings = platform["settings"].model_copy(
        update={"service_token": SecretStr("")}
    )
    channels = open_channels(settings)
    try:
        prober = Prober(build_probes(settings, channels), 5, ProberMetrics(CollectorRegistry()))
        outcomes = {o.service: o for o in prober.round()}
    finally:
        for channel in channels.values():
            channel.close()
    # Health is exempt from authentication; the API call is not.
    assert outcomes["signer"].detail == "sign-and-verify: UNAUTHENTICATED"


def test_once_command_prints_each_service_and_fails_on_unimplemented(
    platform: dict[str, Any], tmp_path: Path
) -> None:
    settings: ProberSettings = platform["settings"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SIGNET_PROBER_AUTH_MODE": "token",
        "SIGNET_PROBER_SERVICE_TOKEN": PROBER_TOKEN,
        "SIGNET_PROBER_SIGNER_TARGETS": settings.signer_targets,
        "SIGNET_PROBER_EVIDENCE_TARGETS": settings.evidence_targets,
        "SIGNET_PROBER_NOTIFY_TARGETS": settings.notify_targets,
        "SIGNET_PROBER_IDENTITY_TARGETS": settings.identity_targets,
        "SIGNET_PROBER_CA_GATEWAY_TARGETS": settings.ca_gateway_targets,
        "SIGNET_PROBER_CA_GATEWAY_HTTP_URL": settings.ca_gateway_http_url,
        "SIGNET_PROBER_CSV_DIR": str(tmp_path / "unused"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "signet.prober", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines()}
    assert lines["signer"].startswith("ok")
    assert lines["ca-gateway"].startswith("ok")
    assert lines["identity"].startswith("FAILED")
    assert lines["identity"].endswith("grant-verification-keys: UNIMPLEMENTED")
    # --once writes no CSV: a test round is not a measured minute.
    assert not (tmp_path / "unused").exists()


def test_once_command_without_targets_says_so() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "signet.prober", "--once"],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "no SIGNET_PROBER_<SERVICE>_TARGETS configured" in proc.stderr
