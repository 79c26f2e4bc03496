"""The personal-data vault: envelope encryption with HSM-held keys, keyed look-up hashes.

Design. The signer API only signs, so identity opens the HSM itself for one thing: an
AES-256 key-encryption key (KEK) on the token, non-extractable, usable only to encrypt
and decrypt. Every account gets its own random 256-bit data key (DEK); the DEK is stored
only wrapped by the KEK (AES-GCM inside the HSM) and each value is sealed with the DEK
(AES-GCM in process, the account id, record and field name as associated data, so a
ciphertext moved to another row does not open). Unwrapped DEKs are cached in memory for a
short time so a request does not cost an HSM round trip.

A platform look-up key, wrapped the same way, keys the HMAC-SHA256 hashes that let the
service find an account by ID number or phone without storing either in clear; the same
key hashes one-time codes, and its hash of an ID number or credit code is the account's
subject identifier hash.

Deleting an account's last entry deletes its DEK, so any copy of the ciphertext (backups)
becomes unreadable: crypto-shredding.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists, Internal
from signet.identity.models import DataCategory, DataKey, VaultEntry

LOOKUP_KEY_ID = "lookup-v1"
ACCOUNT_OWNER = "account"


class KeyWrapper(Protocol):
    """Wraps and unwraps data keys with a key-encryption key that never leaves the HSM."""

    @property
    def label(self) -> str:
        """Name of the key-encryption key (recorded beside each wrapped key)."""
        ...

    def wrap(self, key: bytes) -> bytes:
        """Encrypt ``key`` under the KEK."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """Decrypt a key :meth:`wrap` produced; Internal when it does not authenticate."""
        ...


class PersonalDataVault:
    """Seals and opens personal data; computes keyed look-up hashes."""

    def __init__(
        self, db: Database, wrapper: KeyWrapper, *, cache_size: int = 4096, cache_ttl: float = 300
    ) -> None:
        self._db = db
        self._wrapper = wrapper
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._lock = threading.Lock()
        self._lookup_key = self._load_or_create_lookup_key()

    # ---- keyed hashes ----------------------------------------------------------------

    @property
    def lookup_key(self) -> bytes:
        """The HMAC key for look-up hashes and code hashes (held in memory only)."""
        return self._lookup_key

    def lookup(self, kind: str, value: str) -> str:
        """Hex keyed hash of a normalised value of ``kind`` (id_number, phone, email ...)."""
        return self.subject_hash(kind, value).hex()

    def subject_hash(self, kind: str, value: str) -> bytes:
        """Raw keyed hash (the subject identifier hash certificates carry)."""
        return hmac.new(self._lookup_key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    # ---- sealing ---------------------------------------------------------------------

    def put(
        self,
        session: Session,
        account_id: str,
        field: str,
        value: str,
        category: DataCategory,
        *,
        owner_ref: str = ACCOUNT_OWNER,
        retained_until: datetime | None = None,
    ) -> None:
        """Store (or replace) ``field`` of ``owner_ref`` encrypted under the account's DEK."""
        key_id, dek = self._account_key(session, account_id)
        nonce = os.urandom(12)
        ciphertext = AESGCM(dek).encrypt(nonce, value.encode(), _aad(account_id, owner_ref, field))
        entry = session.scalars(
            select(VaultEntry).where(
                VaultEntry.account_id == account_id,
                VaultEntry.owner_ref == owner_ref,
                VaultEntry.field == field,
            )
        ).first()
        if entry is None:
            entry = VaultEntry(account_id=account_id, owner_ref=owner_ref, field=field)
            session.add(entry)
        entry.category = category
        entry.data_key_id = key_id
        entry.nonce = nonce
        entry.ciphertext = ciphertext
        entry.retained_until = retained_until
        session.flush()

    def get_all(
        self, session: Session, account_id: str, owner_ref: str = ACCOUNT_OWNER
    ) -> dict[str, str]:
        """Every field of ``owner_ref`` in clear."""
        entries = session.scalars(
            select(VaultEntry).where(
                VaultEntry.account_id == account_id, VaultEntry.owner_ref == owner_ref
            )
        ).all()
        return {e.field: self._open(session, e) for e in entries}

    def entries(self, session: Session, account_id: str) -> list[tuple[VaultEntry, str]]:
        """Every entry of the account with its clear value (for the user's export)."""
        rows = session.scalars(
            select(VaultEntry)
            .where(VaultEntry.account_id == account_id)
            .order_by(VaultEntry.owner_ref, VaultEntry.field)
        ).all()
        return [(e, self._open(session, e)) for e in rows]

    def remove(
        self,
        session: Session,
        account_id: str,
        *,
        owner_ref: str | None = None,
        fields: Iterable[str] | None = None,
        categories: Iterable[DataCategory] | None = None,
    ) -> int:
        """Delete matching entries; returns how many. Drops the DEK when none is left."""
        stmt = delete(VaultEntry).where(VaultEntry.account_id == account_id)
        if owner_ref is not None:
            stmt = stmt.where(VaultEntry.owner_ref == owner_ref)
        if fields is not None:
            stmt = stmt.where(VaultEntry.field.in_(list(fields)))
        if categories is not None:
            stmt = stmt.where(VaultEntry.category.in_(list(categories)))
        result = session.execute(stmt)
        self.shred_if_empty(session, account_id)
        return int(getattr(result, "rowcount", 0) or 0)

    def retain(
        self, session: Session, account_id: str, owner_ref: str, retained_until: datetime
    ) -> None:
        """Mark a record's entries as kept by law until ``retained_until``."""
        for entry in session.scalars(
            select(VaultEntry).where(
                VaultEntry.account_id == account_id, VaultEntry.owner_ref == owner_ref
            )
        ):
            entry.retained_until = retained_until

    def retain_category(
        self, session: Session, account_id: str, category: DataCategory, until: datetime
    ) -> None:
        """Keep every entry of ``category`` of the account until ``until``."""
        session.execute(
            update(VaultEntry)
            .where(VaultEntry.account_id == account_id, VaultEntry.category == category)
            .values(retained_until=until)
        )

    def shred_if_empty(self, session: Session, account_id: str) -> bool:
        """Delete the account's DEK once it encrypts nothing any more."""
        session.flush()
        left = session.scalar(
            select(func.count()).select_from(VaultEntry).where(VaultEntry.account_id == account_id)
        )
        if left:
            return False
        session.execute(delete(DataKey).where(DataKey.account_id == account_id))
        with self._lock:
            self._cache.pop(account_id, None)
        return True

    # ---- keys ------------------------------------------------------------------------

    def _open(self, session: Session, entry: VaultEntry) -> str:
        dek = self._dek(session, entry.account_id, entry.data_key_id)
        try:
            plain = AESGCM(dek).decrypt(
                entry.nonce, entry.ciphertext, _aad(entry.account_id, entry.owner_ref, entry.field)
            )
        except InvalidTag as err:
            raise Internal("personal data could not be decrypted") from err
        return plain.decode()

    def _account_key(self, session: Session, account_id: str) -> tuple[str, bytes]:
        row = session.scalars(select(DataKey).where(DataKey.account_id == account_id)).first()
        if row is not None:
            return row.id, self._dek(session, account_id, row.id)
        dek = AESGCM.generate_key(bit_length=256)
        row = DataKey(
            id="dk-" + uuid.uuid4().hex,
            account_id=account_id,
            purpose="account",
            kek_label=self._wrapper.label,
            wrapped_key=self._wrapper.wrap(dek),
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        self._remember(account_id, dek)
        return row.id, dek

    def _dek(self, session: Session, account_id: str, key_id: str) -> bytes:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(account_id)
            if cached is not None and now - cached[0] < self._cache_ttl:
                self._cache.move_to_end(account_id)
                return cached[1]
        row = session.get(DataKey, key_id)
        if row is None:
            raise Internal("personal data key is missing")
        dek = self._wrapper.unwrap(row.wrapped_key)
        self._remember(account_id, dek)
        return dek

    def _remember(self, account_id: str, dek: bytes) -> None:
        with self._lock:
            self._cache[account_id] = (time.monotonic(), dek)
            self._cache.move_to_end(account_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _load_or_create_lookup_key(self) -> bytes:
        with self._db.session() as session:
            row = session.get(DataKey, LOOKUP_KEY_ID)
            if row is not None:
                return self._wrapper.unwrap(row.wrapped_key)
        key = os.urandom(32)
        try:
            with self._db.session() as session:
                session.add(
                    DataKey(
                        id=LOOKUP_KEY_ID,
                        account_id=None,
                        purpose="lookup",
                        kek_label=self._wrapper.label,
                        wrapped_key=self._wrapper.wrap(key),
                        created_at=utcnow(),
                    )
                )
        except AlreadyExists:
            # Another replica created it first: use theirs.
            with self._db.session() as session:
                existing = session.get(DataKey, LOOKUP_KEY_ID)
                if existing is None:
                    raise Internal() from None
                return self._wrapper.unwrap(existing.wrapped_key)
        return key


def _aad(account_id: str, owner_ref: str, field: str) -> bytes:
    return f"{account_id}\x00{owner_ref}\x00{field}".encode()
