"""SQLAlchemy 2 engine, session scope and schema migrations, shared by every service.

SQLite is the embedded default (WAL, foreign keys on, a busy timeout so the outbox relay
and request threads can share a file); PostgreSQL is selected by URL. Library errors are
translated into the :mod:`signet.common.errors` tree at the session boundary, so domain
code never sees SQLAlchemy exceptions.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, Enum, MetaData, TypeDecorator, create_engine, event, exc
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ServiceError,
    Unavailable,
)

log = logging.getLogger(__name__)
_M = TypeVar("_M")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Normalise to UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Attach UTC to values read back (SQLite forgets the zone)."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


# Deterministic constraint names, so migrations written by hand, Alembic's batch mode on
# SQLite and PostgreSQL all agree on what a constraint is called.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the tables every service has (outbox, processed events).

    Each service declares its own base with its own :class:`MetaData` (same naming
    convention) for its domain tables, so one service's schema never includes another's.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine for ``url`` with the settings Signet relies on.

    For SQLite the parent directory is created, WAL is enabled and foreign keys are
    enforced; for PostgreSQL, connections are pre-pinged so a restarted server is survived.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # The driver's own transaction handling is switched off (isolation_level None) and
        # SQLAlchemy emits BEGIN itself: otherwise a SAVEPOINT opening a transaction is
        # committed by its RELEASE, and nested transactions are not atomic.
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if path and path != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        # IMMEDIATE: a transaction that began as a reader cannot become a writer once another
        # connection has written (SQLite fails it at once, busy timeout or not), so every unit
        # of work takes the write lock when it begins and waits its turn under the timeout.
        # WAL readers outside transactions are not blocked by it.
        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus a session factory; :meth:`session` is the unit of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)
        # On SQLite a unit of work holds the write lock from its start, so a second one
        # opened inside it on the same thread would wait for itself until the busy timeout.
        self._single_writer = engine.dialect.name == "sqlite"
        self._open = threading.local()

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Database:
        """Create the engine for ``url`` and wrap it."""
        return cls(create_db_engine(url, echo=echo))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error.

        Integrity errors become :class:`AlreadyExists`; connection and lock errors become
        :class:`Unavailable` (retryable). Service errors raised inside pass unchanged.
        """
        if self._single_writer:
            if getattr(self._open, "active", False):
                raise RuntimeError(
                    "a unit of work was opened inside another on the same thread; on SQLite "
                    "it would wait for the outer one's write lock: finish the outer one first"
                )
            self._open.active = True
        session = self._factory()
        try:
            yield session
            session.commit()
        except ServiceError:
            session.rollback()
            raise
        except exc.IntegrityError as err:
            session.rollback()
            raise translate_integrity_error(err) from err
        except (exc.OperationalError, exc.InterfaceError) as err:
            session.rollback()
            log.warning("database unavailable: %s", type(err.orig).__name__)
            raise Unavailable("the database is temporarily unavailable") from err
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if self._single_writer:
                self._open.active = False

    def migrate(self, script_location: str | Path) -> None:
        """Bring the schema up to date with the migrations in ``script_location``."""
        run_migrations(self.engine, script_location)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def translate_integrity_error(err: exc.IntegrityError) -> ServiceError:
    """A unique-key violation is AlreadyExists; any other constraint is FailedPrecondition.

    The driver's message names tables and values, so it is logged by class only.
    """
    log.warning("integrity error: %s", type(err.orig).__name__)
    text = str(err.orig).lower()
    if "unique" in text or "duplicate key" in text:
        return AlreadyExists("a record with the same identity already exists")
    return FailedPrecondition("the change conflicts with related records")


def run_migrations(engine: Engine, script_location: str | Path) -> None:
    """Upgrade the schema at ``engine`` to the newest Alembic revision in ``script_location``.

    Each service ships its own migrations directory; the version table is per service
    database, so services never share a schema.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def get_or_not_found(session: Session, model: type[_M], key: Any, what: str) -> _M:
    """Load ``model`` by primary key or raise :class:`NotFound` naming ``what`` (e.g. "key")."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def str_enum(enum_cls: type[enum.StrEnum]) -> Enum:
    """A portable column type for a string enum: VARCHAR storing the member values."""
    return Enum(
        enum_cls,
        native_enum=False,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda e: [m.value for m in e],
    )
