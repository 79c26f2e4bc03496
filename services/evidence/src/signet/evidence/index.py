"""What an event is about: the references evidence indexes so a package finds its entries.

An event names documents (digests), certificates (serials), accounts, keys and grants in
its envelope and payload. Rather than knowing every payload type, the payload is unpacked
with the protobuf type registry and its fields are read by name, so a new event type that
follows the naming of the existing ones is indexed without a change here.
"""

from __future__ import annotations

from google.protobuf import symbol_database
from google.protobuf.message import DecodeError, Message

import signet.events.v1.events_pb2  # noqa: F401  (registers every payload type)
from signet.common.events import EventEnvelope
from signet.common.v1 import common_pb2

DIGEST = "digest"
SERIAL = "serial"
ACCOUNT = "account"
KEY = "key"
GRANT = "grant"

_FIELD_KINDS: dict[str, str] = {
    "serial": SERIAL,
    "certificate_serial": SERIAL,
    "previous_serial": SERIAL,
    "account_id": ACCOUNT,
    "operator_account_id": ACCOUNT,
    "enterprise_account_id": ACCOUNT,
    "key_id": KEY,
    "grant_id": GRANT,
    "confirmation_grant_id": GRANT,
}
_MAX_VALUE = 160
_MAX_DEPTH = 3


def digest_ref(algorithm: int, value: bytes) -> str:
    """The index value of a digest: ``sha256:<hex>``."""
    label = common_pb2.HashAlgorithm.Name(algorithm)  # type: ignore[arg-type]
    name = label.removeprefix("HASH_ALGORITHM_").lower()
    return f"{name}:{value.hex()}"


def unpack(envelope: EventEnvelope) -> Message | None:
    """The envelope's payload as its own message type; None when the type is unknown."""
    name = envelope.payload.TypeName()
    try:
        cls = symbol_database.Default().GetSymbol(name)
    except KeyError:
        return None
    message: Message = cls()
    try:
        if not envelope.payload.Unpack(message):
            return None
    except DecodeError:
        return None
    return message


def _walk(message: Message, refs: set[tuple[str, str]], depth: int) -> None:
    """Collect references from ``message``'s fields by name, and from nested messages."""
    for descriptor, value in message.ListFields():
        if descriptor.name in _FIELD_KINDS and isinstance(value, str) and value:
            refs.add((_FIELD_KINDS[descriptor.name], value))
        elif isinstance(value, common_pb2.Digest):
            if value.value:
                refs.add((DIGEST, digest_ref(value.algorithm, value.value)))
        elif descriptor.message_type is common_pb2.Digest.DESCRIPTOR:
            for item in value:
                refs.add((DIGEST, digest_ref(item.algorithm, item.value)))
        elif isinstance(value, Message) and depth < _MAX_DEPTH:
            # e.g. SignatureCreated.owner.subscriber.account_id
            _walk(value, refs, depth + 1)


def refs_of(envelope: EventEnvelope) -> set[tuple[str, str]]:
    """Every (kind, value) the event is about."""
    refs: set[tuple[str, str]] = set()
    for digest in envelope.digests:
        refs.add((DIGEST, digest_ref(digest.algorithm, digest.value)))
    if envelope.actor.account_id:
        refs.add((ACCOUNT, envelope.actor.account_id))
    if envelope.actor.operator_account_id:
        refs.add((ACCOUNT, envelope.actor.operator_account_id))
    payload = unpack(envelope)
    if payload is not None:
        _walk(payload, refs, depth=0)
    return {(kind, value) for kind, value in refs if len(value) <= _MAX_VALUE}
