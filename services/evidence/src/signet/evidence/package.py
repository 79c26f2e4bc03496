"""Evidence packages: everything about one signing, in a zip a court can check offline.

Given a transaction id or a document digest, the builder gathers the log entries of the
transaction(s), then what they point to: the certificate events of the signing
certificates (issued, renewed, revoked), the willingness confirmations of the grants used,
and the signer's real-name verifications. Each entry comes with its inclusion proof
against one signed tree head. From the ca-gateway it adds the certificates, their chains
and their revocation status at signing time; from the TSA's records the timestamp tokens
the signatures embed. The manifest lists the SHA-256 of every file and is signed with the
log key (and time-stamped when a TSA is configured); :mod:`signet.evidence.verify` checks
all of it with only the log's public key and the CA certificates.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import tsp
from google.protobuf import json_format

from signet.common.db import Database, utcnow
from signet.common.errors import NotFound, ServiceError
from signet.common.events import EVIDENCE_TOPIC, EventEnvelope
from signet.common.outbox import Outbox
from signet.events.v1 import events_pb2
from signet.evidence import convert, index, manifest, merkle
from signet.evidence.domain import CertificateDirectory, CertificateRecord
from signet.evidence.models import LogEntry
from signet.evidence.report import render_report
from signet.evidence.repository import LogRepository
from signet.evidence.service import EvidenceLog
from signet.evidence.treehead import SignedTreeHead
from signet.evidence.tsa import TimestampAuthority

MAX_ENTRIES = 5000
_EXPANSION_TYPES = (
    manifest.CERTIFICATE_ISSUED,
    manifest.CERTIFICATE_RENEWED,
    manifest.CERTIFICATE_REVOKED,
    manifest.WILLINGNESS_CONFIRMED,
    manifest.AUTO_SIGN_GRANT_ISSUED,
)
_log = logging.getLogger("signet.evidence.package")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Package:
    """An exported package."""

    package_id: str
    file_name: str
    data: bytes
    sha256: bytes
    tree_head: SignedTreeHead
    entry_count: int


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _hex(value: bytes) -> str:
    return value.hex()


def entry_summary(envelope: EventEnvelope) -> dict[str, Any]:
    """A readable account of one event: who, when, from where, what (no secrets in events)."""
    actor = envelope.actor
    summary: dict[str, Any] = {
        "time": _iso(envelope.time.ToDatetime(tzinfo=UTC)) if envelope.HasField("time") else None,
        "actor": {
            "tenant_id": actor.tenant_id,
            "account_id": actor.account_id,
            "operator_account_id": actor.operator_account_id,
            "operator_authorization_id": actor.operator_authorization_id,
            "client_ip": actor.client_ip,
            "device_fingerprint_hash": _hex(actor.device_fingerprint_hash),
            "client": actor.client,
            "service": actor.service,
        },
        "digests": [index.digest_ref(d.algorithm, d.value) for d in envelope.digests],
    }
    payload = index.unpack(envelope)
    if payload is not None:
        summary["payload"] = json_format.MessageToDict(payload, preserving_proto_field_name=True)
    return summary


@dataclass
class PackageBuilder:
    """Exports evidence packages from the log (and the CA and TSA records)."""

    db: Database
    log: EvidenceLog
    directory: CertificateDirectory | None = None
    tsa: TimestampAuthority | None = None
    on_commit: Callable[[], None] = lambda: None
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)

    def export(self, *, transaction_id: str = "", digest: str = "", tenant: str = "") -> Package:
        """The package of one transaction, or of every signing of one document digest."""
        try:
            # Include what was appended a moment ago; a failure leaves the last head.
            self.log.integrate()
        except ServiceError as err:
            _log.warning("integration before export failed", extra={"error": err.message})
        head = self.log.tree_head()
        rows = self._gather(transaction_id, digest, tenant, head.tree_size)
        if not rows:
            raise NotFound("the log has no entries for this transaction or document")
        envelopes = {row.event_id: EventEnvelope.FromString(row.leaf_data) for row in rows}
        proofs = self._proofs(rows, head.tree_size)
        signatures = self._signatures(rows, envelopes)
        files: dict[str, bytes] = {}
        entries = []
        for row in rows:
            assert row.leaf_index is not None
            path = manifest.entry_file(row.leaf_index)
            files[path] = row.leaf_data
            entries.append(
                {
                    "leaf_index": row.leaf_index,
                    "event_id": row.event_id,
                    "event_type": row.event_type,
                    "source": row.source,
                    "subject": row.subject,
                    "tenant": row.tenant,
                    "transaction_id": row.transaction_id,
                    "leaf_hash": _hex(row.leaf_hash),
                    "file": path,
                    "inclusion_proof": [_hex(h) for h in proofs[row.leaf_index]],
                    "summary": entry_summary(envelopes[row.event_id]),
                }
            )
        certificates, ca_files = self._certificates(signatures, files)
        timestamps = self._timestamps(signatures, files)
        package_id = "p-" + uuid.uuid4().hex
        document: dict[str, Any] = {
            "format": manifest.FORMAT,
            "package_id": package_id,
            "created_at": _iso(self._clock()),
            "selector": {"transaction_id": transaction_id}
            if transaction_id
            else {"document_digest": digest},
            "tenant": tenant,
            "log": {
                "log_id": base64.b64encode(head.log_id).decode(),
                "public_key_pem": self.log.public_key().pem,
            },
            "tree_head": head.to_json(),
            "entries": entries,
            "signatures": signatures,
            "certificates": certificates,
            "ca_certificates": ca_files,
            "timestamps": timestamps,
        }
        files[manifest.REPORT] = render_report(document).encode()
        document["files"] = {
            path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())
        }
        manifest_bytes = json.dumps(document, indent=2, sort_keys=True).encode()
        digest_value = manifest.manifest_digest(manifest_bytes)
        sealed = {
            manifest.MANIFEST: manifest_bytes,
            manifest.MANIFEST_SIGNATURE: self.log.keys.sign_digest(
                self.log.key.key_id, digest_value
            ),
        }
        seal = self._timestamp(digest_value)
        if seal:
            sealed[manifest.MANIFEST_TIMESTAMP] = seal
        data = _zip({**sealed, **files})
        sha = hashlib.sha256(data).digest()
        self._record(package_id, transaction_id, sha, head.tree_size)
        label = _SAFE.sub("-", transaction_id or digest.replace(":", "-"))[:80]
        return Package(package_id, f"evidence-{label}.zip", data, sha, head, len(rows))

    # ---- gathering -------------------------------------------------------------------

    def _gather(self, transaction_id: str, digest: str, tenant: str, size: int) -> list[LogEntry]:
        with self.db.session() as session:
            repo = LogRepository(session)
            if transaction_id:
                seed = list(repo.related((), {transaction_id}, MAX_ENTRIES))
            else:
                seed = list(repo.related({(index.DIGEST, digest)}, (), MAX_ENTRIES))
                transactions = {r.transaction_id for r in seed if r.transaction_id}
                if transactions:
                    seed += repo.related((), transactions, MAX_ENTRIES)
            if tenant:
                seed = [r for r in seed if r.tenant in (tenant, "")]
            found = {r.id: r for r in seed if r.leaf_index is not None and r.leaf_index < size}
            if not found:
                return []
            refs: set[tuple[str, str]] = set()
            accounts: set[tuple[str, str]] = set()
            for row in found.values():
                if row.event_type != manifest.SIGNATURE_CREATED:
                    continue
                envelope = EventEnvelope.FromString(row.leaf_data)
                for kind, value in index.refs_of(envelope):
                    if kind in (index.SERIAL, index.GRANT):
                        refs.add((kind, value))
                    elif kind == index.ACCOUNT:
                        accounts.add((kind, value))
            more = list(repo.related(refs, (), MAX_ENTRIES, _EXPANSION_TYPES)) if refs else []
            for row in more:
                if row.event_type in (
                    manifest.WILLINGNESS_CONFIRMED,
                    manifest.AUTO_SIGN_GRANT_ISSUED,
                ):
                    envelope = EventEnvelope.FromString(row.leaf_data)
                    accounts |= {r for r in index.refs_of(envelope) if r[0] == index.ACCOUNT}
            if accounts:
                more += repo.related(accounts, (), MAX_ENTRIES, (manifest.REAL_NAME_VERIFIED,))
            for row in more:
                in_tree = row.leaf_index is not None and row.leaf_index < size
                if in_tree and (not tenant or row.tenant in (tenant, "")):
                    found.setdefault(row.id, row)
            rows = sorted(found.values(), key=lambda r: r.leaf_index or 0)
            return rows[:MAX_ENTRIES]

    def _proofs(self, rows: Sequence[LogEntry], size: int) -> dict[int, list[bytes]]:
        wanted: dict[int, list[tuple[int, int]]] = {}
        for row in rows:
            assert row.leaf_index is not None
            wanted[row.leaf_index] = merkle.inclusion_ranges(row.leaf_index, size)
        keys = set().union(*(merkle.nodes_for(r) for r in wanted.values()))
        with self.db.session() as session:
            nodes = LogRepository(session).nodes(keys)
        return {i: merkle.hash_ranges(r, nodes) for i, r in wanted.items()}

    @staticmethod
    def _signatures(
        rows: Sequence[LogEntry], envelopes: dict[str, EventEnvelope]
    ) -> list[dict[str, Any]]:
        found = []
        for row in rows:
            if row.event_type != manifest.SIGNATURE_CREATED:
                continue
            envelope = envelopes[row.event_id]
            payload = events_pb2.SignatureCreated()
            envelope.payload.Unpack(payload)
            found.append(
                {
                    "event_id": row.event_id,
                    "signature_id": payload.signature_id,
                    "key_id": payload.key_id,
                    "account_id": payload.owner.subscriber.account_id or envelope.actor.account_id,
                    "certificate_serial": payload.certificate_serial,
                    "grant_id": payload.grant_id,
                    "digest": index.digest_ref(payload.digest.algorithm, payload.digest.value),
                    "signature_sha256": _hex(payload.signature_sha256),
                    "timestamp_token_sha256": _hex(payload.timestamp_token_sha256),
                    "signed_at": _iso(envelope.time.ToDatetime(tzinfo=UTC)),
                }
            )
        return found

    def _certificates(
        self, signatures: Sequence[dict[str, Any]], files: dict[str, bytes]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        if self.directory is None:
            return [], []
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for sig in signatures:
            serial = sig["certificate_serial"]
            if not serial or serial in seen:
                continue
            seen.add(serial)
            at = datetime.fromisoformat(sig["signed_at"])
            record = self.directory.certificate(serial, at)
            if record is None:
                continue
            out.append(self._certificate_entry(record, files))
        ca_files = []
        for number, der in enumerate(self.directory.ca_certificates()):
            path = f"ca/{number:02d}.der"
            files[path] = der
            ca_files.append(path)
        return out, ca_files

    @staticmethod
    def _certificate_entry(record: CertificateRecord, files: dict[str, bytes]) -> dict[str, Any]:
        name = _SAFE.sub("-", record.serial)
        path = f"certificates/{name}.der"
        files[path] = record.certificate_der
        chain = []
        for number, der in enumerate(record.chain_der):
            chain_path = f"certificates/{name}-chain-{number}.der"
            files[chain_path] = der
            chain.append(chain_path)
        return {
            "serial": record.serial,
            "file": path,
            "chain": chain,
            "status_at_signing": record.status,
            "status_at": _iso(record.status_at),
            "revoked_at": _iso(record.revoked_at),
            "revocation_reason": record.revocation_reason,
        }

    def _timestamps(
        self, signatures: Sequence[dict[str, Any]], files: dict[str, bytes]
    ) -> list[dict[str, Any]]:
        wanted = {bytes.fromhex(s["timestamp_token_sha256"]) for s in signatures}
        wanted.discard(b"")
        if not wanted:
            return []
        with self.db.session() as session:
            tokens = LogRepository(session).timestamps_by_sha256(wanted)
            rows = [(t.serial, t.token_der, t.token_sha256, t.gen_time) for t in tokens]
        out = []
        for serial, der, sha, gen_time in rows:
            path = f"timestamps/{_SAFE.sub('-', serial)}.tst"
            files[path] = der
            out.append(
                {"file": path, "serial": serial, "sha256": _hex(sha), "gen_time": _iso(gen_time)}
            )
        if self.tsa is not None:
            chain = self.tsa.certificate_chain()
            for number, der in enumerate((chain.certificate_der, *chain.chain_der)):
                files[f"timestamps/tsa-{number}.der"] = der
        return out

    def _timestamp(self, digest: bytes) -> bytes:
        if self.tsa is None:
            return b""
        request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": digest,
                },
                "cert_req": True,
            }
        )
        try:
            issued = self.tsa.timestamp(request.dump())
        except ServiceError as err:
            _log.warning("package not time-stamped", extra={"error": err.message})
            return b""
        return issued.token_der if issued.granted else b""

    def _record(self, package_id: str, transaction_id: str, sha: bytes, size: int) -> None:
        event = convert.package_event(package_id, transaction_id, sha, size)
        with self.db.session() as session:
            Outbox.add(session, EVIDENCE_TOPIC, event)
        self.on_commit()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[path])
    return buffer.getvalue()
