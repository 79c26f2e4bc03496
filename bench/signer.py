"""Signer throughput in one run: the HSM ceiling, SignBatch and SignDigest over gRPC.

1. ceiling: the PKCS#11 pool signing P-256 digests from 2 threads in this process, no
   RPC, no database: what the token itself gives.
2. SignBatch: the real signer as deployed (``python -m signet.signer``: its front on the
   port, one worker process per core, SQLite, events written to its outbox) signing
   batches of 100 digests with a system key, 4 batches in flight.
3. SignDigest: the same server, one digest per call, 32 calls in flight; throughput and
   latency percentiles (client-observed, submit to completion), driven by ghz (a Go load
   generator, see :mod:`bench.loadgen`) and, for comparison, by Python's asyncio client.
4. For comparison, SignDigest (ghz) against the workers alone sharing the port, without
   the front (figures prefixed ``without_front_``).

Client and server share the machine's cores, as they would not in production; the
figures are therefore a floor, the Python client's the lower one. Other people's work on
the machine moves the rates too, so each gRPC phase also reports the server's CPU time
(supervisor, workers and journal, from /proc) per 1,000 signatures, and the run records
the load average it started under.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
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

from bench import loadgen
from bench.harness import REGISTRY, Figures, Target, percentile, rate, tree_cpu_seconds
from signet.common.auth import hash_token
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import TokenInfo, ensure_token
from signet.common.v1 import common_pb2
from signet.signer import front
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

DURATION = float(os.environ.get("SIGNET_BENCH_SECONDS", "8"))
BATCH = 100
BATCHES_IN_FLIGHT = 4
# Connections per client: the kernel spreads connections (not calls) over the worker
# processes sharing the port, so a handful of connections can land on one worker.
CONNECTIONS = 16
DIGESTS_IN_FLIGHT = 32


def _ceiling(token: TokenInfo) -> float:
    from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool

    pool = Pkcs11Pool(str(token.module_path), token.label, token.pin, 4)
    try:
        backend = Pkcs11KeyBackend(pool)
        key_id = "bench-" + uuid.uuid4().hex[:12]
        backend.generate(key_id, KeyAlgorithm.EC_P256)
        digest = hashlib.sha256(b"bench").digest()
        counts = [0, 0]
        stop = time.perf_counter() + DURATION

        def work(slot: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                for _ in range(50):
                    backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest)
                n += 50
            counts[slot] = n

        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        backend.destroy(key_id)
        return rate(sum(counts), elapsed)
    finally:
        pool.close()


@contextmanager
def _signer_process(
    token: TokenInfo, state: Path, bearer: str, *, with_front: bool = True
) -> Iterator[tuple[str, int]]:
    """The signer as its own process tree: its address and the supervisor's pid.

    ``with_front``: the compiled front on the port, as deployed; else the workers share it.
    """
    port = free_port()
    env = dict(os.environ)
    env.update(token.env)
    env.update(
        {
            "SIGNET_SIGNER_GRPC_PORT": str(port),
            "SIGNET_SIGNER_METRICS_PORT": str(free_port()),
            "SIGNET_SIGNER_DATABASE_URL": f"sqlite:///{state / 'signer.db'}",
            "SIGNET_SIGNER_PKCS11_MODULE": str(token.module_path),
            "SIGNET_SIGNER_PKCS11_TOKEN_LABEL": token.label,
            "SIGNET_SIGNER_PKCS11_PIN": token.pin,
            "SIGNET_SIGNER_AUTH_MODE": "token",
            "SIGNET_SIGNER_API_TOKEN_HASHES": f"evidence:{hash_token(bearer)}",
            "SIGNET_SIGNER_LOG_LEVEL": "WARNING",
            "SIGNET_SIGNER_KAFKA_BOOTSTRAP": "",
            "SIGNET_SIGNER_WORKERS": os.environ.get("SIGNET_BENCH_SIGNER_WORKERS", "0"),
            "SIGNET_SIGNER_FRONT_BINARY": str(front.build()) if with_front else "",
        }
    )
    log = (state / "signer.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signet.signer"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_serving(address, proc, state / "signer.log")
        workers = int(env["SIGNET_SIGNER_WORKERS"]) or os.cpu_count() or 1
        _wait_listening(port, workers, proc, state / "signer.log", with_front=with_front)
        yield address, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def _wait_serving(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    if not wait_serving(address, timeout=60) or proc.poll() is not None:
        raise RuntimeError(f"signer did not become healthy: {log.read_text()[-2000:]}")


def _wait_listening(
    port: int, workers: int, proc: subprocess.Popen[bytes], log: Path, *, with_front: bool
) -> None:
    """Wait until every worker listens: on the shared port, or on its socket behind the front.

    Health answers as soon as the first worker is up. A connection made before the others
    listen lands on that worker and stays there, so a phase could run on one core.
    """
    deadline = time.monotonic() + 60
    while (_worker_sockets_listening(proc.pid) if with_front else _listeners(port)) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"not every signer worker came up: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _worker_sockets_listening(supervisor: int) -> int:
    """Workers of ``supervisor`` whose Unix socket (SIGNET_SIGNER_GRPC_LISTEN) listens."""
    listening = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Flags 00010000: accepting connections.
        if len(fields) == 8 and int(fields[3], 16) & 0x10000:
            listening.add(os.path.normpath(fields[7]))
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if (
                not entry.name.isdigit()
                or int((entry / "stat").read_text().split()[3]) != supervisor
            ):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for variable in environ:
            if variable.startswith(b"SIGNET_SIGNER_GRPC_LISTEN=unix://"):
                path = variable.split(b"unix://", 1)[1].decode()
                count += os.path.normpath(path) in listening
    return count


def _listeners(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (each worker has its own, SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _channels(address: str, count: int) -> list[grpc.Channel]:
    """Separate connections, so that SO_REUSEPORT spreads them over the worker processes."""
    return [
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]


def _batch_figures(
    stubs: list[signer_pb2_grpc.SignerServiceStub], key_id: str, bearer: str, server_pid: int
) -> Figures:
    digest = common_pb2.Digest(
        algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=hashlib.sha256(b"x").digest()
    )
    request = signer_pb2.SignBatchRequest(
        items=[
            signer_pb2.SignBatchItem(item_id=str(i), key_id=key_id, digest=digest)
            for i in range(BATCH)
        ]
    )
    metadata = (("authorization", f"Bearer {bearer}"),)
    counts = [0] * BATCHES_IN_FLIGHT
    errors: list[str] = []
    stop = time.perf_counter() + DURATION

    def work(slot: int) -> None:
        n = 0
        turn = slot
        while time.perf_counter() < stop:
            reply = stubs[turn % len(stubs)].SignBatch(request, metadata=metadata, timeout=30)
            turn += BATCHES_IN_FLIGHT
            bad = [r for r in reply.results if r.status.code != 0]
            if bad:
                errors.append(bad[0].status.message)
                return
            n += len(reply.results)
        counts[slot] = n

    cpu = tree_cpu_seconds(server_pid)
    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(BATCHES_IN_FLIGHT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    cpu = tree_cpu_seconds(server_pid) - cpu
    if errors:
        raise RuntimeError(f"SignBatch item failed: {errors[0]}")
    return {
        "sign_batch_100_per_s": rate(sum(counts), elapsed),
        "sign_batch_server_cpu_ms_per_1000": _per_thousand(cpu, sum(counts)),
    }


def _per_thousand(cpu_seconds: float, signatures: int) -> float:
    """Server CPU milliseconds per 1,000 signatures."""
    return cpu_seconds * 1e6 / signatures if signatures else float("nan")


def _digest_figures(
    address: str, key_id: str, bearer: str, server_pid: int, *, python_client: bool = True
) -> Figures:
    """DIGESTS_IN_FLIGHT concurrent SignDigest calls from ghz, then (``python_client``) from
    Python's asyncio client (the cheapest Python client) for comparison."""
    cpu = tree_cpu_seconds(server_pid)
    result = loadgen.unary_load(
        address,
        proto="signet/signer/v1/signer.proto",
        call="signet.signer.v1.SignerService/SignDigest",
        data={
            "key_id": key_id,
            "digest": {
                "algorithm": "HASH_ALGORITHM_SHA256",
                "value": base64.b64encode(hashlib.sha256(b"y").digest()).decode(),
            },
        },
        metadata={"authorization": f"Bearer {bearer}"},
        in_flight=DIGESTS_IN_FLIGHT,
        connections=CONNECTIONS,
        seconds=DURATION,
    )
    cpu = tree_cpu_seconds(server_pid) - cpu
    if result.errors:
        raise RuntimeError(f"{result.errors} SignDigest calls failed under load: {result.statuses}")
    figures: Figures = {
        "sign_digest_32_in_flight_per_s": result.rps,
        "sign_digest_p50_ms": result.p50_ms,
        "sign_digest_p99_ms": result.p99_ms,
        "sign_digest_server_cpu_ms_per_1000": _per_thousand(cpu, result.count),
    }
    if not python_client:
        return figures
    python = asyncio.run(_digest_figures_async(address, key_id, bearer))
    figures.update({f"python_client_{name}": value for name, value in python.items()})
    return figures


async def _digest_figures_async(address: str, key_id: str, bearer: str) -> Figures:
    request = signer_pb2.SignDigestRequest(
        key_id=key_id,
        digest=common_pb2.Digest(
            algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=hashlib.sha256(b"y").digest()
        ),
    )
    metadata = (("authorization", f"Bearer {bearer}"),)
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in channels]
    latencies: list[float] = []
    stop = time.perf_counter() + DURATION

    async def caller(slot: int) -> None:
        turn = slot
        while time.perf_counter() < stop:
            stub = stubs[turn % len(stubs)]
            turn += DIGESTS_IN_FLIGHT
            started = time.perf_counter()
            await stub.SignDigest(request, metadata=metadata, timeout=30)
            latencies.append(time.perf_counter() - started)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(caller(i) for i in range(DIGESTS_IN_FLIGHT)))
    finally:
        for channel in channels:
            await channel.close()
    elapsed = time.perf_counter() - start
    return {
        "sign_digest_32_in_flight_per_s": rate(len(latencies), elapsed),
        "sign_digest_p50_ms": percentile(latencies, 50) * 1000,
        "sign_digest_p99_ms": percentile(latencies, 99) * 1000,
    }


TARGETS = (
    Target("sign_batch_ratio_to_ceiling", 0.75),
    Target("sign_digest_32_in_flight_per_s", 2000.0),
    Target("sign_digest_p99_ms", 25.0, at_least=False),
)


@REGISTRY.register("signer", targets=TARGETS)
def signer_throughput() -> Figures:
    """The three signer figures and their ratios to the in-process ceiling."""
    with tempfile.TemporaryDirectory(prefix="signet-bench-") as tmp:
        state = Path(tmp)
        token = ensure_token(state / "hsm", label="bench")
        # SoftHSM reads its configuration when the module loads, in this process too.
        os.environ.update(token.env)
        ceiling = _ceiling(token)
        bearer = "bench-" + uuid.uuid4().hex
        load = os.getloadavg()[0]
        with _signer_process(token, state, bearer) as (address, server_pid):
            channels = _channels(address, CONNECTIONS)
            stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in channels]
            key_id = _create_key(stubs[0], bearer)
            batch = _batch_figures(stubs, key_id, bearer, server_pid)
            digest = _digest_figures(address, key_id, bearer, server_pid)
            for channel in channels:
                channel.close()
        # For comparison: the workers alone on the port, each call a Python gRPC call.
        with _signer_process(token, state, bearer, with_front=False) as (address, server_pid):
            channels = _channels(address, 1)
            key_id = _create_key(signer_pb2_grpc.SignerServiceStub(channels[0]), bearer)
            direct = _digest_figures(address, key_id, bearer, server_pid, python_client=False)
            channels[0].close()
    figures: Figures = {
        # The machine's 1-minute load average as the run began: others' work skews rates.
        "load_average_1m": load,
        "ceiling_in_process_2_threads_per_s": ceiling,
        **batch,
        "sign_batch_ratio_to_ceiling": batch["sign_batch_100_per_s"] / ceiling,
    }
    figures.update(digest)
    figures["sign_digest_ratio_to_ceiling"] = digest["sign_digest_32_in_flight_per_s"] / ceiling
    figures.update({f"without_front_{name}": value for name, value in direct.items()})
    return figures


def _create_key(stub: signer_pb2_grpc.SignerServiceStub, bearer: str) -> str:
    """A P-256 system key of evidence's, the caller the bench authenticates as."""
    response = stub.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
            owner=signer_pb2.KeyOwner(system="evidence"),
        ),
        metadata=(("authorization", f"Bearer {bearer}"),),
    )
    return response.key.key_id
