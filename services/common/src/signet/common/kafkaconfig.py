"""Kafka connection security from settings: TLS and SASL for managed clusters.

:func:`kafka_client_config` turns the ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*`` and
``KAFKA_SSL_CAFILE`` settings into the client keyword arguments both the publisher and the
consumer loops accept (their ``**producer_config`` / ``**consumer_config``), so every Kafka
client of a service connects the same way.
"""

from __future__ import annotations

from typing import Any

from signet.common.config import ServiceSettings


def kafka_client_config(settings: ServiceSettings) -> dict[str, Any]:
    """Client keyword arguments for the configured protocol; empty for plaintext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_cafile:
        config["ssl_cafile"] = settings.kafka_ssl_cafile
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_mechanism or not settings.kafka_sasl_username:
            raise ValueError("SASL needs kafka_sasl_mechanism and kafka_sasl_username")
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return config
