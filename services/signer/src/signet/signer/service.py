"""The signer's rules: who may create, use, disable and destroy which key.

Every private-key operation in Signet passes through here. Two kinds of key:

* subscriber keys, owned by (tenant, account): they sign only with a signing grant from
  identity naming this key, this account and these exact digests; a grant is accepted
  once. A caller that acts for one tenant never touches another tenant's keys.
* system keys, owned by a platform component (the CA, the evidence log, identity's grant
  key): only that component, authenticated as itself, may use or manage them.

The HSM sits behind :class:`signet.common.keys.KeyBackend`. Records, consumed grants and
events commit together (transactional outbox). Signing happens *before* the write
transaction so no database lock is held during HSM work; a signature is returned only
after its grant was consumed and its event committed, and is discarded otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.db import Database, utcnow
from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
)
from signet.common.events import SIGNATURE_TOPIC, EventEnvelope, TraceContext, new_envelope
from signet.common.grants import GrantClaims, verify_grant
from signet.common.keys import (
    KEY_SPECS,
    HashAlgorithm,
    KeyAlgorithm,
    KeyBackend,
    SignatureScheme,
)
from signet.common.outbox import Outbox
from signet.events.v1.events_pb2 import SignatureCreated
from signet.signer import convert
from signet.signer.domain import (
    DEFAULT_SCHEME,
    EventContext,
    KeyOwner,
    KeyView,
    Purpose,
    RetirementReason,
    SignItem,
    SignResult,
)
from signet.signer.journal import (
    REPLAYED,
    RETIRED,
    Journal,
    JournalItem,
    JournalWrite,
    local_journal,
)
from signet.signer.models import KeyRecord, KeyState
from signet.signer.repository import KeyRepository

SOURCE = "signer"
DEFAULT_SYSTEM_OWNERS = frozenset(
    {"ca-gateway", "evidence", "identity", "notify", "prober", "signer"}
)
GRANT_ISSUER_OWNER = "identity"


@dataclass
class _Pending:
    """An item between validation and commit."""

    index: int
    item: SignItem
    key: KeyView
    scheme: SignatureScheme
    named_digest: bytes
    grant: GrantClaims | None
    signature: bytes = b""


class GrantKeys:
    """Identity's grant verification keys, read from the signer's own key records.

    Identity's grant key is a system key held right here (owner ``identity``, purpose
    grant_signing), so the signer needs no configuration to trust it and sees rotations
    as soon as the new key exists. Cached for ``ttl`` seconds; an unknown kid refreshes
    the cache at most once a second.
    """

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self._db = db
        self._ttl = ttl
        self._lock = threading.Lock()
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._loaded = float("-inf")

    def get(self, *, refresh: bool = False) -> Mapping[str, ec.EllipticCurvePublicKey]:
        """Current verification keys by kid (key id)."""
        now = time.monotonic()
        with self._lock:
            stale = now - self._loaded > self._ttl
            if stale or (refresh and now - self._loaded > 1.0):
                self._keys = self._load()
                self._loaded = now
            return self._keys

    def _load(self) -> dict[str, ec.EllipticCurvePublicKey]:
        stmt = select(KeyRecord.id, KeyRecord.public_key_der).where(
            KeyRecord.system_owner == GRANT_ISSUER_OWNER,
            KeyRecord.purpose == Purpose.GRANT_SIGNING.value,
            KeyRecord.algorithm == KeyAlgorithm.EC_P256.value,
            # A disabled grant key still verifies the grants it issued until they expire
            # (minutes); a destroyed one does not.
            KeyRecord.state != KeyState.DESTROYED,
        )
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        with self._db.session() as session:
            for key_id, der in session.execute(stmt):
                public = load_der_public_key(der)
                if isinstance(public, ec.EllipticCurvePublicKey):
                    keys[key_id] = public
        return keys


@dataclass
class Signer:
    """Key lifecycle and grant-checked signing over a :class:`KeyBackend`."""

    db: Database
    backend: KeyBackend
    max_batch: int = 1000
    system_owners: frozenset[str] = DEFAULT_SYSTEM_OWNERS
    on_commit: Callable[[], None] = lambda: None
    grant_keys: GrantKeys | None = None
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)
    _committer: Journal | None = field(default=None, repr=False)
    # Key records for the signing path. Owner and algorithm never change; the state is
    # checked again when the signature commits, so a stale entry cannot sign with a
    # retired key (the entry is dropped then).
    _cache: dict[str, KeyView] = field(default_factory=dict, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.grant_keys is None:
            self.grant_keys = GrantKeys(self.db)
        if self._committer is None:
            self._committer = local_journal(self.db)

    def close(self) -> None:
        """Finish queued commits and stop the writer thread."""
        if self._committer is not None:
            self._committer.close()

    # ---- key lifecycle -------------------------------------------------------------

    def create_key(
        self,
        caller: Principal,
        owner: KeyOwner,
        algorithm: KeyAlgorithm,
        purpose: Purpose,
        request_id: str = "",
    ) -> KeyView:
        """Generate a key pair inside the HSM for ``owner`` and record it.

        ``request_id`` makes the call idempotent: a retry with the same id returns the key
        the first call created (and fails if it asked for something else).
        """
        self._validate_owner(owner, purpose)
        self._check_manage(caller, owner)
        if len(request_id) > 128:
            raise InvalidArgument("request_id must be at most 128 characters")
        if request_id:
            existing = self._by_request_id(request_id)
            if existing is not None:
                return self._same_request(existing, owner, algorithm, purpose)
        if algorithm not in self.backend.supported_algorithms():
            raise FailedPrecondition(f"this HSM does not offer {algorithm.value} keys")
        key_id = "k-" + uuid.uuid4().hex
        spki = self.backend.generate(key_id, algorithm)
        now = self._clock()
        record = KeyRecord(
            id=key_id,
            algorithm=algorithm.value,
            purpose=purpose.value,
            tenant=owner.tenant or None,
            account_id=owner.account or None,
            system_owner=owner.system or None,
            public_key_der=spki,
            state=KeyState.ACTIVE,
            sign_count=0,
            created_at=now,
            request_id=request_id or None,
        )
        try:
            with self.db.session() as session:
                KeyRepository(session).add(record)
                view = _view(record)
                self._add_key_event(session, view, caller, "created")
        except BaseException as err:
            # The record did not commit: the token object must not outlive it.
            self._destroy_quietly(key_id)
            if request_id and isinstance(err, AlreadyExists):
                # A concurrent retry of the same request won the race: answer with its key.
                existing = self._by_request_id(request_id)
                if existing is not None:
                    return self._same_request(existing, owner, algorithm, purpose)
            raise
        self.on_commit()
        return view

    def get_key(self, caller: Principal, key_id: str) -> KeyView:
        """A key's public facts, if the caller may see it."""
        view = self._load(key_id)
        self._check_view(caller, view.owner)
        return view

    def public_key(self, key_id: str) -> KeyView:
        """A key's public key: public information, for anyone who knows the id."""
        return self._load(key_id)

    def list_keys(
        self,
        caller: Principal,
        *,
        tenant: str = "",
        account: str = "",
        system_owner: str = "",
        purpose: Purpose | None = None,
        state: KeyState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[KeyView], str]:
        """One owner's keys, ordered by id; ``page_token`` is the last id of the page before."""
        if system_owner:
            if tenant or account:
                raise InvalidArgument("list by tenant (and account) or by system owner, not both")
            self._check_view(caller, KeyOwner(system=system_owner))
        elif tenant:
            self._check_view(caller, KeyOwner(tenant=tenant, account=account))
        else:
            raise InvalidArgument("tenant_id or system_owner is required")
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or 50, 500)
        with self.db.session() as session:
            rows = KeyRepository(session).list_for_owner(
                tenant or None,
                account or None,
                system_owner=system_owner or None,
                purpose=purpose.value if purpose is not None else None,
                state=state,
                limit=size + 1,
                after=page_token,
            )
            views = [_view(r) for r in rows]
        more = len(views) > size
        views = views[:size]
        return views, (views[-1].key_id if more and views else "")

    def disable_key(self, caller: Principal, key_id: str, reason: RetirementReason) -> KeyView:
        """Stop a key from signing (e.g. its certificate was revoked); it cannot come back."""
        return self._retire(caller, key_id, KeyState.DISABLED, reason)

    def destroy_key(self, caller: Principal, key_id: str, reason: RetirementReason) -> KeyView:
        """Delete the private key from the HSM; the record and its history stay."""
        return self._retire(caller, key_id, KeyState.DESTROYED, reason)

    def _retire(
        self, caller: Principal, key_id: str, target: KeyState, reason: RetirementReason
    ) -> KeyView:
        _check_key_id(key_id)
        with self.db.session() as session:
            record = session.get(KeyRecord, key_id)
            if record is None:
                raise NotFound(f"key {key_id} not found")
            owner = _owner(record)
            self._check_manage(caller, owner)
            if record.state is KeyState.DESTROYED:
                raise FailedPrecondition(f"key {key_id} is already destroyed")
            if record.state is target:
                raise FailedPrecondition(f"key {key_id} is already {target.value}")
            now = self._clock()
            if record.disabled_at is None:
                record.disabled_at = now
            if target is KeyState.DESTROYED:
                record.destroyed_at = now
            record.state = target
            record.retirement_reason = reason.value
            session.flush()
            view = _view(record)
            self._add_key_event(session, view, caller, target.value)
            if target is KeyState.DESTROYED and self.backend.exists(key_id):
                # Inside the transaction: if the token refuses, the state does not change.
                self.backend.destroy(key_id)
        self._forget(key_id)
        self.on_commit()
        return view

    # ---- signing -------------------------------------------------------------------

    def sign(
        self,
        caller: Principal,
        items: Sequence[SignItem],
        *,
        batch_grant: str = "",
        context: EventContext | None = None,
    ) -> list[SignResult]:
        """Sign each item; every item gets its own result or error, in request order.

        ``batch_grant`` applies to items without a grant of their own. Errors of the
        whole call (no items, too many) raise.
        """
        results, signed = self._sign_in_hsm(caller, items, batch_grant)
        if signed:
            for index, result in self._commit(caller, signed, context or EventContext()).items():
                results[index] = result
            self.on_commit()
        return [r for r in results if r is not None]

    def sign_uncommitted(self, caller: Principal, item: SignItem) -> PendingSignature:
        """Sign one item in the HSM without recording it yet (documents).

        The caller builds what the signature goes into (a CMS, a PDF, a timestamp), then
        :meth:`PendingSignature.commit` consumes the grant and writes the event, or the
        signature is dropped unused: a failure in between neither burns the grant nor
        records a signature nobody received.
        """
        results, signed = self._sign_in_hsm(caller, [item], "")
        if not signed:
            error = results[0].error if results[0] is not None else None
            raise error or Internal()
        return PendingSignature(self, caller, signed[0])

    def _sign_in_hsm(
        self, caller: Principal, items: Sequence[SignItem], batch_grant: str
    ) -> tuple[list[SignResult | None], list[_Pending]]:
        """Admit each item and sign the admitted ones; per-item errors in the results."""
        if not items:
            raise InvalidArgument("at least one item to sign is required")
        if len(items) > self.max_batch:
            raise InvalidArgument(f"at most {self.max_batch} items per call")
        results: list[SignResult | None] = [None] * len(items)
        keys = self._cached({i.key_id for i in items})
        grants: dict[str, GrantClaims | ServiceError] = {}
        pending: list[_Pending] = []
        for index, item in enumerate(items):
            try:
                pending.append(self._admit(caller, index, item, keys, grants, batch_grant))
            except ServiceError as err:
                results[index] = SignResult(item_id=item.item_id, key_id=item.key_id, error=err)
        signed: list[_Pending] = []
        # Items for the same key and mechanism sign on one HSM session in one go.
        runs: dict[tuple[str, SignatureScheme, HashAlgorithm | None], list[_Pending]] = {}
        for p in pending:
            hash_alg = None if p.item.is_message else p.item.hash_alg
            runs.setdefault((p.key.key_id, p.scheme, hash_alg), []).append(p)
        for (key_id, scheme, hash_alg), run in runs.items():
            try:
                outputs = self.backend.sign_many(
                    key_id, scheme, hash_alg, [p.item.data for p in run]
                )
            except ServiceError as err:
                outputs = [err] * len(run)
            for p, output in zip(run, outputs, strict=True):
                if isinstance(output, ServiceError):
                    results[p.index] = SignResult(
                        item_id=p.item.item_id, key_id=p.key.key_id, error=output
                    )
                else:
                    p.signature = output
                    signed.append(p)
        signed.sort(key=lambda p: p.index)
        return results, signed

    def _admit(
        self,
        caller: Principal,
        index: int,
        item: SignItem,
        keys: Mapping[str, KeyView],
        grants: dict[str, GrantClaims | ServiceError],
        batch_grant: str,
    ) -> _Pending:
        key = keys.get(item.key_id)
        if key is None:
            _check_key_id(item.key_id)
            raise NotFound(f"key {item.key_id} not found")
        self._check_use(caller, key.owner)
        if key.state is not KeyState.ACTIVE:
            raise FailedPrecondition(f"key {key.key_id} is {key.state.value}")
        scheme = item.scheme or DEFAULT_SCHEME[key.algorithm]
        if scheme not in KEY_SPECS[key.algorithm].schemes:
            allowed = ", ".join(sorted(s.value for s in KEY_SPECS[key.algorithm].schemes))
            raise InvalidArgument(
                f"key {key.key_id} is {key.algorithm.value}; it signs with {allowed}, "
                f"not {scheme.value}"
            )
        named = self._named_digest(item, scheme)
        claims: GrantClaims | None = None
        if not key.owner.system:
            token = item.grant or batch_grant
            if not token:
                raise PermissionDenied(f"signing with subscriber key {key.key_id} needs a grant")
            claims = self._grant(token, grants)
            if claims.key_id != key.key_id:
                raise PermissionDenied("signing grant is for another key")
            if claims.tenant != key.owner.tenant or claims.account != key.owner.account:
                raise PermissionDenied("signing grant is for another account")
            if named not in claims.digests:
                raise PermissionDenied("signing grant does not name this digest")
        return _Pending(index, item, key, scheme, named, claims)

    @staticmethod
    def _named_digest(item: SignItem, scheme: SignatureScheme) -> bytes:
        """The digest a grant must name (and events record) for this item."""
        if item.authorized_digest:
            Signer._check_input(item, scheme)
            return item.authorized_digest
        return Signer._check_input(item, scheme)

    @staticmethod
    def _check_input(item: SignItem, scheme: SignatureScheme) -> bytes:
        """Validate what goes to the HSM; return the digest that names it."""
        if scheme is SignatureScheme.ED25519:
            if not item.is_message or not item.data:
                raise InvalidArgument("Ed25519 signs the message itself: send `message`")
            if len(item.data) > 1024 * 1024:
                raise InvalidArgument("an Ed25519 message may be at most 1 MiB")
            alg = item.hash_alg or HashAlgorithm.SHA256
            if alg is HashAlgorithm.SM3:
                raise InvalidArgument("name an Ed25519 message by SHA-256/384/512")
            return hashlib.new(alg.value.lower(), item.data).digest()
        if item.is_message:
            raise InvalidArgument(f"{scheme.value} signs a digest: send `digest`, not `message`")
        if item.hash_alg is None:
            raise InvalidArgument("digest.algorithm is required")
        if len(item.data) != item.hash_alg.digest_size:
            raise InvalidArgument(
                f"a {item.hash_alg.value} digest is {item.hash_alg.digest_size} bytes, "
                f"got {len(item.data)}"
            )
        return item.data

    def _grant(self, token: str, cache: dict[str, GrantClaims | ServiceError]) -> GrantClaims:
        found = cache.get(token)
        if found is None:
            assert self.grant_keys is not None
            try:
                try:
                    found = verify_grant(token, self.grant_keys.get(), self._clock())
                except PermissionDenied as err:
                    if "unknown key" not in err.message:
                        raise
                    # A grant key created moments ago (rotation): look again once.
                    found = verify_grant(token, self.grant_keys.get(refresh=True), self._clock())
            except ServiceError as err:
                found = err
            cache[token] = found
        if isinstance(found, ServiceError):
            raise found
        return found

    def _commit(
        self, caller: Principal, signed: Sequence[_Pending], context: EventContext
    ) -> dict[int, SignResult]:
        """Record the signatures (grant, counters, event) through the journal."""
        now = self._clock()
        ids = ["sig-" + uuid.uuid4().hex for _ in signed]
        envelopes = _signature_events(signed, ids, caller, context, now)
        rows = Outbox.rows(SIGNATURE_TOPIC, envelopes)
        write = JournalWrite(
            tuple(
                JournalItem(
                    index=p.index,
                    key_id=p.key.key_id,
                    grant_id=p.grant.grant_id if p.grant else "",
                    grant_expires_at=p.grant.expires_at if p.grant else None,
                    event=row,
                )
                for p, row in zip(signed, rows, strict=True)
            ),
            now,
        )
        assert self._committer is not None
        outcomes = self._committer.submit(write)
        results: dict[int, SignResult] = {}
        for p, signature_id in zip(signed, ids, strict=True):
            outcome = outcomes[p.index]
            if outcome == REPLAYED:
                error: ServiceError = PermissionDenied("signing grant has already been used")
            elif outcome == RETIRED:
                self._forget(p.key.key_id)
                error = FailedPrecondition(f"key {p.key.key_id} was retired while signing")
            else:
                results[p.index] = SignResult(
                    item_id=p.item.item_id,
                    signature=p.signature,
                    signature_id=signature_id,
                    scheme=p.scheme,
                    key_id=p.key.key_id,
                    signed_at=now,
                )
                continue
            results[p.index] = SignResult(item_id=p.item.item_id, key_id=p.key.key_id, error=error)
        return results

    # ---- access rules --------------------------------------------------------------

    def _validate_owner(self, owner: KeyOwner, purpose: Purpose) -> None:
        if owner.system:
            if owner.tenant or owner.account:
                raise InvalidArgument("a key has either a system owner or a tenant and account")
            if owner.system not in self.system_owners:
                known = ", ".join(sorted(self.system_owners))
                raise InvalidArgument(f"unknown system owner {owner.system!r}; one of: {known}")
            if purpose is Purpose.SUBSCRIBER_SIGNING:
                raise InvalidArgument("subscriber_signing keys belong to a tenant and account")
            return
        if not (owner.tenant and owner.account):
            raise InvalidArgument("owner needs a tenant and an account, or a system owner")
        if len(owner.tenant) > 64 or len(owner.account) > 64:
            raise InvalidArgument("tenant and account ids are at most 64 characters")
        if purpose is not Purpose.SUBSCRIBER_SIGNING:
            raise InvalidArgument(f"a {purpose.value} key must have a system owner")

    @staticmethod
    def _check_view(caller: Principal, owner: KeyOwner) -> None:
        """Seeing a key's record: no caller acting for another tenant."""
        if caller.tenant is not None and caller.tenant != owner.tenant:
            raise PermissionDenied("the key belongs to another tenant")

    def _check_manage(self, caller: Principal, owner: KeyOwner) -> None:
        """Creating, disabling, destroying: system keys only by their own component."""
        self._check_use(caller, owner)

    @staticmethod
    def _check_use(caller: Principal, owner: KeyOwner) -> None:
        if owner.system:
            if caller.kind != "service" or caller.subject != owner.system:
                raise PermissionDenied(
                    f"only the {owner.system} service may use or manage its system keys"
                )
            return
        if caller.tenant is not None and caller.tenant != owner.tenant:
            raise PermissionDenied("the key belongs to another tenant")

    # ---- records and events ------------------------------------------------------

    def _load(self, key_id: str) -> KeyView:
        _check_key_id(key_id)
        found = self._load_many({key_id}).get(key_id)
        if found is None:
            raise NotFound(f"key {key_id} not found")
        return found

    def _cached(self, key_ids: Iterable[str]) -> dict[str, KeyView]:
        """Key views for signing: from the cache, loading (and caching) the misses."""
        with self._cache_lock:
            found = {k: self._cache[k] for k in key_ids if k in self._cache}
        missing = [k for k in key_ids if k not in found]
        if missing:
            loaded = self._load_many(missing)
            with self._cache_lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache.update(loaded)
            found.update(loaded)
        return found

    def _forget(self, key_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(key_id, None)

    def _load_many(self, key_ids: Iterable[str]) -> dict[str, KeyView]:
        ids = [k for k in key_ids if k]
        if not ids:
            return {}
        with self.db.session() as session:
            rows = session.scalars(select(KeyRecord).where(KeyRecord.id.in_(ids))).all()
            return {r.id: _view(r) for r in rows}

    def _by_request_id(self, request_id: str) -> KeyView | None:
        with self.db.session() as session:
            row = session.scalars(
                select(KeyRecord).where(KeyRecord.request_id == request_id)
            ).first()
            return _view(row) if row is not None else None

    @staticmethod
    def _same_request(
        existing: KeyView, owner: KeyOwner, algorithm: KeyAlgorithm, purpose: Purpose
    ) -> KeyView:
        if (existing.owner, existing.algorithm, existing.purpose) != (owner, algorithm, purpose):
            raise AlreadyExists("request_id was already used for a different key request")
        return existing

    def _destroy_quietly(self, key_id: str) -> None:
        with contextlib.suppress(ServiceError):
            self.backend.destroy(key_id)

    @staticmethod
    def _add_key_event(session: Session, view: KeyView, caller: Principal, change: str) -> None:
        payload = convert.key_event(view, change)
        envelope = new_envelope(
            payload, source=SOURCE, subject=view.key_id, tenant=view.owner.tenant
        )
        envelope.actor.service = caller.subject
        Outbox.add(session, SIGNATURE_TOPIC, envelope)


class PendingSignature:
    """A signature made in the HSM and not yet recorded (see Signer.sign_uncommitted)."""

    def __init__(self, signer: Signer, caller: Principal, pending: _Pending) -> None:
        self._signer = signer
        self._caller = caller
        self._pending = pending
        self._done = False

    @property
    def signature(self) -> bytes:
        """The signature value, to embed; not to hand out before :meth:`commit`."""
        return self._pending.signature

    def commit(self, context: EventContext) -> SignResult:
        """Consume the grant and write SignatureCreated; raises the item's error if any."""
        if self._done:
            raise FailedPrecondition("this signature was already recorded")
        self._done = True
        result = self._signer._commit(self._caller, [self._pending], context)[self._pending.index]
        if result.error is not None:
            raise result.error
        self._signer.on_commit()
        return result


def _check_key_id(key_id: str) -> None:
    if not key_id:
        raise InvalidArgument("key_id is required")
    if len(key_id) > 64:
        raise InvalidArgument("key_id is at most 64 characters")


def _owner(record: KeyRecord) -> KeyOwner:
    return KeyOwner(
        tenant=record.tenant or "",
        account=record.account_id or "",
        system=record.system_owner or "",
    )


def _view(record: KeyRecord) -> KeyView:
    return KeyView(
        key_id=record.id,
        algorithm=KeyAlgorithm(record.algorithm),
        purpose=Purpose(record.purpose),
        owner=_owner(record),
        state=record.state,
        public_key_der=record.public_key_der,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        disabled_at=record.disabled_at,
        destroyed_at=record.destroyed_at,
        retirement_reason=RetirementReason(record.retirement_reason or "unspecified"),
        sign_count=record.sign_count,
    )


def _signature_events(
    signed: Sequence[_Pending],
    signature_ids: Sequence[str],
    caller: Principal,
    context: EventContext,
    now: datetime,
) -> list[EventEnvelope]:
    """One call's SignatureCreated envelopes, all with the trace context of the call.

    What the signatures of one key, scheme and hash share (owner, caller, time, trace,
    actor, ...) is built once, in the first one's envelope; every other one is a copy
    with its own event id, signature id, grant, digest and signature hash. Building each
    from scratch cost about as much as all the rest of the signer's own work on it.
    """
    shared: dict[tuple[str, SignatureScheme, HashAlgorithm], _EventTemplate] = {}
    trace: TraceContext | None = None
    envelopes: list[EventEnvelope] = []
    for p, signature_id in zip(signed, signature_ids, strict=True):
        hash_alg = p.item.hash_alg or HashAlgorithm.SHA256
        grant_id = p.grant.grant_id if p.grant else ""
        kind = (p.key.key_id, p.scheme, hash_alg)
        template = shared.get(kind)
        if template is None:
            payload = convert.signature_event(
                signature_id=signature_id,
                key=p.key,
                grant_id=grant_id,
                hash_alg=hash_alg,
                digest=p.named_digest,
                scheme=p.scheme,
                signature=p.signature,
                caller=caller.subject,
                context=context,
            )
            envelope = new_envelope(
                payload,
                source=SOURCE,
                subject=p.key.key_id,
                tenant=p.key.owner.tenant,
                time=now,
                trace=trace,
            )
            trace = envelope.trace
            envelope.actor.service = caller.subject
            if p.key.owner.account:
                envelope.actor.tenant_id = p.key.owner.tenant
                envelope.actor.account_id = p.key.owner.account
            envelope.transaction_id = p.item.transaction_id or context.transaction_id
            envelope.digests.append(convert.digest_message(hash_alg, p.named_digest))
            shared[kind] = _EventTemplate(envelope, payload)
            envelopes.append(envelope)
            continue
        event = SignatureCreated()
        event.CopyFrom(template.payload)
        event.signature_id = signature_id
        event.grant_id = grant_id
        event.digest.value = p.named_digest
        event.signature_sha256 = context.output_sha256 or hashlib.sha256(p.signature).digest()
        envelope = EventEnvelope()
        envelope.CopyFrom(template.envelope)
        envelope.id = str(uuid.uuid4())
        envelope.transaction_id = p.item.transaction_id or context.transaction_id
        envelope.digests[0].value = p.named_digest
        envelope.payload.Pack(event)
        envelopes.append(envelope)
    return envelopes


@dataclass(frozen=True)
class _EventTemplate:
    """The first SignatureCreated of a key/scheme/hash in a call, copied for the others."""

    envelope: EventEnvelope
    payload: SignatureCreated


__all__ = ["SOURCE", "GrantKeys", "Signer"]
