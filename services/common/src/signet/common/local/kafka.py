"""A real single-node Apache Kafka broker for local runs and tests.

Maven resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies (see
``kafka-pom.xml`` beside this module) into ``$SIGNET_CACHE_DIR/kafka/<version>/libs`` once;
the broker then runs from those jars on the machine's Java 17 in KRaft combined mode
(broker and controller in one process) on loopback ports. No tarball, no container.

Everything about one broker lives in its data dir: the generated ``server.properties`` and
log4j2 configuration, the Kafka log directories, ``server.log``, the pid file and
``broker.json`` (chosen ports and cluster id), so stopping and starting again on the same
data dir keeps topics, records and committed offsets.

The CLI (``python -m signet.common.local.kafka fetch|start|stop|status``) lets ``make run``
start the broker detached and ``make stop`` stop it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signet.common.local.processes import alive

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM_FILE = Path(__file__).with_name("kafka-pom.xml")
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
READY_TOPIC = "signet.local.ready"
_COMPLETE_MARKER = ".complete"


def repo_root() -> Path | None:
    """The source checkout this module lives in, when it runs from one."""
    candidate = Path(__file__).resolve().parents[6]
    return candidate if (candidate / "services" / "common").is_dir() else None


def cache_dir() -> Path:
    """Download cache: ``SIGNET_CACHE_DIR``, else ``.cache`` in the checkout (or cwd)."""
    configured = os.environ.get("SIGNET_CACHE_DIR")
    if configured:
        return Path(configured).resolve()
    return (repo_root() or Path.cwd()) / ".cache"


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"'{name}' is not on PATH; it is needed {why} (install it: make system-deps)"
        )
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes, so parallel callers fetch once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's jars into the cache (once) and return the directory holding them.

    Idempotent: a complete directory is marked and reused; an interrupted download is
    redone from a fresh temporary directory, never half-used.
    """
    base = cache_dir() / "kafka" / version
    libs = base / "libs"
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    mvn = _require_tool("mvn", "to fetch the Kafka broker jars")
    with file_lock(base / ".lock"):
        if (libs / _COMPLETE_MARKER).exists():
            return libs
        staging = base / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM_FILE),
            f"-Dkafka.version={version}",
            f"-Dmaven.repo.local={cache_dir() / 'm2'}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        log.info("fetching Kafka %s jars with Maven", version)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise RuntimeError(f"Maven could not resolve Kafka {version}:\n{tail}")
        if not any(staging.glob(f"kafka_2.13-{version}.jar")):
            raise RuntimeError(f"Maven finished but kafka_2.13-{version}.jar is missing")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (libs / _COMPLETE_MARKER).write_text(version + "\n")
    return libs


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_cluster_id() -> str:
    # Kafka's cluster ids are a UUID in URL-safe base64 without padding (22 characters).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class KafkaBroker:
    """One local KRaft broker+controller process owning ``data_dir``.

    ``port``/``controller_port`` of 0 pick free ports on first start and reuse them on
    every later start of the same data dir, so clients and the stored quorum config stay
    valid across a restart.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        controller_port: int = 0,
        *,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.version = version
        self.heap = heap
        self._requested_port = port
        self._requested_controller_port = controller_port
        self._proc: subprocess.Popen[bytes] | None = None
        state = self._read_state()
        self.port = port or int(state.get("port", 0))
        self.controller_port = controller_port or int(state.get("controller_port", 0))

    # -- files -----------------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j2 output)."""
        return self.data_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        """Pid of the running broker process, written on start, removed on stop."""
        return self.data_dir / "kafka.pid"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def _log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        if not self.port:
            raise RuntimeError("the broker has no port yet; start it first")
        return f"127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def fetch(self) -> Path:
        """Make sure the broker's jars are in the cache; returns their directory."""
        return ensure_kafka_jars(self.version)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_our_process(self, pid: int) -> bool:
        """True when ``pid`` is alive and is a broker of this data dir (pids get reused)."""
        if self._proc is not None and self._proc.pid == pid:
            # Our own child is ours by construction; its /proc entry may not show the
            # broker's command line yet while the Java launcher re-executes itself.
            return self._proc.poll() is None
        if not alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return MAIN_CLASS.encode() in cmdline and str(self._properties_file).encode() in cmdline

    def is_running(self) -> bool:
        """Whether the broker process of this data dir is alive."""
        pid = self._pid()
        return pid is not None and self._is_our_process(pid)

    @property
    def _properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    def _prepare(self) -> tuple[Path, str]:
        """Choose ports, write the config files and return (jars dir, cluster id)."""
        libs = self.fetch()
        _require_tool("java", "to run the Kafka broker")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        self.port = self._requested_port or int(state.get("port", 0)) or free_port()
        self.controller_port = (
            self._requested_controller_port or int(state.get("controller_port", 0)) or free_port()
        )
        if self.port == self.controller_port:
            raise ValueError("the client port and the controller port must differ")
        cluster_id = str(state.get("cluster_id") or _new_cluster_id())
        self._state_file.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "controller_port": self.controller_port,
                    "cluster_id": cluster_id,
                    "version": self.version,
                },
                indent=2,
            )
            + "\n"
        )
        self._properties_file.write_text(self._server_properties())
        (self.data_dir / "log4j2.properties").write_text(self._log4j_properties())
        return libs, cluster_id

    def _server_properties(self) -> str:
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # One member per group in tests and local runs: waiting for more only adds delay.
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
        }
        body = "\n".join(f"{key}={value}" for key, value in lines.items())
        return f"# Generated by signet.common.local.kafka; rewritten on every start.\n{body}\n"

    def _log4j_properties(self) -> str:
        return (
            "# Generated by signet.common.local.kafka; rewritten on every start.\n"
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = info\n"
            "rootLogger.appenderRef.file.ref = file\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = info\n"
            "logger.apache.name = org.apache\n"
            "logger.apache.level = warn\n"
        )

    def _java(self, libs: Path, main_class: str, *args: str) -> list[str]:
        return [
            _require_tool("java", "to run the Kafka broker"),
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self, libs: Path, cluster_id: str) -> None:
        if (self._log_dirs / "meta.properties").exists():
            return
        cmd = self._java(
            libs,
            STORAGE_TOOL_CLASS,
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self._properties_file),
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise RuntimeError(f"formatting the Kafka storage failed:\n{tail}")

    def start(self, timeout: float = 90, *, detached: bool = False) -> None:
        """Start the broker (no-op when it already runs) and wait until it serves clients.

        ``detached`` brokers outlive this process (``make run``); otherwise the broker is
        also stopped when this process exits, so a crashed test session leaves none behind.
        Raises :class:`RuntimeError` with the log's tail when it exits or is not ready
        within ``timeout`` seconds; a broker that never got ready is stopped again.
        """
        if self.is_running():
            self._wait_ready(timeout)
            return
        libs, cluster_id = self._prepare()
        self._format_storage(libs, cluster_id)
        cmd = self._java(libs, MAIN_CLASS, str(self._properties_file))
        with (self.data_dir / "stdout.log").open("ab") as out:
            # A session of its own: a detached broker outlives the CLI that started it and
            # gets no terminal signals meant for the caller.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        if not detached:
            atexit.register(self._stop_at_exit, self._proc.pid)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise RuntimeError(f"the Kafka broker exited during start:\n{self._log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"the Kafka broker was not ready within {timeout:.0f}s:\n{self._log_tail()}"
                )
            if self._accepts_produce(min(remaining, 15.0)):
                return
            time.sleep(0.5)

    def _accepts_produce(self, timeout: float) -> bool:
        """True when a kafka-python producer gets an acknowledged write through."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            return False
        budget_ms = max(int(timeout * 1000), 1000)
        producer = None
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                bootstrap_timeout_ms=budget_ms,
                max_block_ms=budget_ms,
                request_timeout_ms=max(budget_ms - 500, 1000),
                delivery_timeout_ms=budget_ms + 1000,
                linger_ms=0,
            )
            producer.send(READY_TOPIC, value=b"ready").get(timeout=timeout)
        except KafkaError:
            return False
        finally:
            if producer is not None:
                producer.close(timeout=2)
        return True

    def _log_tail(self, lines: int = 30) -> str:
        for candidate in (self.log_file, self.data_dir / "stdout.log"):
            try:
                text = candidate.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if text:
                return "\n".join(text[-lines:])
        return "(no broker log)"

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker: SIGTERM (clean shutdown), SIGKILL after ``timeout`` seconds.

        No-op when it does not run. Returns only when no broker process is left.
        """
        pid = self._pid()
        if pid is not None and self._is_our_process(pid):
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._alive(pid):
                log.warning("the Kafka broker ignored SIGTERM; killing it")
                self._signal(pid, signal.SIGKILL)
                while self._alive(pid):
                    time.sleep(0.1)
        if self._proc is not None:
            # Collect our own child so it does not linger as a zombie.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def _stop_at_exit(self, pid: int) -> None:
        if self._pid() == pid:
            self.stop()

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return alive(pid)

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        # The broker leads its own process group, so this reaches any helper it forked too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``fetch`` the jars, ``start`` (detached) / ``stop`` / ``status`` a broker."""
    parser = argparse.ArgumentParser(prog="python -m signet.common.local.kafka")
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=None, help="broker state directory")
    parser.add_argument("--port", type=int, default=0, help="client port (0: free port)")
    parser.add_argument("--controller-port", type=int, default=0, help="controller port")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The client library's connection chatter is noise for someone starting a broker.
    logging.getLogger("kafka").setLevel(logging.WARNING)

    if args.command == "fetch":
        print(ensure_kafka_jars())
        return 0
    data_dir = args.data_dir
    if data_dir is None:
        state = Path(os.environ.get("SIGNET_STATE_DIR") or (repo_root() or Path.cwd()) / ".state")
        data_dir = state / "kafka"
    broker = KafkaBroker(data_dir, port=args.port, controller_port=args.controller_port)
    try:
        if args.command == "start":
            broker.start(timeout=args.timeout, detached=True)
            print(f"kafka running at {broker.bootstrap} (log: {broker.log_file})")
        elif args.command == "stop":
            broker.stop(timeout=args.timeout)
            print("kafka stopped")
        elif broker.is_running():
            print(f"kafka running at {broker.bootstrap}")
        else:
            print("kafka not running")
            return 3
    except RuntimeError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
