"""What the log indexes about an event, read from its envelope and payload by field name."""

from __future__ import annotations

from signet.common.events import new_envelope
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.evidence import index

SHA256 = common_pb2.HASH_ALGORITHM_SHA256


def test_a_signature_is_indexed_by_digest_certificate_grant_key_and_owner() -> None:
    payload = events_pb2.SignatureCreated(
        signature_id="s-1",
        key_id="k-1",
        certificate_serial="1f00",
        grant_id="g-1",
        digest=common_pb2.Digest(algorithm=SHA256, value=b"\xab" * 32),
    )
    payload.owner.subscriber.tenant_id = "t-1"
    payload.owner.subscriber.account_id = "acc-1"
    envelope = new_envelope(payload, source="signer", subject="k-1")
    assert index.refs_of(envelope) == {
        ("digest", "sha256:" + "ab" * 32),
        ("serial", "1f00"),
        ("grant", "g-1"),
        ("key", "k-1"),
        ("account", "acc-1"),
    }


def test_repeated_digests_and_the_actor_are_indexed() -> None:
    payload = events_pb2.WillingnessConfirmed(
        account_id="acc-2",
        grant_id="g-2",
        digests=[
            common_pb2.Digest(algorithm=SHA256, value=b"\x01" * 32),
            common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA512, value=b"\x02" * 64),
        ],
    )
    envelope = new_envelope(payload, source="identity", subject="acc-2")
    envelope.actor.operator_account_id = "op-1"
    refs = index.refs_of(envelope)
    assert ("digest", "sha512:" + "02" * 64) in refs
    assert ("digest", "sha256:" + "01" * 32) in refs
    assert {("account", "acc-2"), ("account", "op-1"), ("grant", "g-2")} <= refs


def test_an_unknown_payload_type_still_indexes_the_envelope() -> None:
    envelope = new_envelope(events_pb2.KeyCreated(key_id="k"), source="x", subject="k")
    envelope.payload.type_url = "type.googleapis.com/example.Unknown"
    envelope.digests.append(common_pb2.Digest(algorithm=SHA256, value=b"\x03" * 32))
    assert index.refs_of(envelope) == {("digest", "sha256:" + "03" * 32)}
