"""Principals and the built-in authenticators, without a server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from signet.common.auth import (
    ANONYMOUS,
    FRONT_PEER_HEADER,
    AnonymousAuthenticator,
    MtlsAuthenticator,
    Principal,
    StaticTokenAuthenticator,
    bearer_token,
    build_authenticator,
    current_principal,
    hash_token,
    principal_scope,
)
from signet.common.config import ServiceSettings
from signet.common.errors import Unauthenticated

METHOD = "/signet.signer.v1.Signer/SignDigest"


def token_authenticator() -> StaticTokenAuthenticator:
    return StaticTokenAuthenticator.parse(
        f"identity:{hash_token('tok-identity')}, notify:{hash_token('tok-notify').upper()}"
    )


def test_token_maps_to_its_configured_principal() -> None:
    principal = token_authenticator().authenticate(
        METHOD, (("authorization", "Bearer tok-notify"),), {}
    )
    assert principal == Principal(subject="notify", kind="service")


def test_bearer_scheme_is_case_insensitive() -> None:
    principal = token_authenticator().authenticate(
        METHOD, (("authorization", "bearer tok-identity"),), {}
    )
    assert principal.subject == "identity"


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer "),),
        (("authorization", "Basic tok-notify"),),
        (("authorization", "tok-notify"),),
        (("x-api-key", "tok-notify"),),
    ],
)
def test_missing_or_malformed_token_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(Unauthenticated):
        token_authenticator().authenticate(METHOD, metadata, {})


def test_unknown_token_is_unauthenticated_without_echoing_it() -> None:
    with pytest.raises(Unauthenticated) as info:
        token_authenticator().authenticate(METHOD, (("authorization", "Bearer guess"),), {})
    assert "guess" not in info.value.message


@pytest.mark.parametrize(
    "spec", ["notify", "notify:abc", f":{hash_token('x')}", f"notify:{'z' * 64}"]
)
def test_malformed_token_configuration_is_rejected_without_echo(spec: str) -> None:
    with pytest.raises(ValueError, match="principal:<sha256 hex>") as info:
        StaticTokenAuthenticator.parse(spec)
    assert spec not in str(info.value)


def test_empty_token_configuration_accepts_nobody() -> None:
    authenticator = StaticTokenAuthenticator.parse("")
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(METHOD, (("authorization", "Bearer anything"),), {})


def test_bearer_token_ignores_binary_values() -> None:
    assert bearer_token((("authorization", b"Bearer x"),)) is None
    assert bearer_token((("Authorization", "Bearer  x "),)) == "x"


def test_mtls_principal_is_the_certificate_common_name() -> None:
    context = {"transport_security_type": [b"ssl"], "x509_common_name": [b"ca-gateway"]}
    principal = MtlsAuthenticator().authenticate(METHOD, (), context)
    assert principal == Principal(subject="ca-gateway", kind="service")


def test_mtls_without_certificate_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        MtlsAuthenticator().authenticate(METHOD, (), {"transport_security_type": [b"ssl"]})
    with pytest.raises(Unauthenticated):
        MtlsAuthenticator().authenticate(METHOD, (), {"x509_common_name": [b"signer"]})


def test_mtls_allow_list_rejects_other_subjects() -> None:
    context = {"transport_security_type": [b"ssl"], "x509_common_name": [b"notify"]}
    with pytest.raises(Unauthenticated):
        MtlsAuthenticator(frozenset({"signer"})).authenticate(METHOD, (), context)


def test_mtls_behind_a_front_takes_the_name_the_front_verified() -> None:
    behind = build_authenticator(ServiceSettings(auth_mode="mtls", behind_front=True))
    principal = behind.authenticate(METHOD, ((FRONT_PEER_HEADER, "evidence"),), {})
    assert principal == Principal(subject="evidence", kind="service")
    with pytest.raises(Unauthenticated):
        behind.authenticate(METHOD, (("authorization", "Bearer x"),), {})
    # Without a front the header is just a caller's metadata: it proves nothing.
    direct = build_authenticator(ServiceSettings(auth_mode="mtls"))
    with pytest.raises(Unauthenticated):
        direct.authenticate(METHOD, ((FRONT_PEER_HEADER, "evidence"),), {})


def test_build_authenticator_follows_auth_mode() -> None:
    assert isinstance(
        build_authenticator(ServiceSettings(auth_mode="none")), AnonymousAuthenticator
    )
    assert isinstance(build_authenticator(ServiceSettings(auth_mode="mtls")), MtlsAuthenticator)
    token = build_authenticator(
        ServiceSettings(
            auth_mode="token", api_token_hashes=SecretStr(f"evidence:{hash_token('t')}")
        )
    )
    assert token.authenticate(METHOD, (("authorization", "Bearer t"),), {}).subject == "evidence"


def test_current_principal_is_anonymous_outside_a_call_and_scoped_inside() -> None:
    operator = Principal("ops-1", "operator", frozenset({"revoke"}), tenant="acme")
    assert current_principal() is ANONYMOUS
    with principal_scope(operator):
        assert current_principal() is operator
        assert current_principal().has_scope("revoke")
    assert current_principal() is ANONYMOUS
