"""Identity's grants accepted by the real signer on SoftHSM, once.

Identity creates its grant key in the signer at first start (a system key of owner
identity, purpose grant signing), signs grants through SignDigest, and the signer, reading
that key from its own records, accepts each grant once. The vault's key-encryption key is
an AES key on the same token.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from google.protobuf.timestamp_pb2 import Timestamp
from pkcs11 import Attribute, KeyType, ObjectClass

from signet.common.pkcs11 import Pkcs11Pool
from signet.common.v1 import common_pb2
from signet.identity.backends.pkcs11 import Pkcs11KeyWrapper
from signet.identity.backends.signer import SignerGrantKeys
from signet.identity.v1 import identity_pb2
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.identity import IdentityEnv, identity_env
from tests.fixtures.signer import SignerHarness, signer_harness

pytestmark = pytest.mark.softhsm

SHA256 = common_pb2.HASH_ALGORITHM_SHA256
V = identity_pb2


@dataclass
class Platform:
    identity: IdentityEnv
    signer: SignerHarness
    ca: signer_pb2_grpc.SignerServiceStub
    grant_keys: SignerGrantKeys


@pytest.fixture
def platform(pkcs11_pool: Pkcs11Pool, tmp_path: Path) -> Iterator[Platform]:
    with signer_harness(pkcs11_pool, tmp_path / "signer") as harness:
        server = harness.serve()
        grant_keys = SignerGrantKeys(server.new_channel(bearer_token=harness.tokens["identity"]))
        wrapper = Pkcs11KeyWrapper(pkcs11_pool, "identity-vault-kek-" + uuid.uuid4().hex[:8])
        (tmp_path / "identity").mkdir()
        with identity_env(tmp_path / "identity", wrapper=wrapper, grant_keys=grant_keys) as env:
            yield Platform(env, harness, harness.stub(server, "ca-gateway"), grant_keys)


def _subscriber_key(p: Platform, account: identity_pb2.Account) -> str:
    return p.ca.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING,
            owner=signer_pb2.KeyOwner(
                subscriber=signer_pb2.SubscriberOwner(
                    tenant_id=account.tenant_id, account_id=account.account_id
                )
            ),
        )
    ).key.key_id


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), str(info.value.details())


def test_identity_grant_is_accepted_by_the_signer_once(platform: Platform) -> None:
    env = platform.identity
    account = env.verified_person(env.tenant())
    key_id = _subscriber_key(platform, account)
    digest = hashlib.sha256(b"contract v1").digest()
    started = env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account.account_id,
            key_id=key_id,
            digests=[common_pb2.Digest(algorithm=SHA256, value=digest)],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    grant = env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=started.willingness_id, one_time_code=env.notify.last_code()
        )
    ).grant

    def sign() -> signer_pb2.SignDigestResponse:
        return platform.ca.SignDigest(
            signer_pb2.SignDigestRequest(
                key_id=key_id,
                digest=common_pb2.Digest(algorithm=SHA256, value=digest),
                grant=grant.token,
            )
        )

    signed = sign()
    public = load_der_public_key(
        platform.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=key_id)).public_key.spki_der
    )
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signed.signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    code, message = _code(sign)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "already been used" in message


def test_grant_key_is_identity_system_key_in_the_signer_and_published(platform: Platform) -> None:
    env = platform.identity
    kid = env.service.ensure_grant_key()
    record = platform.ca.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=kid))
    published = env.stub.GetGrantVerificationKeys(V.GetGrantVerificationKeysRequest())
    assert [k.kid for k in published.keys] == [kid]
    assert published.keys[0].spki_der == record.public_key.spki_der
    # A restart finds the key again instead of creating another one.
    assert env.service.ensure_grant_key() == kid
    assert platform.grant_keys.create_key("identity-grant-key-v1")[0] == kid


def test_grant_for_another_digest_is_refused_by_the_signer(platform: Platform) -> None:
    env = platform.identity
    account = env.verified_person(env.tenant())
    key_id = _subscriber_key(platform, account)
    named = hashlib.sha256(b"what the user saw").digest()
    started = env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account.account_id,
            key_id=key_id,
            digests=[common_pb2.Digest(algorithm=SHA256, value=named)],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    token = env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=started.willingness_id, one_time_code=env.notify.last_code()
        )
    ).grant.token
    other = hashlib.sha256(b"something else").digest()
    code, message = _code(
        lambda: platform.ca.SignDigest(
            signer_pb2.SignDigestRequest(
                key_id=key_id, digest=common_pb2.Digest(algorithm=SHA256, value=other), grant=token
            )
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "digest" in message


def test_each_automatic_signing_grant_signs_once(platform: Platform) -> None:
    env = platform.identity
    account = env.verified_person(env.tenant())
    key_id = _subscriber_key(platform, account)
    text = common_pb2.Digest(algorithm=SHA256, value=hashlib.sha256(b"auto-sign terms").digest())
    started = env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account.account_id,
            key_id=key_id,
            digests=[text],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    confirmation = env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=started.willingness_id, one_time_code=env.notify.last_code()
        )
    ).grant.token
    until = Timestamp()
    until.FromDatetime(env.clock.now + timedelta(days=30))
    auto = env.stub.CreateAutoSignAuthorization(
        V.CreateAutoSignAuthorizationRequest(
            account_id=account.account_id,
            key_id=key_id,
            business_scope="invoices",
            valid_until=until,
            max_uses=5,
            confirmation_grant=confirmation,
            authorization_text_digest=text,
        )
    ).authorization
    for n in range(2):
        digest = hashlib.sha256(f"invoice {n}".encode()).digest()
        grant = env.stub.IssueAutoSignGrant(
            V.IssueAutoSignGrantRequest(
                authorization_id=auto.authorization_id,
                digests=[common_pb2.Digest(algorithm=SHA256, value=digest)],
            )
        ).grant

        def sign(token: str = grant.token, value: bytes = digest) -> object:
            return platform.ca.SignDigest(
                signer_pb2.SignDigestRequest(
                    key_id=key_id,
                    digest=common_pb2.Digest(algorithm=SHA256, value=value),
                    grant=token,
                )
            )

        sign()
        code, _ = _code(sign)
        assert code == grpc.StatusCode.PERMISSION_DENIED


def test_vault_key_encryption_key_lives_on_the_token_and_cannot_leave_it(
    pkcs11_pool: Pkcs11Pool,
) -> None:
    label = "identity-vault-kek-" + uuid.uuid4().hex[:8]
    wrapper = Pkcs11KeyWrapper(pkcs11_pool, label)
    wrapped = wrapper.wrap(b"\x07" * 32)
    assert Pkcs11KeyWrapper(pkcs11_pool, label).unwrap(wrapped) == b"\x07" * 32
    with pkcs11_pool.session() as session:
        (kek,) = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
        )
        assert kek[Attribute.KEY_TYPE] == KeyType.AES
        assert kek[Attribute.SENSITIVE] and not kek[Attribute.EXTRACTABLE]
        assert kek[Attribute.TOKEN]
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    from signet.common.errors import Internal

    with pytest.raises(Internal):
        wrapper.unwrap(tampered)
