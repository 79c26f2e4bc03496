"""A local PostgreSQL server from the Debian package's binaries, for tests and the platform.

Several processes of one service share a database only in earnest on PostgreSQL (row
locks, ``SKIP LOCKED`` claims); SQLite serialises writers of one file and refuses a reader
that tries to write after another process committed. ``make chaos`` therefore runs its
replicas on this server. As root the server runs as the ``postgres`` system user
(PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

import sqlalchemy as sa


def pg_bindir() -> Path:
    """Directory of ``initdb`` and ``pg_ctl``; RuntimeError when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run `make system-deps`")
    return Path(candidates[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster under ``base`` (data, socket and log), on ``port``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.data = base / "data"
        self.log = base / "server.log"

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        """Whether the cluster's postmaster is up."""
        if not (self.data / "postmaster.pid").exists():
            return False
        status = subprocess.run(
            _as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def start(self) -> None:
        """Initialise the cluster once (trust auth, UTF-8), then start it and wait."""
        bindir = pg_bindir()
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self.base.chmod(0o755)
        if not (self.data / "PG_VERSION").exists():
            initdb = [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres"]
            subprocess.run(
                _as_postgres([*initdb, "-A", "trust", "-E", "UTF8"]),
                check=True,
                capture_output=True,
            )
        if self.is_running():
            return
        options = f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c max_connections=300"
        ctl = [str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log)]
        subprocess.run(
            _as_postgres([*ctl, "-w", "-t", "60", "-o", options, "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Fast shutdown (open sessions are ended); nothing when not running."""
        if not self.data.exists():
            return
        subprocess.run(
            _as_postgres(
                [str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its URL."""
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if exists is None:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)
