"""Kafka TLS/SASL settings become the client's keyword arguments."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from signet.common.config import ServiceSettings
from signet.common.kafkaconfig import kafka_client_config


def test_plaintext_adds_nothing() -> None:
    assert kafka_client_config(ServiceSettings()) == {}


def test_sasl_over_tls_with_a_ca_bundle() -> None:
    settings = ServiceSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="signet-evidence",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_cafile="/etc/signet/kafka-ca/ca.crt",
    )
    assert kafka_client_config(settings) == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": "/etc/signet/kafka-ca/ca.crt",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "signet-evidence",
        "sasl_plain_password": "s3cret",
    }


def test_tls_only_keeps_sasl_out() -> None:
    config = kafka_client_config(ServiceSettings(kafka_security_protocol="SSL"))
    assert config == {"security_protocol": "SSL"}


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="kafka_sasl_mechanism"):
        kafka_client_config(ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_unknown_protocol_is_a_settings_error() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(kafka_security_protocol="TLS")  # type: ignore[arg-type]


def test_settings_come_from_the_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from signet.signer.config import SignerSettings

    monkeypatch.setenv("SIGNET_SIGNER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SIGNET_SIGNER_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SIGNET_SIGNER_KAFKA_SASL_USERNAME", "signer")
    monkeypatch.setenv("SIGNET_SIGNER_KAFKA_SASL_PASSWORD", "pw")
    config = kafka_client_config(SignerSettings())
    assert config["sasl_plain_username"] == "signer"
    assert config["security_protocol"] == "SASL_SSL"
