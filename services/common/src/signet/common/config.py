"""Typed settings read from the environment, built once at start-up and passed down.

Each service subclasses :class:`ServiceSettings` with its own prefix, so every field is
``SIGNET_<SVC>_<FIELD>`` (e.g. ``SIGNET_SIGNER_GRPC_PORT``). Nothing reads the
environment anywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AuthMode = Literal["none", "token", "mtls"]
TracingExporter = Literal["none", "console", "otlp"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ServiceSettings(BaseSettings):
    """Settings every Signet service shares; subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(env_prefix="SIGNET_", extra="ignore", frozen=True)

    service_name: str = "signet"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    grpc_max_workers: int = Field(default=32, ge=1)
    drain_seconds: float = Field(default=10.0, ge=0)
    # Worker processes of one service share its port (SO_REUSEPORT); off by default so
    # that a port clash fails loudly.
    grpc_reuse_port: bool = False
    # Off in worker processes whose parent serves their combined /metrics.
    metrics_enabled: bool = True
    # Set by a service's supervisor for its worker processes behind a front (the signer's,
    # see signet.signer.front), never by operators: the gRPC listener, e.g. a Unix socket
    # ``unix:///dir/worker-0.sock`` in a directory only the service can enter, instead of
    # grpc_host:grpc_port ...
    grpc_listen: str = ""
    # ... served without TLS (the front terminates it), and with auth_mode mtls the caller's
    # verified certificate name arrives from the front in the FRONT_PEER_HEADER header.
    behind_front: bool = False

    database_url: str = "sqlite:///signet.db"
    database_echo: bool = False

    kafka_bootstrap: str = ""
    kafka_client_id: str = ""
    # Security of the broker connections (managed Kafka: TLS, SASL); see signet.common.kafkaconfig.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism | Literal[""] = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # CA bundle (PEM) that signs the brokers' certificates; empty = the system trust store.
    kafka_ssl_cafile: str = ""
    outbox_poll_seconds: float = Field(default=0.2, gt=0)

    log_level: str = "INFO"

    auth_mode: AuthMode = "none"
    # Bearer tokens accepted when auth_mode=token: "principal:sha256hex,principal2:sha256hex".
    api_token_hashes: SecretStr = SecretStr("")
    # The bearer token this service presents when it calls other Signet services
    # (auth_mode=token on the callee); empty = call without credentials.
    service_token: SecretStr = SecretStr("")
    # Where identity is: with token or mtls auth, tenants' API credentials are accepted
    # too and checked there (AuthenticateApiCredential); empty = service credentials only.
    identity_targets: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""

    tracing_exporter: TracingExporter = "none"
    otlp_endpoint: str = ""

    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "signet"  # noqa: S105  (a label, not a secret)
    # Slot of the token; -1 = find the token by its label alone.
    pkcs11_slot: int = Field(default=-1, ge=-1)
    pkcs11_pin: SecretStr = SecretStr("")
    pkcs11_pool_size: int = Field(default=4, ge=1)

    @property
    def grpc_address(self) -> str:
        """What the gRPC server binds: host:port, or ``grpc_listen`` when set."""
        return self.grpc_listen or f"{self.grpc_host}:{self.grpc_port}"
