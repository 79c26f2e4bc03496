"""The signer process: ``python -m signet.signer`` or ``signet-signer``.

CPython runs one thread of Python at a time, so one process cannot use both cores for
RPC handling and HSM calls. The signer therefore runs ``workers`` processes (one per core
by default). Either they share the gRPC port with SO_REUSEPORT, the kernel spreading
connections over them, or, with ``front_binary`` set, the front (:mod:`signet.signer.front`)
takes the port and passes calls to the workers on private Unix sockets, coalescing
concurrent SignDigest calls. The parent never loads the PKCS#11 module (a module must not
be inherited over fork); it migrates the database, checks that the port is free, starts
the signature journal (see :mod:`signet.signer.journal`), the workers and the front,
restarts one that dies, serves the workers' combined /metrics and passes SIGTERM on for a
drain. Only worker 0 runs the outbox relay.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

import grpc
from prometheus_client import CollectorRegistry, multiprocess

from signet.common.db import Database
from signet.common.errors import ServiceError
from signet.common.keys import KeyBackend
from signet.common.logging import configure_logging
from signet.common.metrics import GrpcServerMetrics, MetricsServer
from signet.common.runtime import Runtime, run
from signet.signer import documents, front
from signet.signer.config import SignerSettings
from signet.signer.journal import JournalClient
from signet.signer.models import MIGRATIONS_DIR
from signet.signer.service import Signer
from signet.signer.servicer import SignerServicer, SignerWorkerServicer
from signet.signer.v1 import signer_pb2, signer_pb2_grpc, worker_pb2_grpc

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
WORKER_ENV = "SIGNET_SIGNER_WORKER_INDEX"
JOURNAL_ENV = "SIGNET_SIGNER_JOURNAL_SOCKET"
JOURNAL = -1  # the journal's slot among the supervised processes
FRONT = -2  # the front's (see signet.signer.front)
# How long the front waits for the workers before it opens the port anyway.
WORKER_START_SECONDS = 120.0
_log = logging.getLogger("signet.signer.server")


def main() -> None:
    """Serve until SIGTERM: one worker in this process, or a supervisor of several."""
    try:
        _main()
    except ServiceError as err:
        # A configuration the signer cannot start with (bad TSA URL, HSM token missing).
        raise SystemExit(f"signer: cannot start: {err.message}") from None


def _main() -> None:
    settings = SignerSettings()
    index = os.environ.get(WORKER_ENV)
    if index is not None:
        serve_worker(settings, int(index), migrate=False)
        return
    workers = settings.workers or os.cpu_count() or 1
    if workers == 1 and not settings.front_binary:
        serve_worker(settings, 0, migrate=True)
    else:
        sys.exit(Supervisor(settings, workers).run())


def open_backend(settings: SignerSettings) -> tuple[KeyBackend, object]:
    """The PKCS#11 key backend for the configured token, and the pool to close later."""
    from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool

    pool = Pkcs11Pool(
        settings.pkcs11_module,
        settings.pkcs11_token_label,
        settings.pkcs11_pin.get_secret_value(),
        settings.pkcs11_pool_size,
        slot_id=settings.pkcs11_slot if settings.pkcs11_slot >= 0 else None,
    )
    return Pkcs11KeyBackend(pool), pool


def serve_worker(settings: SignerSettings, index: int, *, migrate: bool) -> None:
    """Run one signer server in this process until SIGTERM."""
    # A malformed timestamp authority URL stops the start, not every B-T request later.
    timestamper = (
        documents.http_timestamper(settings.tsa_url, settings.tsa_timeout_seconds)
        if settings.tsa_url
        else None
    )
    runtime = Runtime.open(settings, MIGRATIONS_DIR if migrate else None, relay=index == 0)
    backend, pool = open_backend(settings)
    journal_socket = os.environ.get(JOURNAL_ENV)
    signer = Signer(
        runtime.db,
        backend,
        max_batch=settings.max_batch_size,
        on_commit=runtime.committed,
        _committer=JournalClient(journal_socket) if journal_socket else None,
    )
    servicer = SignerServicer(signer, tsa_url=settings.tsa_url, timestamper=timestamper)
    # Behind the front, workers also take the SignDigest calls it coalesces.
    worker = (
        SignerWorkerServicer(signer, GrpcServerMetrics.create(settings.service_name))
        if settings.behind_front
        else None
    )

    def register(servicer: SignerServicer, server: grpc.Server) -> None:
        signer_pb2_grpc.add_SignerServiceServicer_to_server(servicer, server)
        if worker is not None:
            worker_pb2_grpc.add_SignerWorkerServiceServicer_to_server(worker, server)

    try:
        run(runtime, servicer, register, service_names=[SERVICE_NAME])
    finally:
        signer.close()
        pool.close()  # type: ignore[attr-defined]


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Starts, watches and stops the worker processes."""

    RESTART_BACKOFF_MAX = 30.0

    def __init__(self, settings: SignerSettings, workers: int) -> None:
        self._settings = settings
        self._workers = workers
        self._stop = threading.Event()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._failures: dict[int, int] = {}
        self._multiproc_dir = ""

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        settings = self._settings
        configure_logging(settings.service_name, settings.log_level)
        port = self._check_port()
        if settings.front_binary and not os.access(settings.front_binary, os.X_OK):
            raise SystemExit(f"signer: front_binary {settings.front_binary} is not an executable")
        db = Database.from_url(settings.database_url)
        try:
            db.migrate(MIGRATIONS_DIR)
        finally:
            db.dispose()
        self._multiproc_dir = tempfile.mkdtemp(prefix="signet-signer-metrics-")
        env = dict(os.environ)
        env["PROMETHEUS_MULTIPROC_DIR"] = self._multiproc_dir
        env["SIGNET_SIGNER_GRPC_PORT"] = str(port)
        env["SIGNET_SIGNER_METRICS_ENABLED"] = "false"
        if settings.front_binary:
            env["SIGNET_SIGNER_BEHIND_FRONT"] = "true"
        else:
            env["SIGNET_SIGNER_GRPC_REUSE_PORT"] = "true"
        env[JOURNAL_ENV] = os.path.join(self._multiproc_dir, "journal.sock")
        metrics = self._metrics_server()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        _log.info("starting workers", extra={"workers": self._workers, "grpc_port": port})
        try:
            self._spawn(JOURNAL, env)
            self._wait_for_journal(env[JOURNAL_ENV])
            for index in range(self._workers):
                self._spawn(index, env)
            if settings.front_binary:
                # The port opens only once workers listen: a caller's balancer must not
                # find an open port that can only answer UNAVAILABLE (the old behaviour of
                # the workers on the port, which bind it when ready).
                self._wait_for_workers(env)
                self._spawn(FRONT, env)
            while not self._stop.wait(timeout=0.5):
                self._restart_dead(env)
            return self._drain()
        finally:
            if metrics is not None:
                metrics.stop()
            shutil.rmtree(self._multiproc_dir, ignore_errors=True)

    def _front_metrics_socket(self) -> str:
        return os.path.join(self._multiproc_dir, "front-metrics.sock")

    def _worker_path(self, index: int) -> str:
        """A worker's socket behind the front: in the supervisor's private directory."""
        return os.path.join(self._multiproc_dir, f"worker-{index}.sock")

    def _worker_socket(self, index: int) -> str:
        """The gRPC address of a worker's socket."""
        return f"unix://{self._worker_path(index)}"

    def _check_port(self) -> int:
        """Fail loudly when another program holds the port; pick one for port 0."""
        settings = self._settings
        family = socket.AF_INET6 if ":" in settings.grpc_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers themselves bind: connections a killed predecessor left in
            # TIME_WAIT do not hold the port, a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.grpc_host, settings.grpc_port))
            except OSError as err:
                raise SystemExit(f"signer: cannot bind {settings.grpc_address}: {err}") from None
            return int(probe.getsockname()[1])

    def _metrics_server(self) -> MetricsServer | None:
        if not self._settings.metrics_enabled:
            return None
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        if self._settings.front_binary:
            registry.register(front.FrontMetrics(self._front_metrics_socket()))
        return MetricsServer(self._settings.grpc_host, self._settings.metrics_port, registry)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _spawn(self, index: int, env: dict[str, str]) -> None:
        if index == JOURNAL:
            command = [sys.executable, "-m", "signet.signer.journal", env[JOURNAL_ENV]]
            child_env = env
        elif index == FRONT:
            listen = f"{self._settings.grpc_host}:{env['SIGNET_SIGNER_GRPC_PORT']}"
            workers = [self._worker_socket(i) for i in range(self._workers)]
            command = front.command(self._settings, listen, workers, self._front_metrics_socket())
            child_env = env
        else:
            command = [sys.executable, "-m", "signet.signer"]
            child_env = dict(env)
            child_env[WORKER_ENV] = str(index)
            if self._settings.front_binary:
                child_env["SIGNET_SIGNER_GRPC_LISTEN"] = self._worker_socket(index)
        self._procs[index] = subprocess.Popen(
            command, env=child_env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )

    def _wait_for_journal(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self._procs[JOURNAL].poll() is not None or time.monotonic() > deadline:
                raise SystemExit("signer: the signature journal did not start")
            time.sleep(0.05)

    def _wait_for_workers(self, env: dict[str, str], timeout: float = WORKER_START_SECONDS) -> None:
        """Wait until every worker accepts on its socket (or ``timeout``, or a stop)."""
        deadline = time.monotonic() + timeout
        waiting = set(range(self._workers))
        while waiting and time.monotonic() < deadline and not self._stop.is_set():
            for index in list(waiting):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(self._worker_path(index))
                    except OSError:
                        continue
                waiting.discard(index)
            if waiting:
                self._restart_dead(env)
                self._stop.wait(0.1)
        if waiting:
            _log.warning(
                "opening the port with workers still starting",
                extra={"workers_starting": sorted(waiting)},
            )

    def _restart_dead(self, env: dict[str, str]) -> None:
        for index, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            multiprocess.mark_process_dead(proc.pid, self._multiproc_dir)  # type: ignore[no-untyped-call]
            failures = self._failures.get(index, 0) + 1
            self._failures[index] = failures
            delay = min(2.0 ** (failures - 1), self.RESTART_BACKOFF_MAX)
            _log.error(
                "worker exited; restarting",
                extra={"worker": index, "exit_code": code, "restart_in_seconds": delay},
            )
            if self._stop.wait(timeout=delay):
                return
            self._spawn(index, env)

    def _drain(self) -> int:
        """Pass SIGTERM on, wait for the workers' drain, kill what is left.

        The journal stops last: draining workers still record their last signatures.
        """
        journal = self._procs.pop(JOURNAL, None)
        code = self._stop_all(self._procs)
        if journal is not None:
            code = max(code, self._stop_all({JOURNAL: journal}))
        _log.info("workers stopped")
        return code

    def _stop_all(self, procs: dict[int, subprocess.Popen[bytes]]) -> int:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._settings.drain_seconds + 10
        code = 0
        for index, proc in procs.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _log.error("worker did not drain; killing it", extra={"worker": index})
                proc.kill()
                proc.wait()
                code = 1
        return code
