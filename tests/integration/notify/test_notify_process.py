"""notify as operators run it: ``python -m signet.notify`` with Kafka, SMTP, token auth, and
identity and evidence (test doubles) reached over gRPC from the configured targets."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from signet.common.auth import hash_token
from signet.common.channels import create_channel
from signet.common.events import CERTIFICATE_TOPIC, encode_envelope, envelope_headers, new_envelope
from signet.common.kafka import KafkaPublisher
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.testing.smtp import SmtpTestServer
from signet.events.v1 import events_pb2
from signet.notify.v1 import notify_pb2 as pb
from signet.notify.v1 import notify_pb2_grpc
from tests.fixtures.kafka import wait_until
from tests.fixtures.notify import peer_doubles

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OPS_TOKEN = "ops-" + uuid.uuid4().hex


def test_notify_process_turns_events_into_mail_and_records_incidents(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    smtp = SmtpTestServer(tmp_path)
    smtp.start()
    account = "acc-" + uuid.uuid4().hex[:8]
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / "notify.log"
    try:
        with peer_doubles() as (identity, evidence, peers):
            identity.add(account, email=f"{account}@example.com", locale="en")
            env = dict(os.environ)
            p = "SIGNET_NOTIFY_"
            env.update(
                {
                    p + "GRPC_PORT": str(port),
                    p + "METRICS_PORT": str(metrics_port),
                    p + "DATABASE_URL": f"sqlite:///{tmp_path / 'notify.db'}",
                    p + "KAFKA_BOOTSTRAP": kafka_bootstrap,
                    p + "CONSUMER_GROUP": "notify-" + uuid.uuid4().hex[:8],
                    p + "AUTH_MODE": "token",
                    p + "API_TOKEN_HASHES": f"ops:{hash_token(OPS_TOKEN)}",
                    p + "OPERATOR_PRINCIPALS": "ops",
                    p + "DATA_KEY": base64.b64encode(os.urandom(32)).decode(),
                    p + "SMTP_HOST": "localhost",
                    p + "SMTP_PORT": str(smtp.port),
                    p + "IDENTITY_TARGETS": peers.address,
                    p + "EVIDENCE_TARGETS": peers.address,
                    p + "DISPATCH_POLL_SECONDS": "0.1",
                    p + "DRAIN_SECONDS": "2",
                }
            )
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "signet.notify"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            try:
                assert wait_serving(f"127.0.0.1:{port}"), log_path.read_text()
                publisher = KafkaPublisher(kafka_bootstrap, client_id="notify-process-test")
                try:
                    envelope = new_envelope(
                        events_pb2.CertificateIssued(serial="C0FFEE", account_id=account),
                        source="ca-gateway",
                        subject="C0FFEE",
                        tenant="t-process",
                    )
                    publisher.publish(
                        CERTIFICATE_TOPIC,
                        b"C0FFEE",
                        encode_envelope(envelope),
                        envelope_headers(envelope),
                    )
                    publisher.flush()
                finally:
                    publisher.close()
                assert wait_until(lambda: bool(smtp.to(f"{account}@example.com")), timeout=120), (
                    log_path.read_text()[-3000:]
                )
                [mail] = smtp.to(f"{account}@example.com")
                assert mail["Subject"] == "Your certificate was issued"
                assert "C0FFEE" in mail.get_content()

                channel = create_channel(
                    f"127.0.0.1:{port}", default_timeout=10, bearer_token=OPS_TOKEN
                )
                try:
                    response = notify_pb2_grpc.NotifyServiceStub(channel).DeclareIncident(
                        pb.DeclareIncidentRequest(
                            title="Test incident",
                            severity=pb.INCIDENT_SEVERITY_LOW,
                            notice=pb.IncidentNotice(
                                what_happened_and_impact="w",
                                measures_taken="m",
                                advice="a",
                                remedies="r",
                            ),
                            accounts=pb.AffectedAccounts(account_ids=[account]),
                            channels=[pb.CHANNEL_EMAIL],
                            # The channel retries UNAVAILABLE (evidence slow under load);
                            # the key makes a retried declaration one incident.
                            idempotency_key="incident-process-test",
                        )
                    )
                finally:
                    channel.close()
                assert response.notifications_queued == 1
                assert [e.type for e in evidence.entries.values()] == [
                    "signet.events.v1.IncidentDeclared"
                ]
                assert wait_until(lambda: len(smtp.to(f"{account}@example.com")) == 2, timeout=60)

                metrics = urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
                ).read()
                assert b'signet_notify_sends_total{channel="email"} 2.0' in metrics
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
            assert code == 0, log_path.read_text()[-3000:]
    finally:
        smtp.stop()
    log_text = log_path.read_text()
    assert f"{account}@example.com" not in log_text
