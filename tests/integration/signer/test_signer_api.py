"""SignerService over gRPC on the real SoftHSM token: keys, grants, every error status.

Callers authenticate with bearer tokens as platform services (identity, ca-gateway,
evidence); identity's grant key is a system key in the same signer, as in production.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e
from sqlalchemy import select

from signet.common.db import Database
from signet.common.events import decode_envelope, unpack_payload
from signet.common.grants import GrantClaims, encode_grant
from signet.common.outbox import OutboxMessage
from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool
from signet.common.testing.grpc import InProcessServer
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.signer import CALLERS, SignerHarness, signer_harness

pytestmark = pytest.mark.softhsm

SERVICES = CALLERS
SHA256 = common_pb2.HASH_ALGORITHM_SHA256
P256 = common_pb2.KEY_ALGORITHM_EC_P256
SUBSCRIBER = signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING


@dataclass
class Env:
    """A running signer and a stub per calling service."""

    stubs: dict[str, signer_pb2_grpc.SignerServiceStub]
    anonymous: signer_pb2_grpc.SignerServiceStub
    db: Database
    backend: Pkcs11KeyBackend
    pool: Pkcs11Pool
    grant_kid: str
    harness: SignerHarness
    server: InProcessServer

    @property
    def identity(self) -> signer_pb2_grpc.SignerServiceStub:
        return self.stubs["identity"]

    @property
    def ca(self) -> signer_pb2_grpc.SignerServiceStub:
        return self.stubs["ca-gateway"]

    def grant(
        self,
        key: signer_pb2.Key,
        digests: list[bytes],
        *,
        expires_in: timedelta = timedelta(minutes=5),
        tenant: str | None = None,
        account: str | None = None,
        key_id: str | None = None,
    ) -> tuple[str, str]:
        """A grant signed by identity's HSM grant key through the signer itself."""
        now = datetime.now(UTC)
        return self.harness.grant(
            self.server,
            tenant=tenant if tenant is not None else key.owner.subscriber.tenant_id,
            account=account if account is not None else key.owner.subscriber.account_id,
            key_id=key_id or key.key_id,
            digests=digests,
            issued_at=now - timedelta(minutes=10) if expires_in < timedelta(0) else now,
            expires_at=now + expires_in,
        )

    def subscriber_key(
        self, algorithm: int = P256, tenant: str = "t-1", account: str = ""
    ) -> signer_pb2.Key:
        reply = self.ca.CreateKey(
            signer_pb2.CreateKeyRequest(
                algorithm=algorithm,  # type: ignore[arg-type]
                purpose=SUBSCRIBER,
                owner=signer_pb2.KeyOwner(
                    subscriber=signer_pb2.SubscriberOwner(
                        tenant_id=tenant, account_id=account or "a-" + uuid.uuid4().hex[:8]
                    )
                ),
            )
        )
        return reply.key

    def events(self, kind: type[events_pb2.SignatureCreated]) -> list[events_pb2.SignatureCreated]:
        with self.db.session() as session:
            rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
            envelopes = [decode_envelope(r.envelope) for r in rows]
        name = kind.DESCRIPTOR.full_name
        return [unpack_payload(e, kind) for e in envelopes if e.type == name]


@pytest.fixture(scope="module")
def env(pkcs11_pool: Pkcs11Pool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with signer_harness(pkcs11_pool, tmp_path_factory.mktemp("signer")) as harness:
        server = harness.serve()
        yield Env(
            stubs={name: harness.stub(server, name) for name in SERVICES},
            anonymous=harness.stub(server, None),
            db=harness.db,
            backend=harness.backend,
            pool=pkcs11_pool,
            grant_kid=harness.grant_kid,
            harness=harness,
            server=server,
        )


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    return err.code(), str(err.details())


def _digest(data: bytes = b"", alg: str = "sha256") -> bytes:
    return hashlib.new(alg, data or uuid.uuid4().bytes).digest()


HASH_OF: dict[int, tuple[str, hashes.HashAlgorithm]] = {
    common_pb2.HASH_ALGORITHM_SHA256: ("sha256", hashes.SHA256()),
    common_pb2.HASH_ALGORITHM_SHA384: ("sha384", hashes.SHA384()),
    common_pb2.HASH_ALGORITHM_SHA512: ("sha512", hashes.SHA512()),
}

CASES = [
    (common_pb2.KEY_ALGORITHM_EC_P256, common_pb2.SIGNATURE_SCHEME_ECDSA),
    (common_pb2.KEY_ALGORITHM_EC_P384, common_pb2.SIGNATURE_SCHEME_ECDSA),
    (common_pb2.KEY_ALGORITHM_RSA_2048, common_pb2.SIGNATURE_SCHEME_RSA_PSS),
    (common_pb2.KEY_ALGORITHM_RSA_2048, common_pb2.SIGNATURE_SCHEME_RSA_PKCS1V15),
    (common_pb2.KEY_ALGORITHM_RSA_3072, common_pb2.SIGNATURE_SCHEME_RSA_PSS),
    (common_pb2.KEY_ALGORITHM_RSA_4096, common_pb2.SIGNATURE_SCHEME_RSA_PKCS1V15),
]


def _verify(spki: bytes, scheme: int, hash_alg: int, digest: bytes, signature: bytes) -> None:
    public = load_der_public_key(spki)
    algo = HASH_OF[hash_alg][1]
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, digest, ec.ECDSA(Prehashed(algo)))
    elif isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(algo), salt_length=padding.PSS.AUTO)
            if scheme == common_pb2.SIGNATURE_SCHEME_RSA_PSS
            else padding.PKCS1v15()
        )
        public.verify(signature, digest, pad, Prehashed(algo))
    else:
        raise AssertionError(f"unexpected key type {type(public)}")


@pytest.mark.parametrize(("algorithm", "scheme"), CASES)
@pytest.mark.parametrize("hash_alg", list(HASH_OF))
def test_every_algorithm_signs_with_a_grant_and_verifies(
    env: Env, algorithm: int, scheme: int, hash_alg: int
) -> None:
    key = env.subscriber_key(algorithm)
    digest = _digest(alg=HASH_OF[hash_alg][0])
    grant, grant_id = env.grant(key, [digest])
    reply = env.ca.SignDigest(
        signer_pb2.SignDigestRequest(
            key_id=key.key_id,
            digest=common_pb2.Digest(algorithm=hash_alg, value=digest),  # type: ignore[arg-type]
            scheme=scheme,  # type: ignore[arg-type]
            grant=grant,
            transaction_id="tx-1",
        )
    )
    spki = env.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key.key_id)).public_key
    _verify(spki.spki_der, scheme, hash_alg, digest, reply.signature)
    assert reply.scheme == scheme
    assert reply.signature_id.startswith("sig-")
    (event,) = [e for e in env.events(events_pb2.SignatureCreated) if e.grant_id == grant_id]
    assert event.signature_id == reply.signature_id
    assert event.key_id == key.key_id
    assert event.digest.value == digest
    assert event.signature_sha256 == hashlib.sha256(reply.signature).digest()
    assert event.caller == "ca-gateway"


def test_ed25519_signs_the_message_named_by_its_digest(env: Env) -> None:
    key = env.subscriber_key(common_pb2.KEY_ALGORITHM_ED25519)
    message = b"contract v1 " + uuid.uuid4().bytes
    grant, _ = env.grant(key, [hashlib.sha256(message).digest()])
    reply = env.ca.SignDigest(
        signer_pb2.SignDigestRequest(key_id=key.key_id, message=message, grant=grant)
    )
    public = load_der_public_key(
        env.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key.key_id)).public_key.spki_der
    )
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(reply.signature, message)
    code, details = _code(
        lambda: env.ca.SignDigest(
            signer_pb2.SignDigestRequest(
                key_id=key.key_id,
                digest=common_pb2.Digest(algorithm=SHA256, value=_digest()),
                grant=grant,
            )
        )
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "message" in details


def test_public_key_pem_and_record(env: Env) -> None:
    key = env.subscriber_key()
    reply = env.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key.key_id))
    pem_key = load_pem_public_key(reply.public_key.pem.encode())
    assert isinstance(pem_key, ec.EllipticCurvePublicKey)
    assert reply.public_key.spki_der == load_der_public_key(reply.public_key.spki_der).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    got = env.ca.GetKey(signer_pb2.GetKeyRequest(key_id=key.key_id)).key
    assert got.state == signer_pb2.KEY_STATE_ACTIVE
    assert got.spki_sha256 == hashlib.sha256(reply.public_key.spki_der).digest()
    assert got.created_at.seconds > 0


def test_key_created_through_the_api_cannot_be_extracted(env: Env) -> None:
    key = env.subscriber_key()
    with env.pool.session() as session:
        (private,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key.key_id.encode()}
        )
        with pytest.raises(p11e.AttributeSensitive):
            private[Attribute.VALUE]
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.TOKEN] is True
        assert private[Attribute.SIGN] is True
        assert private[Attribute.DECRYPT] is False


def test_sign_errors_each_get_their_own_status(env: Env) -> None:
    key = env.subscriber_key()
    digest = _digest()
    grant, _ = env.grant(key, [digest])

    def sign(**fields: object) -> object:
        request = signer_pb2.SignDigestRequest(
            key_id=key.key_id,
            digest=common_pb2.Digest(algorithm=SHA256, value=digest),
            grant=grant,
        )
        for name, value in fields.items():
            if name == "digest":
                request.digest.CopyFrom(value)  # type: ignore[arg-type]
            else:
                setattr(request, name, value)
        return env.ca.SignDigest(request)

    code, details = _code(
        lambda: sign(digest=common_pb2.Digest(algorithm=SHA256, value=digest[:20]))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "32 bytes, got 20" in details
    code, details = _code(lambda: sign(key_id="k-" + "0" * 32))
    assert code is grpc.StatusCode.NOT_FOUND and "not found" in details
    code, details = _code(lambda: sign(scheme=common_pb2.SIGNATURE_SCHEME_RSA_PSS))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "ECDSA" in details
    code, details = _code(lambda: sign(digest=common_pb2.Digest(value=digest)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "digest.algorithm" in details
    code, _ = _code(lambda: sign(grant=""))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    code, _ = _code(lambda: sign(grant="not.a.jws"))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    # None of the failures consumed the grant: it still signs once, then never again.
    sign()
    code, details = _code(sign)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "already been used" in details
    env.ca.DisableKey(
        signer_pb2.DisableKeyRequest(
            key_id=key.key_id, reason=signer_pb2.KEY_RETIREMENT_REASON_CERTIFICATE_REVOKED
        )
    )
    fresh, _ = env.grant(key, [digest])
    code, details = _code(lambda: sign(grant=fresh))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "disabled" in details


def test_grant_binding_expiry_and_cross_tenant_use(env: Env) -> None:
    key = env.subscriber_key(tenant="tenant-a")
    other = env.subscriber_key(tenant="tenant-b")
    digest = _digest()

    def sign(grant: str, key_id: str = key.key_id, value: bytes = digest) -> object:
        return env.ca.SignDigest(
            signer_pb2.SignDigestRequest(
                key_id=key_id, digest=common_pb2.Digest(algorithm=SHA256, value=value), grant=grant
            )
        )

    expired, _ = env.grant(key, [digest], expires_in=timedelta(minutes=-1))
    code, details = _code(lambda: sign(expired))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "expired" in details
    wrong_digest, _ = env.grant(key, [_digest()])
    code, details = _code(lambda: sign(wrong_digest))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "digest" in details
    # tenant B's account holds a grant for its own key; it cannot sign with tenant A's key.
    b_grant, _ = env.grant(other, [digest])
    code, details = _code(lambda: sign(b_grant))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "another key" in details
    forged_owner, _ = env.grant(key, [digest], tenant="tenant-b")
    code, details = _code(lambda: sign(forged_owner))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "another account" in details
    # A grant signed by a key that is not identity's grant key is refused.
    foreign = ec.generate_private_key(ec.SECP256R1())
    claims = GrantClaims(
        grant_id="g-forged",
        tenant="tenant-a",
        account=key.owner.subscriber.account_id,
        key_id=key.key_id,
        digests=(digest,),
        issued_at=datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    forged = encode_grant(
        claims, env.grant_kid, lambda d: foreign.sign(d, ec.ECDSA(Prehashed(hashes.SHA256())))
    )
    code, details = _code(lambda: sign(forged))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "invalid" in details
    good, _ = env.grant(key, [digest])
    sign(good)


def test_system_keys_serve_only_their_own_service(env: Env) -> None:
    ca_key = env.ca.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P384,
            purpose=signer_pb2.KEY_PURPOSE_CA_SIGNING,
            owner=signer_pb2.KeyOwner(system="ca-gateway"),
        )
    ).key
    request = signer_pb2.SignDigestRequest(
        key_id=ca_key.key_id,
        digest=common_pb2.Digest(
            algorithm=common_pb2.HASH_ALGORITHM_SHA384, value=_digest(alg="sha384")
        ),
    )
    assert env.ca.SignDigest(request).signature
    code, details = _code(lambda: env.stubs["evidence"].SignDigest(request))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "ca-gateway" in details
    code, _ = _code(lambda: env.anonymous.SignDigest(request))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, _ = _code(
        lambda: env.stubs["evidence"].DisableKey(signer_pb2.DisableKeyRequest(key_id=ca_key.key_id))
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    # Creating a key for another component is refused too.
    code, _ = _code(
        lambda: env.stubs["evidence"].CreateKey(
            signer_pb2.CreateKeyRequest(
                algorithm=P256,
                purpose=signer_pb2.KEY_PURPOSE_CA_SIGNING,
                owner=signer_pb2.KeyOwner(system="ca-gateway"),
            )
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED


def test_create_key_validation_and_idempotency(env: Env) -> None:
    owner = signer_pb2.KeyOwner(
        subscriber=signer_pb2.SubscriberOwner(tenant_id="t-1", account_id="a-idem")
    )
    request = signer_pb2.CreateKeyRequest(
        algorithm=P256, purpose=SUBSCRIBER, owner=owner, request_id="req-" + uuid.uuid4().hex
    )
    first = env.ca.CreateKey(request).key
    assert env.ca.CreateKey(request).key.key_id == first.key_id
    changed = signer_pb2.CreateKeyRequest()
    changed.CopyFrom(request)
    changed.algorithm = common_pb2.KEY_ALGORITHM_EC_P384
    code, _ = _code(lambda: env.ca.CreateKey(changed))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    for bad, needle in [
        (signer_pb2.CreateKeyRequest(purpose=SUBSCRIBER, owner=owner), "algorithm"),
        (signer_pb2.CreateKeyRequest(algorithm=P256, owner=owner), "purpose"),
        (signer_pb2.CreateKeyRequest(algorithm=P256, purpose=SUBSCRIBER), "owner"),
        (
            signer_pb2.CreateKeyRequest(
                algorithm=P256,
                purpose=signer_pb2.KEY_PURPOSE_CA_SIGNING,
                owner=owner,
            ),
            "system owner",
        ),
        (
            signer_pb2.CreateKeyRequest(
                algorithm=P256,
                purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
                owner=signer_pb2.KeyOwner(system="nobody"),
            ),
            "unknown system owner",
        ),
        (signer_pb2.CreateKeyRequest(algorithm=99, purpose=SUBSCRIBER, owner=owner), "unknown"),  # type: ignore[arg-type]
    ]:
        code, details = _code(lambda bad=bad: env.ca.CreateKey(bad))  # type: ignore[misc]
        assert code is grpc.StatusCode.INVALID_ARGUMENT, details
        assert needle in details


def test_batch_reports_each_item(env: Env) -> None:
    key = env.subscriber_key()
    digests = [_digest() for _ in range(5)]
    grant, grant_id = env.grant(key, digests[:4])
    items = [
        signer_pb2.SignBatchItem(
            item_id=f"i{n}", key_id=key.key_id, digest=common_pb2.Digest(algorithm=SHA256, value=d)
        )
        for n, d in enumerate(digests)
    ]
    items[1].digest.value = digests[1][:31]  # wrong length
    items.append(
        signer_pb2.SignBatchItem(
            item_id="unknown",
            key_id="k-missing",
            digest=common_pb2.Digest(algorithm=SHA256, value=digests[0]),
        )
    )
    reply = env.ca.SignBatch(signer_pb2.SignBatchRequest(items=items, grant=grant))
    codes = {r.item_id: grpc.StatusCode.OK.value[0] == r.status.code for r in reply.results}
    assert [r.item_id for r in reply.results] == ["i0", "i1", "i2", "i3", "i4", "unknown"]
    assert codes == {
        "i0": True,
        "i1": False,
        "i2": True,
        "i3": True,
        "i4": False,
        "unknown": False,
    }
    by_id = {r.item_id: r for r in reply.results}
    assert by_id["i1"].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_id["i4"].status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert by_id["unknown"].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    spki = env.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key.key_id)).public_key
    for n in (0, 2, 3):
        _verify(
            spki.spki_der,
            common_pb2.SIGNATURE_SCHEME_ECDSA,
            SHA256,
            digests[n],
            by_id[f"i{n}"].signature,
        )
    events = [e for e in env.events(events_pb2.SignatureCreated) if e.grant_id == grant_id]
    assert sorted(e.digest.value for e in events) == sorted(digests[n] for n in (0, 2, 3))
    # The batch consumed the grant: replaying it signs nothing.
    again = env.ca.SignBatch(signer_pb2.SignBatchRequest(items=items[:1], grant=grant))
    assert again.results[0].status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    code, _ = _code(lambda: env.ca.SignBatch(signer_pb2.SignBatchRequest()))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    too_many = signer_pb2.SignBatchRequest(items=[items[0]] * 1001, grant=grant)
    code, details = _code(lambda: env.ca.SignBatch(too_many))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "1000" in details


def test_every_signature_of_a_batch_has_its_own_complete_event(env: Env) -> None:
    key = env.subscriber_key()
    digests = [hashlib.sha256(f"page {n}".encode()).digest() for n in range(3)]
    grant, grant_id = env.grant(key, digests)
    items = [
        signer_pb2.SignBatchItem(
            item_id=f"i{n}", key_id=key.key_id, digest=common_pb2.Digest(algorithm=SHA256, value=d)
        )
        for n, d in enumerate(digests)
    ]
    reply = env.ca.SignBatch(
        signer_pb2.SignBatchRequest(items=items, grant=grant, transaction_id="tx-events")
    )
    assert [r.status.code for r in reply.results] == [0, 0, 0]
    with env.db.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        envelopes = [decode_envelope(r.envelope) for r in rows]
        ids = [(r.event_id, dict(r.headers)["signet-event-id"]) for r in rows]
    mine = [
        (e, unpack_payload(e, events_pb2.SignatureCreated))
        for e in envelopes
        if e.type == events_pb2.SignatureCreated.DESCRIPTOR.full_name
        and e.transaction_id == "tx-events"
    ]
    assert len(mine) == 3
    assert len({e.id for e, _ in mine}) == 3
    assert all(row_id == header_id for row_id, header_id in ids)
    first = mine[0][0]
    for (envelope, event), result, digest in zip(mine, reply.results, digests, strict=True):
        assert event.signature_id == result.signature_id
        assert event.digest.value == digest and event.digest.algorithm == SHA256
        assert event.signature_sha256 == hashlib.sha256(result.signature).digest()
        assert event.grant_id == grant_id
        assert event.key_id == key.key_id and event.caller == "ca-gateway"
        assert event.owner.subscriber.account_id == key.owner.subscriber.account_id
        assert event.scheme == common_pb2.SIGNATURE_SCHEME_ECDSA
        assert [(d.algorithm, d.value) for d in envelope.digests] == [(SHA256, digest)]
        assert envelope.subject == key.key_id and envelope.tenant == "t-1"
        assert envelope.actor.account_id == key.owner.subscriber.account_id
        assert envelope.actor.service == "ca-gateway"
        assert envelope.time == first.time and envelope.trace == first.trace


def test_destroy_removes_the_token_object_and_keeps_the_record(env: Env) -> None:
    key = env.subscriber_key()
    assert env.backend.exists(key.key_id)
    destroyed = env.ca.DestroyKey(
        signer_pb2.DestroyKeyRequest(
            key_id=key.key_id, reason=signer_pb2.KEY_RETIREMENT_REASON_ACCOUNT_CANCELLED
        )
    ).key
    assert destroyed.state == signer_pb2.KEY_STATE_DESTROYED
    assert destroyed.retirement_reason == signer_pb2.KEY_RETIREMENT_REASON_ACCOUNT_CANCELLED
    assert not env.backend.exists(key.key_id)
    with env.pool.session() as session:
        assert not list(session.get_objects({Attribute.ID: key.key_id.encode()}))
    record = env.ca.GetKey(signer_pb2.GetKeyRequest(key_id=key.key_id)).key
    assert record.state == signer_pb2.KEY_STATE_DESTROYED and record.destroyed_at.seconds > 0
    code, _ = _code(lambda: env.ca.DestroyKey(signer_pb2.DestroyKeyRequest(key_id=key.key_id)))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    kinds = []
    with env.db.session() as session:
        for row in session.scalars(select(OutboxMessage)).all():
            envelope = decode_envelope(row.envelope)
            if envelope.subject == key.key_id:
                kinds.append(envelope.type.rsplit(".", 1)[-1])
    assert kinds == ["KeyCreated", "KeyDestroyed"]


def test_list_keys_pages_by_owner(env: Env) -> None:
    account = "a-list-" + uuid.uuid4().hex[:6]
    made = {env.subscriber_key(tenant="t-list", account=account).key_id for _ in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = env.ca.ListKeys(
            signer_pb2.ListKeysRequest(
                tenant_id="t-list", account_id=account, page_size=2, page_token=token
            )
        )
        seen.extend(k.key_id for k in page.keys)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    code, _ = _code(lambda: env.ca.ListKeys(signer_pb2.ListKeysRequest()))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_events_never_carry_document_content(env: Env, tmp_path: Path) -> None:
    key = env.subscriber_key()
    secret = b"TOP-SECRET-CONTRACT-" + uuid.uuid4().hex.encode()
    digest = hashlib.sha256(secret).digest()
    grant, _ = env.grant(key, [digest])
    env.ca.SignDigest(
        signer_pb2.SignDigestRequest(
            key_id=key.key_id, digest=common_pb2.Digest(algorithm=SHA256, value=digest), grant=grant
        )
    )
    with env.db.session() as session:
        blobs = b"".join(r.envelope for r in session.scalars(select(OutboxMessage)).all())
    assert secret not in blobs
    assert grant.encode() not in blobs
