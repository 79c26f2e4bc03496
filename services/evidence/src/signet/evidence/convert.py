"""Between the evidence domain and its protobuf API and events."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.events import EventEnvelope, new_envelope
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.evidence.domain import EntryView, LogKeyView
from signet.evidence.treehead import SignedTreeHead
from signet.evidence.v1 import evidence_pb2


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    message = Timestamp()
    message.FromDatetime(value)
    return message


def tree_head_message(head: SignedTreeHead) -> evidence_pb2.SignedTreeHead:
    """The API form of a signed tree head."""
    return evidence_pb2.SignedTreeHead(
        log_id=head.log_id,
        tree_size=head.tree_size,
        root_hash=head.root_hash,
        timestamp=timestamp(head.timestamp),
        signature=head.signature,
        signature_scheme=common_pb2.SIGNATURE_SCHEME_ECDSA,
        signature_hash=common_pb2.HASH_ALGORITHM_SHA256,
    )


def entry_message(view: EntryView, *, include_leaf_data: bool) -> evidence_pb2.Entry:
    """The API form of an entry; actor and digests come from the recorded envelope."""
    message = evidence_pb2.Entry(
        leaf_hash=view.leaf_hash,
        event_id=view.event_id,
        event_type=view.event_type,
        source=view.source,
        subject=view.subject,
        tenant_id=view.tenant,
        transaction_id=view.transaction_id,
        event_time=timestamp(view.event_time),
        received_at=timestamp(view.received_at),
    )
    if view.leaf_index is not None:
        message.leaf_index = view.leaf_index
    if view.integrated_at is not None:
        message.integrated_at.CopyFrom(timestamp(view.integrated_at))
    if include_leaf_data:
        message.leaf_data = view.leaf_data
    envelope = EventEnvelope()
    try:
        envelope.ParseFromString(view.leaf_data)
    except DecodeError:
        return message
    message.actor.CopyFrom(envelope.actor)
    message.digests.extend(envelope.digests)
    return message


def log_key_message(view: LogKeyView) -> evidence_pb2.GetLogPublicKeyResponse:
    """The published log key."""
    return evidence_pb2.GetLogPublicKeyResponse(
        log_id=view.log_id,
        algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
        spki_der=view.spki_der,
        pem=view.pem,
    )


SOURCE = "evidence"


def _log_subject(log_id: bytes) -> str:
    return log_id.hex()


def appended_event(head: SignedTreeHead, first_index: int, event_ids: list[str]) -> EventEnvelope:
    """EvidenceAppended for one integration batch."""
    payload = events_pb2.EvidenceAppended(
        log_id=head.log_id,
        first_leaf_index=first_index,
        entry_count=len(event_ids),
        event_ids=event_ids,
    )
    return new_envelope(payload, source=SOURCE, subject=_log_subject(head.log_id))


def tree_head_event(head: SignedTreeHead) -> EventEnvelope:
    """TreeHeadSigned for a new signed head."""
    payload = events_pb2.TreeHeadSigned(
        log_id=head.log_id,
        tree_size=head.tree_size,
        root_hash=head.root_hash,
        signature=head.signature,
    )
    payload.timestamp.FromDatetime(head.timestamp)
    return new_envelope(payload, source=SOURCE, subject=_log_subject(head.log_id))


def timestamp_event(
    serial: str, hash_algorithm: int, imprint: bytes, gen_time: datetime
) -> EventEnvelope:
    """TimestampIssued for one granted RFC 3161 token."""
    payload = events_pb2.TimestampIssued(
        serial=serial,
        message_imprint=common_pb2.Digest(algorithm=hash_algorithm, value=imprint),  # type: ignore[arg-type]
    )
    payload.gen_time.FromDatetime(gen_time)
    return new_envelope(payload, source=SOURCE, subject=serial)


def package_event(
    package_id: str, transaction_id: str, package_sha256: bytes, tree_size: int
) -> EventEnvelope:
    """EvidencePackageExported for one export."""
    payload = events_pb2.EvidencePackageExported(
        package_id=package_id,
        transaction_id=transaction_id,
        package_sha256=package_sha256,
        tree_size=tree_size,
    )
    return new_envelope(payload, source=SOURCE, subject=package_id)
