"""Who is calling: principals, the authenticator protocol and the built-in authenticators.

The auth interceptor asks an :class:`Authenticator` for the caller's :class:`Principal`
before the handler runs and makes it available through :func:`current_principal`, so
servicers never parse metadata or certificates themselves. Static bearer tokens and mutual
TLS cover service-to-service calls; the identity service later plugs its credential store
in through the same protocol.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from signet.common.config import ServiceSettings
from signet.common.errors import Unauthenticated

PrincipalKind = Literal["service", "tenant", "operator", "anonymous"]

# Metadata as gRPC hands it to a server: (key, value) pairs, keys lower-case; values of
# "-bin" keys are bytes.
Metadata = Sequence[tuple[str, str | bytes]]
# The verified client certificate name a front that terminates mTLS passes to its workers.
FRONT_PEER_HEADER = "signet-front-peer-cn"
# gRPC's auth context: property name -> values (e.g. x509_common_name -> [b"signer"]).
AuthContext = Mapping[str, Sequence[bytes]]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: what it is, what it may do, and which tenant it acts for."""

    subject: str
    kind: PrincipalKind
    scopes: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None

    def has_scope(self, scope: str) -> bool:
        """Whether this principal was granted ``scope``."""
        return scope in self.scopes


ANONYMOUS = Principal(subject="anonymous", kind="anonymous")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "signet_principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The caller of the RPC being handled; :data:`ANONYMOUS` outside an authenticated call.

    Anonymous as the default (rather than an error) keeps authorisation checks simple:
    they deny anonymous callers anyway.
    """
    return _current.get()


@contextmanager
def principal_scope(principal: Principal) -> Iterator[Principal]:
    """Make ``principal`` the current one for the block (used by the auth interceptor and tests)."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)


class Authenticator(Protocol):
    """Turns a call's credentials into a :class:`Principal` or raises :class:`Unauthenticated`."""

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """Identify the caller of ``method`` (full gRPC method name) or raise Unauthenticated."""
        ...


class AnonymousAuthenticator:
    """Accepts every caller as anonymous (auth_mode ``none``: local runs and tests)."""

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """Return :data:`ANONYMOUS` without looking at the call."""
        return ANONYMOUS


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a bearer token is configured (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(metadata: Metadata) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header; None when absent or malformed."""
    for key, value in metadata:
        if key.lower() != "authorization" or not isinstance(value, str):
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return None


class StaticTokenAuthenticator:
    """Bearer API tokens configured as ``principal:sha256hex`` pairs (auth_mode ``token``).

    Only hashes are configured, so a leaked configuration does not leak tokens. Every
    configured hash is compared in constant time, so timing does not reveal which
    principal a guess came close to.
    """

    def __init__(self, token_hashes: Mapping[str, str]) -> None:
        self._entries: tuple[tuple[bytes, Principal], ...] = tuple(
            (digest.lower().encode("ascii"), Principal(subject=name, kind="service"))
            for name, digest in token_hashes.items()
        )

    @classmethod
    def parse(cls, spec: str) -> StaticTokenAuthenticator:
        """Build from ``"name:sha256hex,name2:sha256hex"``; a malformed entry is a ValueError."""
        hashes: dict[str, str] = {}
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            name, sep, digest = entry.partition(":")
            name, digest = name.strip(), digest.strip().lower()
            if not sep or not name or len(digest) != 64 or not _is_hex(digest):
                # The entry may hold a secret pasted by mistake: do not echo it.
                raise ValueError("api_token_hashes entries must be 'principal:<sha256 hex>'")
            hashes[name] = digest
        return cls(hashes)

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """Match the bearer token's hash against the configured ones."""
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing bearer token")
        presented = hash_token(token).encode("ascii")
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = principal
        if found is None:
            raise Unauthenticated("invalid bearer token")
        return found


class MtlsAuthenticator:
    """The service identity is the subject CN of the client certificate (auth_mode ``mtls``).

    The TLS layer has already verified the certificate against the configured client CA
    bundle; this only reads the verified identity gRPC puts into the auth context. Behind
    a front that terminates TLS (``from_front``), the front verified it and sends its name
    in the :data:`FRONT_PEER_HEADER` header, which it always strips from what callers send;
    only the front can reach a listener that trusts that header.
    """

    def __init__(
        self, allowed_subjects: frozenset[str] | None = None, *, from_front: bool = False
    ) -> None:
        self._allowed = allowed_subjects
        self._from_front = from_front

    def authenticate(self, method: str, metadata: Metadata, auth_context: AuthContext) -> Principal:
        """Return a service principal named after the peer certificate's common name."""
        if self._from_front:
            subject = next(
                (v for k, v in metadata if k == FRONT_PEER_HEADER and isinstance(v, str)), ""
            )
            if not subject:
                raise Unauthenticated("client certificate required")
        else:
            if b"ssl" not in auth_context.get("transport_security_type", ()):
                raise Unauthenticated("client certificate required")
            names = auth_context.get("x509_common_name", ())
            if not names:
                raise Unauthenticated("client certificate required")
            subject = names[0].decode("utf-8", errors="replace")
        if self._allowed is not None and subject not in self._allowed:
            raise Unauthenticated("client certificate not accepted")
        return Principal(subject=subject, kind="service")


def build_authenticator(settings: ServiceSettings) -> Authenticator:
    """The authenticator that ``settings.auth_mode`` asks for."""
    if settings.auth_mode == "token":
        return StaticTokenAuthenticator.parse(settings.api_token_hashes.get_secret_value())
    if settings.auth_mode == "mtls":
        return MtlsAuthenticator(from_front=settings.behind_front)
    return AnonymousAuthenticator()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
