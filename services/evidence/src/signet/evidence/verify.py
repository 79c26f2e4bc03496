"""The offline verifier of evidence packages: every hash, proof, signature and path.

Needs only the package, the log's published public key and the CA certificates. Each
check yields a :class:`Check` (pass or fail, with the reason); a package is genuine only
when every check passes. The checks:

* the manifest's signature by the log key, and the manifest time-stamp when present;
* every listed file's SHA-256, and no file outside the list;
* the signed tree head's signature (and that it names the trusted log);
* for every entry: its leaf hash, its inclusion proof against the tree head, and that the
  manifest's copy of it says what the logged bytes say;
* for every signature: a willingness confirmation covering its grant and digest, a
  real-name verification of the signer before signing, its certificate (fingerprint as
  logged at issuance, path to a trusted root valid at signing time, not revoked before
  signing, by the logged revocations and by the CA's answer) and its timestamp token
  (valid, from a timeStamping certificate under a trusted root, the one the signature
  embeds).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)
from google.protobuf.message import DecodeError

from signet.common.events import EventEnvelope
from signet.events.v1 import events_pb2
from signet.evidence import certs, index, manifest, merkle
from signet.evidence.treehead import SignedTreeHead, TreeHeadError, verify_tree_head

MAX_PACKAGE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    item: str
    passed: bool
    detail: str = ""


class _Failed(Exception):
    """A check failed with a reason."""


@dataclass
class _Entry:
    leaf_index: int
    event_type: str
    envelope: EventEnvelope
    verified: bool


class PackageVerifier:
    """Checks one package; :meth:`run` returns every check in order."""

    def __init__(
        self,
        package: bytes,
        *,
        log_key_spki: bytes | None = None,
        ca_certificates: Sequence[bytes] = (),
    ) -> None:
        self._package = package
        self._trusted_log_key = log_key_spki
        self._trusted_roots = [certs.load(d) for d in ca_certificates]
        self._checks: list[Check] = []
        self._files: dict[str, bytes] = {}
        self._manifest: dict[str, Any] = {}
        self._head: SignedTreeHead | None = None
        self._log_key: bytes = b""
        self._entries: dict[str, _Entry] = {}
        self._roots: list[x509.Certificate] = []

    @property
    def passed(self) -> bool:
        """Whether every check passed (and there was at least one)."""
        return bool(self._checks) and all(c.passed for c in self._checks)

    def run(self) -> list[Check]:
        """Run every check; later checks still run when earlier ones fail, where possible."""
        if not self._check("package format", self._open):
            return self._checks
        self._check("log key", self._log_key_check)
        self._check("manifest signature", self._manifest_signature)
        if manifest.MANIFEST_TIMESTAMP in self._files:
            self._check("manifest timestamp", self._manifest_timestamp)
        self._check_files()
        self._check("tree head signature", self._tree_head)
        for record in self._manifest.get("entries", []):
            label = f"entry {record.get('leaf_index')} ({_short(record.get('event_type', ''))})"
            self._check(label, functools.partial(self._entry, record))
        for sig in self._manifest.get("signatures", []):
            self._signature_checks(sig)
        return self._checks

    def _check(self, item: str, fn: Callable[[], str]) -> bool:
        try:
            detail = fn()
        except (_Failed, certs.CertificateError, merkle.ProofError, TreeHeadError) as err:
            self._checks.append(Check(item, False, str(err)))
            return False
        except (ValueError, KeyError, TypeError, DecodeError) as err:
            self._checks.append(Check(item, False, f"malformed: {type(err).__name__} {err}"))
            return False
        self._checks.append(Check(item, True, detail))
        return True

    # ---- package, manifest, files -----------------------------------------------------

    def _open(self) -> str:
        if len(self._package) > MAX_PACKAGE_BYTES:
            raise _Failed("the package is too large")
        try:
            with zipfile.ZipFile(io.BytesIO(self._package)) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    if info.filename in self._files:
                        raise _Failed(f"the zip holds {info.filename} twice")
                    self._files[info.filename] = archive.read(info)
        except zipfile.BadZipFile as err:
            raise _Failed("not a zip file") from err
        except (zlib.error, EOFError) as err:
            # A damaged compressed member: the CRC check never gets its turn.
            raise _Failed("the zip is damaged (a member does not decompress)") from err
        if manifest.MANIFEST not in self._files:
            raise _Failed("manifest.json is missing")
        try:
            self._manifest = json.loads(self._files[manifest.MANIFEST])
        except ValueError as err:
            raise _Failed("manifest.json is not JSON") from err
        if self._manifest.get("format") != manifest.FORMAT:
            raise _Failed(f"unknown package format {self._manifest.get('format')!r}")
        return f"{manifest.FORMAT}, {len(self._files)} files"

    def _log_key_check(self) -> str:
        pem = self._manifest["log"]["public_key_pem"]
        named = load_pem_public_key(pem.encode()).public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        if self._trusted_log_key is None:
            self._log_key = named
            raise _Failed(
                "no trusted log key given (--log-key); the package's own key cannot prove itself"
            )
        if named != self._trusted_log_key:
            self._log_key = self._trusted_log_key
            raise _Failed("the package names another log key than the trusted one")
        self._log_key = self._trusted_log_key
        return "log id " + hashlib.sha256(self._log_key).hexdigest()

    def _manifest_signature(self) -> str:
        signature = self._files.get(manifest.MANIFEST_SIGNATURE)
        if signature is None:
            raise _Failed("manifest.sig is missing")
        key = _ec_key(self._log_key)
        digest = manifest.manifest_digest(self._files[manifest.MANIFEST])
        try:
            key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise _Failed("the manifest is not signed by the log key (changed or forged)") from None
        return "signed by the log key"

    def _manifest_timestamp(self) -> str:
        info = certs.verify_timestamp_token(
            self._files[manifest.MANIFEST_TIMESTAMP], self._tsa_certs(), self._ca_roots()
        )
        if info.imprint != manifest.manifest_digest(self._files[manifest.MANIFEST]):
            raise _Failed("the timestamp covers another manifest")
        return f"time-stamped {info.gen_time.isoformat()}"

    def _check_files(self) -> None:
        listed: dict[str, str] = self._manifest.get("files", {})
        for path, want in sorted(listed.items()):
            data = self._files.get(path)
            if data is None:
                self._checks.append(Check(f"file {path}", False, "missing from the package"))
            elif hashlib.sha256(data).hexdigest() != want:
                self._checks.append(Check(f"file {path}", False, "SHA-256 does not match"))
            else:
                self._checks.append(Check(f"file {path}", True, "SHA-256 matches"))
        for path in sorted(set(self._files) - set(listed) - manifest.UNLISTED):
            self._checks.append(Check(f"file {path}", False, "not listed in the manifest"))

    def _ca_roots(self) -> list[x509.Certificate]:
        if self._trusted_roots:
            return self._trusted_roots
        raise _Failed("no trusted CA certificate given (--ca-cert)")

    def _tsa_certs(self) -> list[x509.Certificate]:
        return [
            certs.load(data)
            for path, data in sorted(self._files.items())
            if path.startswith(("timestamps/tsa-", "ca/")) and path.endswith(".der")
        ]

    # ---- tree head and entries -------------------------------------------------------

    def _tree_head(self) -> str:
        head = SignedTreeHead.from_json(self._manifest["tree_head"])
        try:
            verify_tree_head(head, self._log_key)
        except TreeHeadError as err:
            raise _Failed(str(err)) from None
        self._head = head
        return f"size {head.tree_size}, root {head.root_hash.hex()[:16]}..."

    def _entry(self, record: dict[str, Any]) -> str:
        index_ = int(record["leaf_index"])
        data = self._files.get(record["file"])
        if data is None:
            raise _Failed("its leaf bytes are missing")
        leaf = merkle.leaf_hash(data)
        if leaf.hex() != record["leaf_hash"]:
            raise _Failed("its bytes do not hash to the recorded leaf hash (changed)")
        if self._head is None:
            raise _Failed("no verified tree head to prove it against")
        proof = [bytes.fromhex(h) for h in record["inclusion_proof"]]
        try:
            merkle.verify_inclusion(index_, self._head.tree_size, leaf, proof, self._head.root_hash)
        except merkle.ProofError as err:
            raise _Failed(f"inclusion proof fails: {err}") from None
        try:
            envelope = EventEnvelope.FromString(data)
        except DecodeError:
            raise _Failed("its bytes are not an event envelope") from None
        if envelope.id != record["event_id"] or envelope.type != record["event_type"]:
            raise _Failed("the manifest describes it differently than its logged bytes")
        self._entries[envelope.id] = _Entry(index_, envelope.type, envelope, True)
        return f"in the log at {index_}, proof checked"

    # ---- signatures ------------------------------------------------------------------

    def _signature_checks(self, sig: dict[str, Any]) -> None:
        name = f"signature {sig.get('signature_id', '?')}"
        entry = self._entries.get(sig.get("event_id", ""))
        if entry is None or entry.event_type != manifest.SIGNATURE_CREATED:
            self._checks.append(Check(name, False, "its SignatureCreated entry is not proven"))
            return
        payload = events_pb2.SignatureCreated()
        entry.envelope.payload.Unpack(payload)
        signed_at = entry.envelope.time.ToDatetime(tzinfo=UTC)
        self._check(name, lambda: self._signature_record(sig, payload, signed_at))
        if payload.grant_id:
            self._check(f"{name} willingness", lambda: self._willingness(payload))
        account = payload.owner.subscriber.account_id or entry.envelope.actor.account_id
        if account:
            self._check(f"{name} real-name", lambda: self._real_name(account, signed_at))
        if payload.certificate_serial:
            self._check(f"{name} certificate", lambda: self._certificate(payload, signed_at))
        if payload.timestamp_token_sha256:
            self._check(f"{name} timestamp", lambda: self._timestamp(payload))

    @staticmethod
    def _signature_record(
        sig: dict[str, Any], payload: events_pb2.SignatureCreated, signed_at: datetime
    ) -> str:
        logged = {
            "signature_id": payload.signature_id,
            "key_id": payload.key_id,
            "certificate_serial": payload.certificate_serial,
            "grant_id": payload.grant_id,
            "digest": index.digest_ref(payload.digest.algorithm, payload.digest.value),
            "signature_sha256": payload.signature_sha256.hex(),
            "timestamp_token_sha256": payload.timestamp_token_sha256.hex(),
            "signed_at": signed_at.isoformat(),
        }
        for key, value in logged.items():
            if sig.get(key) != value:
                raise _Failed(f"the manifest's {key} differs from the logged signature")
        return f"document {logged['digest']} signed at {logged['signed_at']}"

    def _events(self, event_type: str) -> list[EventEnvelope]:
        return [e.envelope for e in self._entries.values() if e.event_type == event_type]

    def _willingness(self, payload: events_pb2.SignatureCreated) -> str:
        wanted = (payload.digest.algorithm, payload.digest.value)
        for envelope in self._events(manifest.WILLINGNESS_CONFIRMED):
            confirmed = events_pb2.WillingnessConfirmed()
            envelope.payload.Unpack(confirmed)
            if confirmed.grant_id == payload.grant_id:
                if wanted not in {(d.algorithm, d.value) for d in confirmed.digests}:
                    raise _Failed("the willingness confirmation does not cover this document")
                return f"confirmed ({confirmed.willingness_id}) for grant {confirmed.grant_id}"
        for envelope in self._events(manifest.AUTO_SIGN_GRANT_ISSUED):
            auto = events_pb2.AutoSignGrantIssued()
            envelope.payload.Unpack(auto)
            if auto.grant_id == payload.grant_id:
                if wanted not in {(d.algorithm, d.value) for d in auto.digests}:
                    raise _Failed("the automatic-signing grant does not cover this document")
                return f"automatic signing under authorisation {auto.authorization_id}"
        raise _Failed(f"no proven willingness confirmation for grant {payload.grant_id}")

    def _real_name(self, account: str, signed_at: datetime) -> str:
        for envelope in self._events(manifest.REAL_NAME_VERIFIED):
            verified = events_pb2.RealNameVerified()
            envelope.payload.Unpack(verified)
            if verified.account_id != account:
                continue
            at = verified.verified_at.ToDatetime(tzinfo=UTC)
            valid_until = (
                verified.valid_until.ToDatetime(tzinfo=UTC)
                if verified.HasField("valid_until")
                else None
            )
            if at <= signed_at and (valid_until is None or signed_at <= valid_until):
                return f"verified {at.isoformat()} ({verified.verification_id})"
        raise _Failed(f"no proven real-name verification of {account} valid at signing time")

    def _certificate(self, payload: events_pb2.SignatureCreated, signed_at: datetime) -> str:
        serial = payload.certificate_serial
        record = next(
            (c for c in self._manifest.get("certificates", []) if c["serial"] == serial), None
        )
        if record is None or record["file"] not in self._files:
            raise _Failed(f"certificate {serial} is not in the package")
        der = self._files[record["file"]]
        cert = certs.load(der)
        try:
            same_serial = int(serial, 16) == cert.serial_number
        except ValueError:
            same_serial = False
        if not same_serial:
            raise _Failed("the certificate file holds another serial")
        issued = [
            e for e in self._events(manifest.CERTIFICATE_ISSUED) if _payload_serial(e) == serial
        ]
        issued += [
            e for e in self._events(manifest.CERTIFICATE_RENEWED) if _payload_serial(e) == serial
        ]
        if not issued:
            raise _Failed(f"no proven issuance of certificate {serial} in the log")
        fingerprints = {_fingerprint(e) for e in issued}
        if hashlib.sha256(der).digest() not in fingerprints:
            raise _Failed("the certificate differs from the one logged at issuance")
        for envelope in self._events(manifest.CERTIFICATE_REVOKED):
            revoked = events_pb2.CertificateRevoked()
            envelope.payload.Unpack(revoked)
            if revoked.serial != serial:
                continue
            effective = [revoked.revoked_at.ToDatetime(tzinfo=UTC)]
            if revoked.HasField("invalidity_date"):
                effective.append(revoked.invalidity_date.ToDatetime(tzinfo=UTC))
            if min(effective) <= signed_at:
                raise _Failed(
                    f"certificate {serial} was revoked ({min(effective).isoformat()}) "
                    f"before the signature ({signed_at.isoformat()})"
                )
        status = record.get("status_at_signing", "")
        if status == "CERTIFICATE_STATUS_REVOKED":
            raise _Failed(
                f"the CA reports certificate {serial} revoked at signing time "
                f"({record.get('revoked_at')})"
            )
        chain = [certs.load(self._files[p]) for p in record.get("chain", []) if p in self._files]
        try:
            path = certs.verify_path(cert, chain, self._ca_roots(), signed_at)
        except certs.CertificateError as err:
            raise _Failed(str(err)) from None
        return f"path of {len(path)} to a trusted root, not revoked at signing"

    def _timestamp(self, payload: events_pb2.SignatureCreated) -> str:
        wanted = payload.timestamp_token_sha256.hex()
        record = next(
            (t for t in self._manifest.get("timestamps", []) if t["sha256"] == wanted), None
        )
        if record is None or record["file"] not in self._files:
            raise _Failed("the signature's timestamp token is not in the package")
        token = self._files[record["file"]]
        if hashlib.sha256(token).hexdigest() != wanted:
            raise _Failed("the token differs from the one the signature embeds")
        try:
            info = certs.verify_timestamp_token(token, self._tsa_certs(), self._ca_roots())
        except certs.CertificateError as err:
            raise _Failed(str(err)) from None
        tsa = info.tsa_certificate.subject.rfc4514_string()
        return f"time-stamped {info.gen_time.isoformat()} by {tsa}"


def _short(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


def _payload_serial(envelope: EventEnvelope) -> str:
    payload = index.unpack(envelope)
    return str(getattr(payload, "serial", "")) if payload is not None else ""


def _fingerprint(envelope: EventEnvelope) -> bytes:
    payload = index.unpack(envelope)
    return bytes(getattr(payload, "sha256_fingerprint", b"")) if payload is not None else b""


def _ec_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    key = load_der_public_key(spki)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _Failed("the log key is not an EC key")
    return key


def verify_package(
    package: bytes, *, log_key_spki: bytes | None, ca_certificates: Sequence[bytes]
) -> tuple[bool, list[Check]]:
    """Verify a package; (every check passed, the checks)."""
    verifier = PackageVerifier(package, log_key_spki=log_key_spki, ca_certificates=ca_certificates)
    checks = verifier.run()
    return verifier.passed, checks
