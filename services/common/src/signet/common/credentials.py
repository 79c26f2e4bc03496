"""Tenant API credentials in the authentication interceptor of every service.

Tenants call the platform with bearer tokens ``<credential_id>.<secret>`` that the
identity service issues, stores hashed, rotates and revokes. :class:`ChainAuthenticator`
lets a service accept both its static service tokens and those credentials;
:class:`RemoteCredentialAuthenticator` asks identity's AuthenticateApiCredential (with a
short positive cache, so a revocation takes effect within ``ttl`` seconds) and turns the
answer into a tenant :class:`~signet.common.auth.Principal`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from signet.common.auth import (
    AuthContext,
    Authenticator,
    Metadata,
    Principal,
    bearer_token,
    build_authenticator,
)
from signet.common.config import ServiceSettings
from signet.common.errors import ServiceError, Unauthenticated, Unavailable

CredentialLookup = Callable[[str], Principal]
"""Checks a bearer token; returns the tenant principal or raises Unauthenticated."""


class ChainAuthenticator:
    """Tries each authenticator in turn; the first that accepts the call wins."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        if not authenticators:
            raise ValueError("at least one authenticator is required")
        self._chain = tuple(authenticators)

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """The principal of the first authenticator that accepts; else the last refusal."""
        refusal: Unauthenticated | None = None
        for authenticator in self._chain:
            try:
                return authenticator.authenticate(method, metadata, auth_context)
            except Unauthenticated as err:
                refusal = err
        assert refusal is not None
        raise refusal


class CredentialAuthenticator:
    """Accepts tenant API credentials through ``lookup`` (local store or identity's RPC).

    Accepted tokens are cached by their SHA-256 for ``ttl`` seconds; refusals are not
    cached, so a new credential works at once.
    """

    def __init__(
        self, lookup: CredentialLookup, ttl: float = 30.0, max_entries: int = 10_000
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal]] = {}

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """The tenant principal of the call's bearer credential."""
        token = bearer_token(metadata)
        if token is None or "." not in token:
            raise Unauthenticated("missing API credential")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        principal = self._lookup(token)
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = (now, principal)
        return principal


def remote_lookup(channel: grpc.Channel, timeout: float = 5.0) -> CredentialLookup:
    """A lookup that asks identity's AuthenticateApiCredential over ``channel``."""
    from signet.identity.v1 import identity_pb2, identity_pb2_grpc

    stub = identity_pb2_grpc.IdentityServiceStub(channel)

    def lookup(token: str) -> Principal:
        try:
            reply = stub.AuthenticateApiCredential(
                identity_pb2.AuthenticateApiCredentialRequest(token=token), timeout=timeout
            )
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated("invalid API credential") from None
            raise Unavailable("credentials cannot be checked now; retry") from None
        return Principal(
            subject=reply.credential_id,
            kind="tenant",
            scopes=frozenset(reply.scopes),
            tenant=reply.tenant_id,
        )

    return lookup


def principal_lookup(check: Callable[[str], tuple[str, str, Sequence[str]]]) -> CredentialLookup:
    """A lookup over a local check returning (credential id, tenant, scopes)."""

    def lookup(token: str) -> Principal:
        try:
            credential_id, tenant, scopes = check(token)
        except Unauthenticated:
            raise
        except ServiceError:
            raise Unavailable("credentials cannot be checked now; retry") from None
        return Principal(
            subject=credential_id, kind="tenant", scopes=frozenset(scopes), tenant=tenant
        )

    return lookup


def platform_authenticator(settings: ServiceSettings) -> Authenticator:
    """The credentials a service other than identity accepts.

    Those of its ``auth_mode``, and tenants' API credentials checked by identity when
    ``identity_targets`` is set. With ``auth_mode`` none nothing is checked, as before.
    Identity is asked with this service's own token (or mTLS certificate); an accepted
    credential is cached briefly.
    """
    base = build_authenticator(settings)
    if settings.auth_mode == "none" or not settings.identity_targets:
        return base
    from signet.common.channels import TlsConfig, create_channel

    channel = create_channel(
        settings.identity_targets,
        default_timeout=5.0,
        tls=TlsConfig.from_settings(settings),
        bearer_token=settings.service_token.get_secret_value() or None,
    )
    return ChainAuthenticator([base, CredentialAuthenticator(remote_lookup(channel), ttl=5.0)])
