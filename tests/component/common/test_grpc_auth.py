"""Caller authentication on a real server: bearer API tokens and mutual TLS."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
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


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: bytes
    client_key: bytes
    rogue_cert: bytes
    rogue_key: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], *, server: bool
) -> tuple[bytes, bytes]:
    ca_cert, ca_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca("Signet Test CA")
    rogue_ca = _ca("Rogue CA")
    server_cert, server_key = _leaf("localhost", ca, server=True)
    client_cert, client_key = _leaf("signer", ca, server=False)
    rogue_cert, rogue_key = _leaf("signer", rogue_ca, server=False)
    paths = {
        "ca": ca[0].public_bytes(serialization.Encoding.PEM),
        "server.crt": server_cert,
        "server.key": server_key,
    }
    for name, data in paths.items():
        (directory / name).write_bytes(data)
    return Pki(
        ca=directory / "ca",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=client_cert,
        client_key=client_key,
        rogue_cert=rogue_cert,
        rogue_key=rogue_key,
    )


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
