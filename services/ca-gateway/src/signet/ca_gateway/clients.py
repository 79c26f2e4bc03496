"""gRPC implementations of the gateway's ports: the signer's keys and identity's accounts.

Failed calls become the platform's errors through :func:`signet.common.errors.from_rpc_error`,
so a caller of the gateway sees NOT_FOUND for an unknown key or account and UNAVAILABLE
(retryable) when a dependency is down, never a raw transport error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import grpc

from signet.ca_gateway.domain import AccountInfo, AccountType, KeyInfo
from signet.common.errors import Internal, from_rpc_error
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.v1 import common_pb2
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

_T = TypeVar("_T")


def _call(dependency: str, fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except grpc.RpcError as err:
        raise from_rpc_error(err, dependency) from None


def _key_algorithm(value: int) -> KeyAlgorithm:
    name = common_pb2.KeyAlgorithm.Name(common_pb2.KeyAlgorithm.ValueType(value))
    name = name.removeprefix("KEY_ALGORITHM_")
    try:
        return KeyAlgorithm(name)
    except ValueError:
        raise Internal("the signer reported a key algorithm the gateway does not know") from None


def _key_info(key: signer_pb2.Key, public_key: signer_pb2.PublicKey) -> KeyInfo:
    owner = key.owner
    return KeyInfo(
        key_id=key.key_id,
        algorithm=_key_algorithm(key.algorithm),
        spki_der=public_key.spki_der,
        tenant=owner.subscriber.tenant_id,
        account_id=owner.subscriber.account_id,
        system_owner=owner.system,
        active=key.state == signer_pb2.KEY_STATE_ACTIVE,
    )


class GrpcKeyService:
    """:class:`~signet.ca_gateway.ports.KeyService` over the signer's gRPC API."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0) -> None:
        self._stub = signer_pb2_grpc.SignerServiceStub(channel)
        self._timeout = timeout

    def create_key(
        self,
        *,
        algorithm: KeyAlgorithm,
        purpose: str,
        tenant: str = "",
        account_id: str = "",
        system_owner: str = "",
        request_id: str = "",
    ) -> KeyInfo:
        """CreateKey, with the subscriber or system owner."""
        owner = (
            signer_pb2.KeyOwner(system=system_owner)
            if system_owner
            else signer_pb2.KeyOwner(
                subscriber=signer_pb2.SubscriberOwner(tenant_id=tenant, account_id=account_id)
            )
        )
        request = signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KeyAlgorithm.Value(f"KEY_ALGORITHM_{algorithm.value}"),
            purpose=signer_pb2.KeyPurpose.Value(f"KEY_PURPOSE_{purpose.upper()}"),
            owner=owner,
            request_id=request_id,
        )
        reply = _call("signer", lambda: self._stub.CreateKey(request, timeout=self._timeout))
        return _key_info(reply.key, reply.public_key)

    def get_key(self, key_id: str) -> KeyInfo:
        """GetKey and GetPublicKey."""
        key = _call(
            "signer",
            lambda: self._stub.GetKey(
                signer_pb2.GetKeyRequest(key_id=key_id), timeout=self._timeout
            ),
        )
        public = _call(
            "signer",
            lambda: self._stub.GetPublicKey(
                signer_pb2.GetPublicKeyRequest(key_id=key_id), timeout=self._timeout
            ),
        )
        return _key_info(key.key, public.public_key)

    def sign_digest(
        self, key_id: str, digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme
    ) -> bytes:
        """SignDigest with a system key (no grant)."""
        request = signer_pb2.SignDigestRequest(
            key_id=key_id,
            digest=common_pb2.Digest(
                algorithm=common_pb2.HashAlgorithm.Value(f"HASH_ALGORITHM_{hash_alg.value}"),
                value=digest,
            ),
            scheme=common_pb2.SignatureScheme.Value(f"SIGNATURE_SCHEME_{scheme.value}"),
        )
        reply = _call("signer", lambda: self._stub.SignDigest(request, timeout=self._timeout))
        return bytes(reply.signature)

    def disable_key(self, key_id: str, *, compromised: bool) -> None:
        """DisableKey; a key already disabled or destroyed counts as done."""
        request = signer_pb2.DisableKeyRequest(
            key_id=key_id,
            reason=(
                signer_pb2.KEY_RETIREMENT_REASON_KEY_COMPROMISE
                if compromised
                else signer_pb2.KEY_RETIREMENT_REASON_CERTIFICATE_REVOKED
            ),
        )
        try:
            self._stub.DisableKey(request, timeout=self._timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # Already disabled or destroyed: the goal is reached.
                return
            raise from_rpc_error(err, "signer") from None


_ACCOUNT_TYPES = {
    identity_pb2.ACCOUNT_TYPE_PERSON: AccountType.PERSON,
    identity_pb2.ACCOUNT_TYPE_ENTERPRISE: AccountType.ENTERPRISE,
}


class GrpcAccountDirectory:
    """:class:`~signet.ca_gateway.ports.AccountDirectory` over identity's gRPC API."""

    def __init__(self, channel: grpc.Channel, timeout: float = 5.0) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._timeout = timeout

    def account(self, account_id: str) -> AccountInfo:
        """GetAccount, reduced to what a certificate needs."""
        reply = _call(
            "identity",
            lambda: self._stub.GetAccount(
                identity_pb2.GetAccountRequest(account_id=account_id), timeout=self._timeout
            ),
        )
        account = reply.account
        account_type = _ACCOUNT_TYPES.get(account.type)
        if account_type is None:
            raise Internal("identity reported an account of unknown type")
        name = (
            account.person.name
            if account_type is AccountType.PERSON
            else account.enterprise.enterprise_name
        )
        return AccountInfo(
            account_id=account.account_id,
            tenant=account.tenant_id,
            type=account_type,
            verified=account.state == identity_pb2.ACCOUNT_STATE_VERIFIED,
            name=name,
            identifier_hash=bytes(account.subject_identifier_hash),
        )

    def operator_may_manage_certificates(
        self, enterprise_id: str, operator_id: str, at: datetime
    ) -> bool:
        """ListOperatorAuthorizations for the pair, looking for an active, current one."""
        request = identity_pb2.ListOperatorAuthorizationsRequest(
            enterprise_account_id=enterprise_id, operator_account_id=operator_id, page_size=100
        )
        reply = _call(
            "identity",
            lambda: self._stub.ListOperatorAuthorizations(request, timeout=self._timeout),
        )
        for auth in reply.authorizations:
            if (
                auth.state == identity_pb2.AUTHORIZATION_STATE_ACTIVE
                and identity_pb2.OPERATOR_RIGHT_MANAGE_CERTIFICATES in auth.rights
                and (
                    not auth.HasField("valid_from")
                    or auth.valid_from.ToDatetime(tzinfo=at.tzinfo) <= at
                )
                and (
                    not auth.HasField("valid_until")
                    or at < auth.valid_until.ToDatetime(tzinfo=at.tzinfo)
                )
            ):
                return True
        return False
