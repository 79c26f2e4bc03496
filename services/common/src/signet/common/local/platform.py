"""The whole platform on one machine: ``make run`` / ``make stop`` / ``make status``.

Starts, in order, the SoftHSM token (initialised once under the state dir), a single-node
KRaft Kafka broker, the third-party sandbox (:mod:`signet.common.local.sandbox`: identity
check providers, SMS gateway, SMTP server), and the five services as background
processes, each with its own SQLite database and log file under the state dir. ``start``
returns once every service answers SERVING on the standard gRPC health service; ``stop``
sends SIGTERM (the services drain) and leaves no process behind.

``SIGNET_LOCAL_DATABASE=postgres`` puts the services' databases on a local PostgreSQL
server (under the state dir) instead of SQLite files.
``SIGNET_LOCAL_REPLICAS`` (default 1) runs that many processes of every service, each on
its own ports (replica r adds ``r * 100``), sharing the service's database; every
``*_TARGETS`` lists all replicas, so callers balance over them. :func:`kill_replica`,
:func:`start_replica`, :func:`stop_broker` and :func:`start_broker` inject faults.

Services authenticate each other as they do in production: each gets a random bearer
token of its own (kept in ``<state>/tokens.json``, mode 0600) and accepts the others' by
their SHA-256 hashes. A ``local-admin`` token is there too, for calling the APIs by hand.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signet.common.auth import hash_token
from signet.common.local import kafka as kafka_runner
from signet.common.local import sandbox, softhsm
from signet.common.local.postgres import PostgresServer
from signet.common.local.processes import alive, read_pid

KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
POSTGRES_PORT = 15432
REPLICA_PORT_STEP = 100
"""Replica r of a service listens on its base ports plus ``r * REPLICA_PORT_STEP``."""


@dataclass(frozen=True)
class ServiceProcess:
    """One service as a local process: its module, env prefix and ports."""

    name: str
    package: str
    grpc_port: int
    metrics_port: int
    replica: int = 0

    @property
    def instance(self) -> str:
        """Name of this process: the service name, ``-2``, ``-3``... for further replicas."""
        return self.name if self.replica == 0 else f"{self.name}-{self.replica + 1}"

    @property
    def prefix(self) -> str:
        """Environment prefix of its settings, e.g. ``SIGNET_CA_GATEWAY_``."""
        return f"SIGNET_{self.package.upper()}_"

    @property
    def address(self) -> str:
        """Where its gRPC server listens."""
        return f"127.0.0.1:{self.grpc_port}"


# Start order: the signer first (everyone else signs through it), notify last.
_BASE = (
    ("signer", "signer", 50053, 9103),
    ("identity", "identity", 50051, 9101),
    ("ca-gateway", "ca_gateway", 50052, 9102),
    ("evidence", "evidence", 50054, 9104),
    ("notify", "notify", 50055, 9105),
)


# Relying-party HTTP endpoints (CRL, OCSP, CA certificates; RFC 3161 timestamps).
_HTTP_PORTS = {"ca-gateway": 8082, "evidence": 8084}

LOCAL_ADMIN = "local-admin"
"""The principal whose token ``make run`` leaves for a developer's own calls."""


def http_port(name: str, replica: int = 0) -> int | None:
    """The local HTTP port of service ``name`` (its replica ``replica``), if it serves HTTP."""
    base = _HTTP_PORTS.get(name)
    return None if base is None else base + port_offset() + replica * REPLICA_PORT_STEP


def local_ports() -> list[int]:
    """Every local port ``make run`` binds (gRPC, metrics, HTTP, Kafka)."""
    ports = [p for svc in services() for p in (svc.grpc_port, svc.metrics_port)]
    ports += [p for svc in services() if (p := http_port(svc.name, svc.replica)) is not None]
    ports += sandbox.SandboxPorts.shifted(port_offset()).all()
    ports += [KAFKA_PORT + port_offset(), KAFKA_CONTROLLER_PORT + port_offset()]
    return [*ports, _postgres().port] if database_kind() == "postgres" else ports


def database_kind() -> str:
    """``SIGNET_LOCAL_DATABASE``: ``sqlite`` (default, a file per service) or ``postgres``."""
    kind = os.environ.get("SIGNET_LOCAL_DATABASE", "sqlite").strip().lower() or "sqlite"
    if kind not in ("sqlite", "postgres"):
        raise ValueError("SIGNET_LOCAL_DATABASE must be sqlite or postgres")
    return kind


def _postgres() -> PostgresServer:
    return PostgresServer(state_dir() / "postgres", POSTGRES_PORT + port_offset())


def database_url(name: str) -> str:
    """The database URL of service ``name`` under the local platform."""
    if database_kind() == "postgres":
        return _postgres().url("signet_" + name.replace("-", "_"))
    return f"sqlite:///{state_dir() / 'db' / (name + '.db')}"


def service_tokens() -> dict[str, str]:
    """The bearer token of each service and of the local admin, made once per state dir."""
    path = state_dir() / "tokens.json"
    try:
        tokens: dict[str, str] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        tokens = {}
    names = [name for name, *_ in _BASE] + [LOCAL_ADMIN]
    if not all(name in tokens for name in names):
        tokens = {name: tokens.get(name) or secrets.token_urlsafe(32) for name in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(tokens, out)
    return tokens


def _local_secret(name: str, size: int = 32) -> str:
    """A random base64 secret kept in the state dir (mode 0600), made on first use."""
    path = state_dir() / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(secrets.token_bytes(size)).decode())
    return path.read_text().strip()


def port_offset() -> int:
    """``SIGNET_LOCAL_PORT_OFFSET`` shifts every local port (a second copy, or tests)."""
    return int(os.environ.get("SIGNET_LOCAL_PORT_OFFSET", "0"))


def replica_count() -> int:
    """``SIGNET_LOCAL_REPLICAS``: processes per service (default 1)."""
    raw = os.environ.get("SIGNET_LOCAL_REPLICAS", "1")
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"SIGNET_LOCAL_REPLICAS must be a whole number, not {raw!r}") from None
    if not 1 <= count <= 9:
        raise ValueError("SIGNET_LOCAL_REPLICAS must be between 1 and 9")
    return count


def services() -> tuple[ServiceProcess, ...]:
    """Every service process with its local ports: all first replicas, then the second..."""
    off = port_offset()
    return tuple(
        ServiceProcess(n, p, g + off + r * REPLICA_PORT_STEP, m + off + r * REPLICA_PORT_STEP, r)
        for r in range(replica_count())
        for n, p, g, m in _BASE
    )


def replicas_of(name: str) -> tuple[ServiceProcess, ...]:
    """The processes of service ``name``."""
    return tuple(svc for svc in services() if svc.name == name)


def state_dir() -> Path:
    """Where local state lives: ``SIGNET_STATE_DIR`` or ``.state`` in the working dir."""
    return Path(os.environ.get("SIGNET_STATE_DIR", ".state")).resolve()


def health_status(address: str, timeout: float = 2.0) -> str:
    """The overall health of the server at ``address`` ("SERVING", ..., or "DOWN")."""
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError:
        return "DOWN"


def wait_serving(address: str, timeout: float = 60.0) -> bool:
    """Poll gRPC health at ``address`` until it answers SERVING; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_status(address, timeout=1.0) == "SERVING":
            return True
        time.sleep(0.2)
    return False


def _pid_file(svc: ServiceProcess) -> Path:
    return state_dir() / "run" / f"{svc.instance}.pid"


def _log_file(svc: ServiceProcess) -> Path:
    return state_dir() / "logs" / f"{svc.instance}.log"


def service_env(
    svc: ServiceProcess, token_env: Mapping[str, str], bootstrap: str
) -> dict[str, str]:
    """Environment of one service process: ports, its database, Kafka and the HSM."""
    env = dict(os.environ)
    env.update(token_env)
    p = svc.prefix
    env[p + "GRPC_PORT"] = str(svc.grpc_port)
    env[p + "METRICS_PORT"] = str(svc.metrics_port)
    env[p + "DATABASE_URL"] = database_url(svc.name)
    env[p + "KAFKA_BOOTSTRAP"] = bootstrap
    for other in services():
        key = p + other.package.upper() + "_TARGETS"
        env[key] = f"{env[key]},{other.address}" if other.replica else other.address
    tokens = service_tokens()
    env[p + "AUTH_MODE"] = "token"
    env[p + "API_TOKEN_HASHES"] = ",".join(f"{n}:{hash_token(t)}" for n, t in tokens.items())
    env[p + "SERVICE_TOKEN"] = tokens[svc.name]
    port = http_port(svc.name, svc.replica)
    if port is not None:
        env[p + "HTTP_PORT"] = str(port)
        if svc.replica:
            # Certificates name one URL for CRL and OCSP whichever replica issued them.
            env.setdefault(p + "PUBLIC_BASE_URL", f"http://127.0.0.1:{http_port(svc.name)}")
    env.update(sandbox.service_env(svc.package, sandbox.SandboxPorts.shifted(port_offset()), env))
    if svc.name == "ca-gateway":
        # Its first start makes the CA keys in the signer, which on a busy machine can take
        # a minute to come up itself: wait as long as start() does.
        env.setdefault(p + "STARTUP_TIMEOUT_SECONDS", "300")
    if svc.name == "signer":
        # B-T signatures take their timestamp from the platform's own TSA (evidence's HTTP).
        env.setdefault(p + "TSA_URL", f"http://127.0.0.1:{http_port('evidence')}/tsa")
    if svc.name == "notify":
        # Sealed addresses and webhook secrets must survive a restart of the local platform.
        env[p + "DATA_KEY"] = _local_secret("notify-data-key")
    return env


def _token_env() -> dict[str, str]:
    """The SoftHSM token (initialised once) and the signer's front, as services' settings.

    The token for the signer and identity; the front built once from the checkout.
    """
    token = softhsm.ensure_token(state_dir())
    token_env = dict(token.env)
    if "SIGNET_SIGNER_FRONT_BINARY" not in os.environ:
        # As in production: the compiled front on the signer's port (set it empty to run
        # the workers on the port themselves).
        from signet.signer import front

        token_env["SIGNET_SIGNER_FRONT_BINARY"] = str(front.build())
    token_env.update(
        {
            "SIGNET_SIGNER_PKCS11_MODULE": str(token.module_path),
            "SIGNET_SIGNER_PKCS11_TOKEN_LABEL": token.label,
            "SIGNET_SIGNER_PKCS11_PIN": token.pin,
            # Identity opens the token only for its vault's key-encryption key.
            "SIGNET_IDENTITY_PKCS11_MODULE": str(token.module_path),
            "SIGNET_IDENTITY_PKCS11_TOKEN_LABEL": token.label,
            "SIGNET_IDENTITY_PKCS11_PIN": token.pin,
        }
    )
    return token_env


def _spawn(svc: ServiceProcess, token_env: Mapping[str, str], bootstrap: str) -> int:
    """Start one service process in its own session (group); returns its pid."""
    with _log_file(svc).open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"signet.{svc.package}"],
            env=service_env(svc, token_env, bootstrap),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(svc).write_text(str(proc.pid))
    return proc.pid


def _wait_healthy(group: Sequence[ServiceProcess], timeout: float) -> bool:
    """Wait until every process of ``group`` answers SERVING; False (logs printed) if not."""
    deadline = time.monotonic() + timeout
    pending = {svc.instance: svc for svc in group}
    while pending and time.monotonic() < deadline:
        for name, svc in list(pending.items()):
            if read_pid(_pid_file(svc)) is None:
                print(f"{name} exited during start-up:", file=sys.stderr)
                _print_tail(_log_file(svc))
                return False
            if health_status(svc.address) == "SERVING":
                del pending[name]
        time.sleep(0.5)
    if pending:
        print(f"not healthy after {timeout:.0f}s: {', '.join(pending)}", file=sys.stderr)
        for svc in pending.values():
            _print_tail(_log_file(svc))
        return False
    return True


def start(timeout: float = 300.0) -> int:
    """Bring everything up (idempotent) and wait until healthy; returns an exit code.

    Replicas start a generation at a time: the first process of each service migrates its
    database before a second one opens it.
    """
    sd = state_dir()
    for sub in ("logs", "run", "db"):
        (sd / sub).mkdir(parents=True, exist_ok=True)
    token_env = _token_env()
    print(f"SoftHSM token '{token_env['SIGNET_SIGNER_PKCS11_TOKEN_LABEL']}' ready")
    if database_kind() == "postgres":
        pg = _postgres()
        pg.start()
        for name, *_ in _BASE:
            pg.ensure_database("signet_" + name.replace("-", "_"))
        print(f"PostgreSQL at 127.0.0.1:{pg.port}")
    broker = _broker()
    if not broker.is_running():
        print("starting Kafka (first run fetches the broker with Maven) ...")
        broker.start(timeout=180, detached=True)
    print(f"Kafka broker at {broker.bootstrap}")
    try:
        sandbox.start(sd, port_offset())
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"third-party sandbox (providers, SMS gateway, SMTP) under {sandbox.sandbox_dir(sd)}")
    for replica in range(replica_count()):
        group = [svc for svc in services() if svc.replica == replica]
        for svc in group:
            if read_pid(_pid_file(svc)) is None:
                _spawn(svc, token_env, broker.bootstrap)
        if not _wait_healthy(group, timeout):
            return 1
    print_table(broker.bootstrap)
    return 0


def kill_replica(svc: ServiceProcess) -> bool:
    """SIGKILL one service process and its children at once (a crash, no drain).

    Returns False when it was not running.
    """
    pid = read_pid(_pid_file(svc))
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    _pid_file(svc).unlink(missing_ok=True)
    return True


def start_replica(svc: ServiceProcess, timeout: float = 120.0) -> bool:
    """Start one service process again (after :func:`kill_replica`); True once SERVING."""
    if read_pid(_pid_file(svc)) is None:
        _spawn(svc, _token_env(), _broker().bootstrap)
    return _wait_healthy([svc], timeout)


def stop_broker() -> None:
    """Stop the Kafka broker (services keep running and must ride it out)."""
    _broker().stop()


def start_broker(timeout: float = 180.0) -> str:
    """Start the Kafka broker again on its ports and data; returns its bootstrap address."""
    broker = _broker()
    if not broker.is_running():
        broker.start(timeout=timeout, detached=True)
    return broker.bootstrap


def _print_tail(log: Path, lines: int = 20) -> None:
    """Print the last lines of a service log to stderr, so a failed start says why."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        tail = ["(no log written)"]
    print(f"--- {log} (last {len(tail)} lines)", file=sys.stderr)
    for line in tail:
        print(line, file=sys.stderr)


def print_table(bootstrap: str) -> None:
    """Print every endpoint and its health."""
    sd = state_dir()
    rows = [("component", "gRPC", "metrics", "health", "log")]
    for svc in services():
        rows.append(
            (
                svc.instance,
                svc.address,
                f"http://127.0.0.1:{svc.metrics_port}/metrics",
                health_status(svc.address),
                str(_log_file(svc)),
            )
        )
    rows.append(("kafka", bootstrap, "-", "UP" if bootstrap else "DOWN", str(sd / "kafka")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    for name in _HTTP_PORTS:
        print(f"{name} relying-party HTTP: http://127.0.0.1:{http_port(name)}")
    print(f"bearer tokens (key {LOCAL_ADMIN!r} for your own calls): {sd / 'tokens.json'}")


def _terminate_all(pids: Mapping[str, int], timeout: float) -> None:
    """SIGTERM every process group at once (they drain in parallel), SIGKILL stragglers."""
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        for pid in pids.values():
            _reap(pid)
        time.sleep(0.2)
    for name, pid in pids.items():
        if alive(pid):
            print(f"{name} did not drain in {timeout:.0f}s; killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop() -> int:
    """Stop the services (SIGTERM, drain, then SIGKILL) and the broker.

    Every process with a pid file goes, also replicas started with a larger
    ``SIGNET_LOCAL_REPLICAS`` than the one in effect now.
    """
    pid_files = sorted((state_dir() / "run").glob("*.pid"))
    pids = {}
    for path in pid_files:
        pid = read_pid(path)
        if pid is not None:
            pids[path.stem] = pid
    _terminate_all(pids, timeout=30)
    for path in pid_files:
        path.unlink(missing_ok=True)
    if pids:
        print(f"stopped {', '.join(pids)}")
    if sandbox.stop(state_dir()):
        print("stopped the sandbox")
    broker = _broker()
    if broker.is_running():
        broker.stop()
        print("stopped kafka")
    pg = _postgres()
    if pg.is_running():
        pg.stop()
        print("stopped postgresql")
    return 0


def _broker() -> kafka_runner.KafkaBroker:
    return kafka_runner.KafkaBroker(
        state_dir() / "kafka",
        port=KAFKA_PORT + port_offset(),
        controller_port=KAFKA_CONTROLLER_PORT + port_offset(),
    )


def status() -> int:
    """Print the health of every component; non-zero when any is not serving."""
    broker = _broker()
    print_table(broker.bootstrap if broker.is_running() else "")
    healthy = all(health_status(s.address) == "SERVING" for s in services())
    return 0 if healthy and broker.is_running() else 1


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m signet.common.local.platform start|stop|status``."""
    parser = argparse.ArgumentParser(prog="signet-local", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.command]()


if __name__ == "__main__":
    raise SystemExit(main())
