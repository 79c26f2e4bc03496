"""The evidence log's rules: append, integrate in batches, sign tree heads, prove.

Appending only queues an entry (one short insert, idempotent on the event id; concurrent
appends are committed together, see :mod:`signet.evidence.appender`). The
:class:`Sequencer` integrates queued entries every few hundred milliseconds or as soon as
``batch_size`` are waiting: it gives them leaf indices, stores the subtree hashes they
complete, computes the new root from the log's compact range (O(log n) rows read), has
the log key in the HSM sign the tree head (through the signer) and commits all of that
with its events in one transaction. A failure (signer down, a concurrent sequencer) rolls
the batch back; it is integrated on the next pass. A head is re-signed on a schedule even
when nothing arrived, so a fresh head always proves the log is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from sqlalchemy.orm import Session

from signet.common.db import Database, utcnow
from signet.common.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from signet.common.events import EVIDENCE_TOPIC, EventEnvelope, encode_envelope
from signet.common.groupcommit import GroupCommitter
from signet.common.leader import LeaderLease
from signet.common.metrics import counter, gauge, histogram
from signet.common.outbox import Outbox
from signet.evidence import convert, merkle
from signet.evidence.appender import Appended, AppendWriter, NewEntry
from signet.evidence.domain import (
    AppendResult,
    ConsistencyProof,
    EntryFilter,
    EntryView,
    InclusionProof,
    IntegrationResult,
    KeyPurpose,
    KeyService,
    LogKeyView,
    SigningKey,
    WitnessExporter,
)
from signet.evidence.index import refs_of
from signet.evidence.keys import ensure_service_key
from signet.evidence.models import LogEntry, TreeHead
from signet.evidence.repository import LogRepository
from signet.evidence.treehead import (
    SignedTreeHead,
    from_timestamp_ms,
    log_id_of,
    signing_digest,
    timestamp_ms,
)

SOURCE = convert.SOURCE
_APPENDS = counter(
    "signet_evidence_appends_total",
    "Events offered to the log; outcome appended or duplicate (already present).",
    ["outcome"],
)
_TREE_SIZE = gauge("signet_evidence_tree_size_entries", "Entries under the latest signed head.")
_INTEGRATIONS = histogram(
    "signet_evidence_integration_seconds",
    "One sequencer pass: read the batch, sign the head in the HSM, write.",
)
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
_log = logging.getLogger("signet.evidence.service")

_LIMITS = {"id": 64, "type": 128, "source": 64, "subject": 128, "tenant": 64}


def entry_view(row: LogEntry) -> EntryView:
    """The domain view of a stored entry."""
    return EntryView(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        source=row.source,
        subject=row.subject,
        tenant=row.tenant,
        transaction_id=row.transaction_id,
        event_time=row.event_time,
        leaf_index=row.leaf_index,
        leaf_hash=row.leaf_hash,
        leaf_data=row.leaf_data,
        received_at=row.received_at,
        integrated_at=row.integrated_at,
    )


def _check_envelope(envelope: EventEnvelope) -> None:
    if not envelope.id:
        raise InvalidArgument("event.id is required")
    if not envelope.type:
        raise InvalidArgument("event.type is required")
    for name, limit in _LIMITS.items():
        if len(getattr(envelope, name)) > limit:
            raise InvalidArgument(f"event.{name} is longer than {limit} characters")
    if len(envelope.transaction_id) > 128:
        raise InvalidArgument("event.transaction_id is longer than 128 characters")


@dataclass
class EvidenceLog:
    """The append-only log: entries, integration, signed heads and proofs."""

    db: Database
    keys: KeyService
    batch_size: int = 1000
    on_commit: Callable[[], None] = lambda: None
    witnesses: Sequence[WitnessExporter] = ()
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)
    _key: SigningKey | None = field(default=None, repr=False)
    _integrated: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _integrate_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending_hint: int = field(default=0, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)
    _writer: GroupCommitter[NewEntry, Appended] | None = field(default=None, repr=False)
    _appender_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _witness_cv: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _witness_pending: SignedTreeHead | None = field(default=None, repr=False)
    _witness_busy: bool = field(default=False, repr=False)
    _witness_stop: bool = field(default=False, repr=False)
    _witness_thread: threading.Thread | None = field(default=None, repr=False)

    # ---- key ------------------------------------------------------------------------

    def start(self) -> None:
        """Make sure the log key exists and the log has a signed head (size 0 at first)."""
        self._key = ensure_service_key(self.db, self.keys, KeyPurpose.LOG_SIGNING)
        with self.db.session() as session:
            empty = LogRepository(session).latest_tree_head() is None
        if empty:
            self.integrate(force_sign=True)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has succeeded (the log key is known)."""
        return self._key is not None

    @property
    def key(self) -> SigningKey:
        """The log key (after :meth:`start`)."""
        if self._key is None:
            raise FailedPrecondition("the log key is not ready yet; retry shortly")
        return self._key

    def public_key(self) -> LogKeyView:
        """The log's public key and id, for relying parties and witnesses."""
        key = self.key
        pem = (
            load_der_public_key(key.spki_der)
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return LogKeyView(log_id=log_id_of(key.spki_der), spki_der=key.spki_der, pem=pem)

    # ---- append ---------------------------------------------------------------------

    def _appender(self) -> GroupCommitter[NewEntry, Appended]:
        with self._appender_lock:
            if self._writer is None:
                engine = self.db.engine
                self._writer = GroupCommitter(
                    engine, AppendWriter(engine.dialect), name="evidence-append"
                )
            return self._writer

    def close(self) -> None:
        """Finish queued appends, stop the append writer and the witness thread."""
        with self._appender_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        with self._witness_cv:
            self._witness_stop = True
            thread = self._witness_thread
            self._witness_cv.notify_all()
        if thread is not None:
            thread.join(30)

    def append(self, envelope: EventEnvelope) -> AppendResult:
        """Queue ``envelope`` for the log; an event id already present appends nothing."""
        _check_envelope(envelope)
        data = encode_envelope(envelope)
        has_time = envelope.HasField("time")
        event_time = envelope.time.ToDatetime(tzinfo=UTC) if has_time else self._clock()
        entry = NewEntry(
            event_id=envelope.id,
            event_type=envelope.type,
            source=envelope.source,
            subject=envelope.subject,
            tenant=envelope.tenant,
            transaction_id=envelope.transaction_id,
            event_time=event_time,
            leaf_data=data,
            leaf_hash=merkle.leaf_hash(data),
            received_at=self._clock(),
            refs=tuple(sorted(refs_of(envelope))),
        )
        outcome = self._appender().submit(entry)
        _APPENDS.labels("duplicate" if outcome.duplicate else "appended").inc()
        if outcome.duplicate:
            # Appended before (a redelivery, a retry, or a concurrent delivery).
            with self.db.session() as session:
                existing = session.get(LogEntry, outcome.entry_id)
                if existing is None:
                    raise Internal()
                return AppendResult(entry_view(existing), duplicate=True)
        view = EntryView(
            id=outcome.entry_id,
            event_id=entry.event_id,
            event_type=entry.event_type,
            source=entry.source,
            subject=entry.subject,
            tenant=entry.tenant,
            transaction_id=entry.transaction_id,
            event_time=entry.event_time,
            leaf_index=None,
            leaf_hash=entry.leaf_hash,
            leaf_data=entry.leaf_data,
            received_at=entry.received_at,
            integrated_at=None,
        )
        self._pending_hint += 1
        if self._pending_hint >= self.batch_size:
            self._wake.set()
        return AppendResult(view, duplicate=False)

    def wait_integrated(self, entry_id: int, timeout: float) -> EntryView:
        """Wake the sequencer, wait for the entry's leaf index (FailedPrecondition on timeout)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while True:
            with self.db.session() as session:
                row = session.get(LogEntry, entry_id)
                if row is None:
                    raise NotFound("entry not found")
                if row.leaf_index is not None:
                    return entry_view(row)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FailedPrecondition(
                    "the entry is queued but not integrated yet; ask again shortly"
                )
            with self._integrated:
                self._integrated.wait(min(remaining, 0.5))

    # ---- integration ----------------------------------------------------------------

    def wake(self) -> threading.Event:
        """The event that wakes the sequencer early."""
        return self._wake

    def integrate(self, *, force_sign: bool = False) -> IntegrationResult:
        """Integrate up to ``batch_size`` queued entries and sign the new head.

        With nothing queued, signs a fresh head of the current size only when
        ``force_sign`` (the schedule). One pass at a time per process.
        """
        key = self._key or ensure_service_key(self.db, self.keys, KeyPurpose.LOG_SIGNING)
        self._key = key
        with self._integrate_lock, _INTEGRATIONS.time():
            result = self._integrate(key, force_sign)
        if result.head is not None:
            _TREE_SIZE.set(result.head.tree_size)
            with self._integrated:
                self._integrated.notify_all()
            self._export(result)
        return result

    def _integrate(self, key: SigningKey, force_sign: bool) -> IntegrationResult:
        # Read phase: what to integrate and the compact range it extends.
        with self.db.session() as session:
            repo = LogRepository(session)
            latest = repo.latest_tree_head()
            start = latest.tree_size if latest is not None else 0
            pending = [(e.id, e.event_id, e.leaf_hash) for e in repo.unsequenced(self.batch_size)]
            self._pending_hint = 0
            if not pending and not force_sign and latest is not None:
                return IntegrationResult()
            border = repo.nodes(merkle.compact_range(start))
        if len(border) != len(merkle.compact_range(start)):
            _log.error("log storage lacks subtree hashes", extra={"tree_size": start})
            raise Internal()
        created = merkle.new_nodes(start, border, [leaf for _, _, leaf in pending])
        size = start + len(pending)
        known = {**border, **created}
        root = merkle.fold([known[k] for k in merkle.compact_range(size)])
        ms = timestamp_ms(self._clock())
        # Signed outside any transaction: no database lock is held across the HSM round trip.
        signature = self.keys.sign_digest(key.key_id, signing_digest(size, root, ms))
        head = SignedTreeHead(
            log_id=log_id_of(key.spki_der),
            tree_size=size,
            root_hash=root,
            timestamp=from_timestamp_ms(ms),
            signature=signature,
        )
        result = IntegrationResult(
            first_index=start, event_ids=[event_id for _, event_id, _ in pending], head=head
        )
        # Write phase: it starts with a write, so SQLite takes the write lock (waiting its
        # turn) instead of upgrading a stale read snapshot; then it checks nothing moved.
        with self.db.session() as session:
            repo = LogRepository(session)
            if pending:
                repo.add_nodes(created)
                repo.sequence([(entry_id, start + i) for i, (entry_id, _, _) in enumerate(pending)])
            current = repo.latest_tree_head()
            if (current.tree_size if current is not None else 0) != start:
                # Another sequencer integrated meanwhile; roll back and try again later.
                raise Unavailable("the log moved during integration; retrying")
            repo.add_tree_head(
                TreeHead(
                    tree_size=size,
                    root_hash=root,
                    timestamp=head.timestamp,
                    signature=signature,
                    key_id=key.key_id,
                )
            )
            self._record_events(session, result, head)
        self.on_commit()
        return result

    @staticmethod
    def _record_events(session: Session, result: IntegrationResult, head: SignedTreeHead) -> None:
        if result.event_ids:
            Outbox.add(
                session,
                EVIDENCE_TOPIC,
                convert.appended_event(head, result.first_index, result.event_ids),
            )
        Outbox.add(session, EVIDENCE_TOPIC, convert.tree_head_event(head))

    # ---- witnesses ------------------------------------------------------------------

    def _export(self, result: IntegrationResult) -> None:
        """Hand the new head to the witness thread; a slow witness never delays the log."""
        if not self.witnesses or result.head is None:
            return
        with self._witness_cv:
            # Only the newest head waits: a witness that was down gets one proof from the
            # last head it accepted to the newest, not a backlog.
            self._witness_pending = result.head
            if self._witness_thread is None:
                self._witness_thread = threading.Thread(
                    target=self._witness_loop, name="evidence-witnesses", daemon=True
                )
                self._witness_thread.start()
            self._witness_cv.notify_all()

    def flush_witnesses(self, timeout: float = 30.0) -> bool:
        """Wait until every head handed out so far was offered to the witnesses."""
        deadline = time.monotonic() + timeout
        with self._witness_cv:
            while self._witness_pending is not None or self._witness_busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._witness_cv.wait(remaining)
        return True

    def _witness_loop(self) -> None:
        delivered: dict[int, int] = {}
        while True:
            with self._witness_cv:
                while self._witness_pending is None and not self._witness_stop:
                    self._witness_cv.wait()
                head = self._witness_pending
                if head is None:
                    return
                self._witness_pending = None
                self._witness_busy = True
            try:
                self._deliver(head, delivered)
            finally:
                with self._witness_cv:
                    self._witness_busy = False
                    self._witness_cv.notify_all()

    def _deliver(self, head: SignedTreeHead, delivered: dict[int, int]) -> None:
        pem = self.public_key().pem
        for number, witness in enumerate(self.witnesses):
            first = delivered.get(number, 0)
            consistency: ConsistencyProof | None = None
            try:
                if 0 < first < head.tree_size:
                    proof = self.consistency_proof(first, head.tree_size)
                    consistency = ConsistencyProof(first, proof.hashes, head)
                witness.export(head, pem, consistency)
            except Exception as err:  # noqa: BLE001  (a witness never stops the log)
                _log.warning(
                    "witness export failed",
                    extra={"witness": type(witness).__name__, "error": type(err).__name__},
                )
                continue
            delivered[number] = head.tree_size

    # ---- reading --------------------------------------------------------------------

    def tree_head(self, size: int = 0) -> SignedTreeHead:
        """The latest signed head, or the newest one of exactly ``size`` entries."""
        if size < 0:
            raise InvalidArgument("tree_size must not be negative")
        with self.db.session() as session:
            return self._head(LogRepository(session), size)

    def _head(self, repo: LogRepository, size: int) -> SignedTreeHead:
        row = repo.latest_tree_head() if size == 0 else repo.tree_head_for_size(size)
        if row is None:
            if size == 0:
                raise FailedPrecondition("the log has no signed tree head yet; retry shortly")
            latest = repo.latest_tree_head()
            current = latest.tree_size if latest is not None else 0
            if size > current:
                raise NotFound(f"the log has {current} entries; tree_size {size} is ahead of it")
            raise NotFound(f"no signed tree head of size {size}; use one from GetSignedTreeHead")
        return SignedTreeHead(
            log_id=log_id_of(self._spki_for(row.key_id)),
            tree_size=row.tree_size,
            root_hash=row.root_hash,
            timestamp=row.timestamp,
            signature=row.signature,
        )

    def _spki_for(self, key_id: str) -> bytes:
        if self._key is not None and self._key.key_id == key_id:
            return self._key.spki_der
        with self.db.session() as session:
            row = LogRepository(session).service_key(KeyPurpose.LOG_SIGNING.value)
        if row is None or row.key_id != key_id:
            raise Internal()
        return row.spki_der

    def inclusion_proof(
        self,
        *,
        leaf_index: int | None = None,
        leaf_hash: bytes | None = None,
        event_id: str | None = None,
        tree_size: int = 0,
    ) -> InclusionProof:
        """The audit path of one entry against the signed head of ``tree_size`` (0: latest)."""
        with self.db.session() as session:
            repo = LogRepository(session)
            if leaf_index is not None:
                if leaf_index < 0:
                    raise InvalidArgument("leaf_index must not be negative")
                row = repo.by_leaf_index(leaf_index)
            elif leaf_hash is not None:
                if len(leaf_hash) != merkle.HASH_SIZE:
                    raise InvalidArgument("leaf_hash must be 32 bytes")
                row = repo.by_leaf_hash(leaf_hash)
            elif event_id:
                row = repo.by_event_id(event_id)
            else:
                raise InvalidArgument("set leaf_index, leaf_hash or event_id")
            if row is None:
                raise NotFound("no such entry in the log")
            if row.leaf_index is None:
                raise FailedPrecondition("the entry is not integrated yet; ask again shortly")
            head = self._head(repo, tree_size)
            if row.leaf_index >= head.tree_size:
                raise FailedPrecondition(
                    f"entry {row.leaf_index} is not in the tree of size {head.tree_size}; "
                    "use a later tree head"
                )
            ranges = merkle.inclusion_ranges(row.leaf_index, head.tree_size)
            hashes = self._hash_ranges(repo, ranges)
            return InclusionProof(row.leaf_index, row.leaf_hash, tuple(hashes), head)

    def consistency_proof(self, first: int, second: int = 0) -> ConsistencyProof:
        """Proof that the tree of size ``first`` is a prefix of the signed head ``second``."""
        if first < 0:
            raise InvalidArgument("first_tree_size must not be negative")
        with self.db.session() as session:
            repo = LogRepository(session)
            head = self._head(repo, second)
            if first > head.tree_size:
                raise InvalidArgument(
                    f"first_tree_size {first} is larger than second_tree_size {head.tree_size}"
                )
            if first == 0:
                return ConsistencyProof(0, (), head)
            ranges = merkle.consistency_ranges(first, head.tree_size)
            return ConsistencyProof(first, tuple(self._hash_ranges(repo, ranges)), head)

    @staticmethod
    def _hash_ranges(repo: LogRepository, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        keys = merkle.nodes_for(ranges)
        nodes = repo.nodes(keys)
        if len(nodes) != len(keys):
            _log.error("log storage lacks subtree hashes for a proof")
            raise Internal()
        return merkle.hash_ranges(ranges, nodes)

    def entries(
        self, filters: EntryFilter, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[EntryView], str]:
        """Integrated entries in leaf order, a page at a time."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        start = filters.start_index
        if start < 0:
            raise InvalidArgument("start_index must not be negative")
        if page_token:
            try:
                start = int(page_token)
            except ValueError:
                raise InvalidArgument("page_token is not one this service issued") from None
            if start < 0:
                raise InvalidArgument("page_token is not one this service issued")
        with self.db.session() as session:
            repo = LogRepository(session)
            latest = repo.latest_tree_head()
            end = latest.tree_size if latest is not None else 0
            rows = repo.entries(
                start_index=start,
                end_index=end,
                transaction_id=filters.transaction_id,
                event_type=filters.event_type,
                tenant=filters.tenant,
                ref=("digest", filters.digest_ref) if filters.digest_ref else None,
                limit=size,
            )
            views = [entry_view(r) for r in rows]
        token = ""
        if len(views) == size and views[-1].leaf_index is not None:
            token = str(views[-1].leaf_index + 1)
        return views, token


class Sequencer:
    """The background loop integrating queued entries and re-signing heads on schedule.

    With several replicas on one database, ``lease`` lets one of them sequence at a time:
    two sequencers extending the tree from the same size collide on every pass (one
    commits, the other rolls back after signing a head for nothing) and integration
    crawls. The others take over when the holder dies.
    """

    NOT_LEADER_POLL_SECONDS = 1.0

    def __init__(
        self,
        log: EvidenceLog,
        interval_seconds: float = 0.2,
        sign_every_seconds: float = 60.0,
        *,
        lease: LeaderLease | None = None,
    ) -> None:
        if interval_seconds <= 0 or sign_every_seconds <= 0:
            raise ValueError("intervals must be positive")
        self._lease = lease
        self._log = log
        self._interval = interval_seconds
        self._sign_every = sign_every_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop thread (idempotent while running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="evidence-sequencer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass in flight."""
        self._stopping.set()
        self._log.wake().set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lease is not None:
            self._lease.release()

    def _run(self) -> None:
        last_signed = time.monotonic()
        backoff = self._interval
        wake = self._log.wake()
        while not self._stopping.is_set():
            wake.wait(backoff)
            wake.clear()
            if self._stopping.is_set():
                break
            if self._lease is not None and not self._lease.held():
                backoff = self.NOT_LEADER_POLL_SECONDS
                continue
            due = time.monotonic() - last_signed >= self._sign_every
            try:
                if not self._log.started:
                    # The log key and the first head; retried until the signer answers.
                    self._log.start()
                result = self._log.integrate(force_sign=due)
                signed = result.head is not None
                while result.head is not None and len(result.event_ids) >= self._log.batch_size:
                    # A full batch: more are probably waiting.
                    result = self._log.integrate()
            except ServiceError as err:
                _log.warning(
                    "integration failed; retrying",
                    extra={"error": type(err).__name__, "backoff_seconds": backoff},
                )
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception as err:  # noqa: BLE001  (the loop must outlive surprises)
                _log.error("integration failed unexpectedly", extra={"error": type(err).__name__})
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = self._interval
            if signed:
                last_signed = time.monotonic()
