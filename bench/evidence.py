"""Evidence throughput: appends through gRPC and through Kafka, and proof latency.

The real processes: a signer (``python -m signet.signer`` on a SoftHSM token, holding the
log key), a single-node Kafka broker, and the evidence service (``python -m
signet.evidence``, SQLite, sequencer integrating every 200 ms or 1000 entries, each
integration signing a tree head in the HSM through the signer).

1. Append over gRPC, 32 calls in flight: queued appends per second, and the rate at
   which they end up integrated under a signed head.
2. Append through Kafka: events published to the Signet topics, consumed and integrated
   (end to end, first publish to last entry integrated).
3. Proof latency on the grown log: GetInclusionProof and GetConsistencyProof, one call at
   a time, client-observed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from bench.harness import REGISTRY, Figures, rate, summarize_latencies
from bench.signer import _signer_process
from signet.common.events import (
    ALL_TOPICS,
    CERTIFICATE_TOPIC,
    IDENTITY_TOPIC,
    SIGNATURE_TOPIC,
    encode_envelope,
    envelope_headers,
    new_envelope,
)
from signet.common.kafka import KafkaPublisher
from signet.common.local.kafka import KafkaBroker, free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import ensure_token
from signet.events.v1 import events_pb2
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc

DURATION = float(os.environ.get("SIGNET_BENCH_SECONDS", "8"))
IN_FLIGHT = 32
KAFKA_EVENTS = int(os.environ.get("SIGNET_BENCH_EVIDENCE_KAFKA_EVENTS", "5000"))
PROOF_SAMPLES = 300


@contextmanager
def _evidence_process(state: Path, signer: str, bearer: str, bootstrap: str) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "SIGNET_EVIDENCE_GRPC_PORT": str(port),
            "SIGNET_EVIDENCE_METRICS_PORT": str(free_port()),
            "SIGNET_EVIDENCE_DATABASE_URL": f"sqlite:///{state / 'evidence.db'}",
            "SIGNET_EVIDENCE_SIGNER_TARGETS": signer,
            "SIGNET_EVIDENCE_SERVICE_TOKEN": bearer,
            "SIGNET_EVIDENCE_CA_GATEWAY_TARGETS": "",
            "SIGNET_EVIDENCE_HTTP_ENABLED": "false",
            "SIGNET_EVIDENCE_KAFKA_BOOTSTRAP": bootstrap,
            "SIGNET_EVIDENCE_LOG_LEVEL": "WARNING",
        }
    )
    log = (state / "evidence.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signet.evidence"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        if not wait_serving(address, timeout=120) or proc.poll() is not None:
            raise RuntimeError(f"evidence did not start: {(state / 'evidence.log').read_text()}")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def _envelope(source: str = "signer") -> evidence_pb2.AppendRequest:
    payload = events_pb2.SignatureCreated(signature_id="s-" + uuid.uuid4().hex)
    event = new_envelope(payload, source=source, subject="k-bench")
    event.transaction_id = "tx-" + uuid.uuid4().hex[:12]
    return evidence_pb2.AppendRequest(event=event)


def _size(stub: evidence_pb2_grpc.EvidenceServiceStub) -> int:
    """Entries under the latest signed head; 0 before the first head is signed."""
    try:
        head = stub.GetSignedTreeHead(evidence_pb2.GetSignedTreeHeadRequest(), timeout=10)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return 0
        raise
    return int(head.tree_head.tree_size)


def _wait_size(stub: evidence_pb2_grpc.EvidenceServiceStub, size: int, timeout: float) -> float:
    """Seconds until the signed head reaches ``size`` (from now)."""
    start = time.perf_counter()
    while _size(stub) < size:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"the log did not reach {size} entries in {timeout}s")
        time.sleep(0.02)
    return time.perf_counter() - start


def _grpc_appends(address: str) -> Figures:
    channels = [
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]
    stubs = [evidence_pb2_grpc.EvidenceServiceStub(c) for c in channels]
    before = _size(stubs[0])
    counts = [0] * IN_FLIGHT
    stop = time.perf_counter() + DURATION

    def work(slot: int) -> None:
        stub = stubs[slot % len(stubs)]
        while time.perf_counter() < stop:
            stub.Append(_envelope(), timeout=30)
            counts[slot] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued = time.perf_counter() - start
    total = sum(counts)
    _wait_size(stubs[0], before + total, 300)
    integrated = time.perf_counter() - start
    for channel in channels:
        channel.close()
    return {
        "append_grpc_32_in_flight_per_s": rate(total, queued),
        "append_grpc_integrated_per_s": rate(total, integrated),
    }


def _kafka_appends(address: str, bootstrap: str) -> Figures:
    channel = grpc.insecure_channel(address)
    stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
    before = _size(stub)
    topics = (IDENTITY_TOPIC, CERTIFICATE_TOPIC, SIGNATURE_TOPIC)
    publisher = KafkaPublisher(bootstrap, client_id="bench-evidence", linger_ms=20)
    start = time.perf_counter()
    try:
        for number in range(KAFKA_EVENTS):
            event = _envelope().event
            publisher.publish(
                topics[number % len(topics)],
                event.subject.encode(),
                encode_envelope(event),
                envelope_headers(event),
            )
        publisher.flush()
    finally:
        publisher.close()
    _wait_size(stub, before + KAFKA_EVENTS, 600)
    seconds = time.perf_counter() - start
    channel.close()
    return {"append_kafka_integrated_per_s": rate(KAFKA_EVENTS, seconds)}


def _proof_latency(address: str) -> Figures:
    channel = grpc.insecure_channel(address)
    stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
    size = _size(stub)
    rng = random.Random(7)
    inclusion: list[float] = []
    consistency: list[float] = []
    for _ in range(PROOF_SAMPLES):
        index = rng.randrange(size)
        start = time.perf_counter()
        stub.GetInclusionProof(evidence_pb2.GetInclusionProofRequest(leaf_index=index), timeout=10)
        inclusion.append(time.perf_counter() - start)
        first = rng.randrange(1, size)
        start = time.perf_counter()
        stub.GetConsistencyProof(
            evidence_pb2.GetConsistencyProofRequest(first_tree_size=first), timeout=10
        )
        consistency.append(time.perf_counter() - start)
    channel.close()
    figures = {"log_size_entries": float(size)}
    figures.update(summarize_latencies("inclusion_proof", inclusion))
    figures.update(summarize_latencies("consistency_proof", consistency))
    return figures


def _create_topics(bootstrap: str) -> None:
    """One record on every Signet topic, so the topics exist before evidence subscribes.

    A consumer notices a topic created after it subscribed only at its next metadata
    refresh (minutes); in production the topics exist long before.
    """
    publisher = KafkaPublisher(bootstrap, client_id="bench-evidence-setup")
    try:
        for topic in ALL_TOPICS:
            event = _envelope(source="bench").event
            publisher.publish(topic, b"setup", encode_envelope(event), envelope_headers(event))
        publisher.flush()
    finally:
        publisher.close()


@REGISTRY.register("evidence_throughput")
def evidence_throughput() -> Figures:
    """Appends per second through gRPC and through Kafka, and proof latency."""
    with tempfile.TemporaryDirectory(prefix="signet-bench-evidence-") as tmp:
        state = Path(tmp)
        token = ensure_token(state / "hsm", label="bench-evidence")
        os.environ.update(token.env)
        broker = KafkaBroker(state / "kafka")
        broker.start(timeout=180)
        _create_topics(broker.bootstrap)
        bearer = "bench-" + uuid.uuid4().hex
        try:
            with (
                _signer_process(token, state, bearer) as (signer, _),
                _evidence_process(state, signer, bearer, broker.bootstrap) as address,
            ):
                with grpc.insecure_channel(address) as channel:
                    # The setup records: the log is signing heads and consuming.
                    _wait_size(evidence_pb2_grpc.EvidenceServiceStub(channel), len(ALL_TOPICS), 120)
                figures = _grpc_appends(address)
                figures.update(_kafka_appends(address, broker.bootstrap))
                figures.update(_proof_latency(address))
        finally:
            broker.stop()
    return figures
