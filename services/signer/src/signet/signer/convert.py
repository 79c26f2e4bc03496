"""Between the signer's domain types and its protobuf API and events.

Enum values map by name (``KeyAlgorithm.EC_P256`` <-> ``KEY_ALGORITHM_EC_P256``), so a
value added on both sides needs no code here. An unspecified or unknown enum value from a
caller is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import functools
import hashlib
from enum import StrEnum
from typing import TypeVar

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from google.protobuf.message import Message

from signet.common.errors import InvalidArgument, ServiceError
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.prototime import timestamp
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.signer.domain import EventContext, KeyOwner, KeyView, Purpose, RetirementReason
from signet.signer.models import KeyState
from signet.signer.v1 import signer_pb2

_E = TypeVar("_E", bound=StrEnum)

_PREFIX: dict[type[StrEnum], tuple[str, object]] = {
    KeyAlgorithm: ("KEY_ALGORITHM_", common_pb2.KeyAlgorithm),
    HashAlgorithm: ("HASH_ALGORITHM_", common_pb2.HashAlgorithm),
    SignatureScheme: ("SIGNATURE_SCHEME_", common_pb2.SignatureScheme),
    Purpose: ("KEY_PURPOSE_", signer_pb2.KeyPurpose),
    KeyState: ("KEY_STATE_", signer_pb2.KeyState),
    RetirementReason: ("KEY_RETIREMENT_REASON_", signer_pb2.KeyRetirementReason),
}


@functools.cache
def to_proto(value: StrEnum) -> int:
    """The proto enum number of a domain enum value."""
    prefix, wrapper = _PREFIX[type(value)]
    return int(wrapper.Value(prefix + value.value.upper()))  # type: ignore[attr-defined]


def from_proto(enum_cls: type[_E], number: int, field: str, *, required: bool = True) -> _E | None:
    """The domain value of a proto enum number; unset is None, or an error if ``required``."""
    if number == 0:
        if required:
            raise InvalidArgument(f"{field} is required")
        return None
    # Every item of a batch names its hash: the known values are looked up once.
    known = _domain_values(enum_cls).get(number)
    if known is not None:
        return known  # type: ignore[return-value]
    wrapper = _PREFIX[enum_cls][1]
    try:
        name = str(wrapper.Name(number))  # type: ignore[attr-defined]
    except ValueError as err:
        raise InvalidArgument(f"{field} has an unknown value {number}") from err
    raise InvalidArgument(f"{field} value {name} is not supported by this signer")


@functools.cache
def _domain_values(enum_cls: type[StrEnum]) -> dict[int, StrEnum]:
    """Proto enum number -> domain value, for the values both sides have."""
    prefix, wrapper = _PREFIX[enum_cls]
    by_name = wrapper.DESCRIPTOR.values_by_name  # type: ignore[attr-defined]
    values: dict[int, StrEnum] = {}
    for member in enum_cls:
        proto = by_name.get(prefix + member.value.upper())
        if proto is not None:
            values[int(proto.number)] = member
    return values


def required(enum_cls: type[_E], number: int, field: str) -> _E:
    """Like :func:`from_proto` for a field that must be set."""
    value = from_proto(enum_cls, number, field)
    assert value is not None
    return value


def owner_message(owner: KeyOwner) -> signer_pb2.KeyOwner:
    """The API form of a key's owner."""
    if owner.system:
        return signer_pb2.KeyOwner(system=owner.system)
    return signer_pb2.KeyOwner(
        subscriber=signer_pb2.SubscriberOwner(tenant_id=owner.tenant, account_id=owner.account)
    )


def owner_from(message: signer_pb2.KeyOwner) -> KeyOwner:
    """A domain owner from the API form; an unset owner is INVALID_ARGUMENT."""
    which = message.WhichOneof("owner")
    if which == "system":
        return KeyOwner(system=message.system)
    if which == "subscriber":
        return KeyOwner(tenant=message.subscriber.tenant_id, account=message.subscriber.account_id)
    raise InvalidArgument("owner is required: a subscriber (tenant_id, account_id) or a system")


def key_message(view: KeyView) -> signer_pb2.Key:
    """The API form of a key record."""
    return signer_pb2.Key(
        key_id=view.key_id,
        algorithm=to_proto(view.algorithm),  # type: ignore[arg-type]
        purpose=to_proto(view.purpose),  # type: ignore[arg-type]
        owner=owner_message(view.owner),
        state=to_proto(view.state),  # type: ignore[arg-type]
        created_at=timestamp(view.created_at),
        last_used_at=timestamp(view.last_used_at),
        disabled_at=timestamp(view.disabled_at),
        destroyed_at=timestamp(view.destroyed_at),
        retirement_reason=to_proto(view.retirement_reason),  # type: ignore[arg-type]
        sign_count=view.sign_count,
        spki_sha256=view.spki_sha256,
    )


def public_key_message(view: KeyView) -> signer_pb2.PublicKey:
    """SPKI DER and PEM of a key."""
    pem = (
        load_der_public_key(view.public_key_der)
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return signer_pb2.PublicKey(
        algorithm=to_proto(view.algorithm),  # type: ignore[arg-type]
        spki_der=view.public_key_der,
        pem=pem,
    )


def digest_message(hash_alg: HashAlgorithm, value: bytes) -> common_pb2.Digest:
    """A Digest message."""
    return common_pb2.Digest(algorithm=to_proto(hash_alg), value=value)  # type: ignore[arg-type]


def status_message(err: ServiceError) -> common_pb2.Status:
    """A per-item status carrying a ServiceError's code and message."""
    return common_pb2.Status(code=err.code.value[0], message=err.message)


def key_event(view: KeyView, change: str) -> Message:
    """KeyCreated, KeyDisabled or KeyDestroyed for a key that just changed."""
    owner = owner_message(view.owner)
    if change == "created":
        return events_pb2.KeyCreated(
            key_id=view.key_id,
            algorithm=to_proto(view.algorithm),  # type: ignore[arg-type]
            purpose=to_proto(view.purpose),  # type: ignore[arg-type]
            owner=owner,
            spki_sha256=view.spki_sha256,
        )
    reason = to_proto(view.retirement_reason)
    if change == KeyState.DISABLED.value:
        return events_pb2.KeyDisabled(key_id=view.key_id, owner=owner, reason=reason)  # type: ignore[arg-type]
    if change == KeyState.DESTROYED.value:
        return events_pb2.KeyDestroyed(key_id=view.key_id, owner=owner, reason=reason)  # type: ignore[arg-type]
    raise ValueError(f"no event for key change {change!r}")


def signature_event(
    *,
    signature_id: str,
    key: KeyView,
    grant_id: str,
    hash_alg: HashAlgorithm,
    digest: bytes,
    scheme: SignatureScheme,
    signature: bytes,
    caller: str,
    context: EventContext,
) -> events_pb2.SignatureCreated:
    """SignatureCreated: what was signed (its digest), by which key, under which grant."""
    return events_pb2.SignatureCreated(
        signature_id=signature_id,
        key_id=key.key_id,
        owner=owner_message(key.owner),
        certificate_serial=context.certificate_serial,
        grant_id=grant_id,
        digest=digest_message(hash_alg, digest),
        scheme=to_proto(scheme),  # type: ignore[arg-type]
        signature_sha256=context.output_sha256 or hashlib.sha256(signature).digest(),
        document_format=context.document_format,  # type: ignore[arg-type]
        level=context.level,  # type: ignore[arg-type]
        timestamp_token_sha256=context.timestamp_token_sha256,
        caller=caller,
    )
