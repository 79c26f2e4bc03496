"""Another service accepting tenant API credentials through identity's AuthenticateApiCredential.

A stand-in service (raw bytes) sits behind the shared interceptor with a chain of its
static service tokens and :mod:`signet.common.credentials` asking identity; the principal
the handler sees is the tenant of the credential.
"""

from __future__ import annotations

import grpc
import pytest

from signet.common.auth import StaticTokenAuthenticator, current_principal, hash_token
from signet.common.credentials import ChainAuthenticator, CredentialAuthenticator, remote_lookup
from signet.common.testing.grpc import InProcessServer, bytes_service, bytes_unary_unary
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv

METHOD = "/test.Echo/WhoAmI"


def _who(request: bytes, context: grpc.ServicerContext) -> bytes:
    p = current_principal()
    return f"{p.kind}:{p.subject}:{p.tenant or ''}:{','.join(sorted(p.scopes))}".encode()


def test_a_tenant_credential_works_in_another_service_until_revoked(env: IdentityEnv) -> None:
    tenant = env.tenant()
    created = env.stub.CreateApiCredential(
        identity_pb2.CreateApiCredentialRequest(
            tenant_id=tenant, display_name="crm", scopes=["evidence.read", "sign"]
        )
    )
    authenticator = ChainAuthenticator(
        [
            StaticTokenAuthenticator({"ca-gateway": hash_token("svc-token")}),
            CredentialAuthenticator(remote_lookup(env.server.new_channel()), ttl=0.0),
        ]
    )
    other = InProcessServer(
        bytes_service("test.Echo", unary_unary={"WhoAmI": _who}), authenticator=authenticator
    )
    other.start()
    try:

        def call(token: str | None) -> bytes:
            return bytes_unary_unary(other.new_channel(bearer_token=token), METHOD)(b"")

        credential_id = created.credential.credential_id
        assert call(created.token) == f"tenant:{credential_id}:{tenant}:evidence.read,sign".encode()
        assert call("svc-token") == b"service:ca-gateway::"
        with pytest.raises(grpc.RpcError) as info:
            call(created.token + "x")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        env.stub.RevokeApiCredential(
            identity_pb2.RevokeApiCredentialRequest(credential_id=credential_id)
        )
        with pytest.raises(grpc.RpcError) as info:
            call(created.token)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        other.stop()
