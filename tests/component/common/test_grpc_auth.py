"""Caller authentication on a real server: bearer API tokens and mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from signet.common.auth import current_principal, hash_token
from signet.common.channels import TlsConfig
from signet.common.testing.grpc import (
    InProcessServer,
    bytes_service,
    bytes_unary_stream,
    bytes_unary_unary,
    settings_for_tests,
)
from tests.fixtures.tls import Pki, write_test_pki

SERVICE = "test.WhoAmI"


def who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    principal = current_principal()
    return f"{principal.kind}:{principal.subject}".encode()


def who_am_i_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield who_am_i(request, context)
    yield who_am_i(request, context)


register = bytes_service(
    SERVICE, unary_unary={"Get": who_am_i}, unary_stream={"Stream": who_am_i_stream}
)


def get(channel: grpc.Channel) -> bytes:
    return bytes(bytes_unary_unary(channel, f"/{SERVICE}/Get")(b""))


# Bearer tokens ---------------------------------------------------------------------------

TOKEN = "notify-token-4f1c2a"


@pytest.fixture(scope="module")
def token_server() -> Iterator[InProcessServer]:
    settings = settings_for_tests(
        auth_mode="token",
        api_token_hashes=SecretStr(
            f"notify:{hash_token(TOKEN)},evidence:{hash_token('other-token')}"
        ),
    )
    srv = InProcessServer(register, service_names=[SERVICE], settings=settings)
    with srv:
        yield srv


def test_call_without_token_is_unauthenticated(token_server: InProcessServer) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get(token_server.new_channel())
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_call_with_wrong_token_is_unauthenticated(token_server: InProcessServer) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get(token_server.new_channel(bearer_token="notify-token-4f1c2b"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "notify-token" not in (info.value.details() or "")


def test_right_token_makes_its_principal_visible_to_the_handler(
    token_server: InProcessServer,
) -> None:
    assert get(token_server.new_channel(bearer_token=TOKEN)) == b"service:notify"
    assert get(token_server.new_channel(bearer_token="other-token")) == b"service:evidence"


def test_principal_is_visible_throughout_a_response_stream(token_server: InProcessServer) -> None:
    channel = token_server.new_channel(bearer_token=TOKEN)
    responses = list(bytes_unary_stream(channel, f"/{SERVICE}/Stream")(b""))
    assert responses == [b"service:notify", b"service:notify"]


def test_health_needs_no_token(token_server: InProcessServer) -> None:
    stub = health_pb2_grpc.HealthStub(token_server.new_channel())
    response = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_no_token_and_lists_the_services(token_server: InProcessServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(token_server.new_channel())
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {service.name for service in response.list_services_response.service}
    assert names == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_auth_failures_are_counted_as_unauthenticated(token_server: InProcessServer) -> None:
    with pytest.raises(grpc.RpcError):
        get(token_server.new_channel())
    metric = token_server.registry.get_sample_value(
        "signet_test_grpc_requests_total",
        {"method": f"/{SERVICE}/Get", "code": "UNAUTHENTICATED"},
    )
    assert metric is not None
    assert metric >= 1


# Mutual TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), client_cn="signer")


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[InProcessServer]:
    settings = settings_for_tests(
        auth_mode="mtls",
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca),
    )
    srv = InProcessServer(register, service_names=[SERVICE], settings=settings)
    with srv:
        yield srv


def test_mtls_client_certificate_cn_becomes_the_principal(
    mtls_server: InProcessServer, pki: Pki
) -> None:
    tls = TlsConfig(
        root_certificates=pki.ca.read_bytes(),
        certificate_chain=pki.client_cert,
        private_key=pki.client_key,
    )
    assert get(mtls_server.new_channel(tls=tls)) == b"service:signer"


def test_mtls_client_without_certificate_is_refused(mtls_server: InProcessServer, pki: Pki) -> None:
    channel = mtls_server.new_channel(tls=TlsConfig(root_certificates=pki.ca.read_bytes()))
    with pytest.raises(grpc.RpcError) as info:
        get(channel)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mtls_client_certificate_from_another_ca_is_refused(
    mtls_server: InProcessServer, pki: Pki
) -> None:
    tls = TlsConfig(
        root_certificates=pki.ca.read_bytes(),
        certificate_chain=pki.rogue_cert,
        private_key=pki.rogue_key,
    )
    with pytest.raises(grpc.RpcError) as info:
        get(mtls_server.new_channel(tls=tls))
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_cannot_reach_mtls_server(mtls_server: InProcessServer) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get(mtls_server.new_channel())
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
