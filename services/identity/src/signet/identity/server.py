"""The identity process: ``python -m signet.identity`` or ``signet-identity``.

Composition root: the migrated database, the vault on the HSM's key-encryption key, the
provider adapters, the notify and signer clients, the service, its background jobs
(cancellations, retention purge) and the gRPC server, whose authenticator accepts the
platform's service tokens and the tenants' API credentials from identity's own store.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from signet.common.auth import Authenticator, build_authenticator
from signet.common.channels import TlsConfig, create_channel
from signet.common.credentials import ChainAuthenticator, CredentialAuthenticator, principal_lookup
from signet.common.errors import ServiceError
from signet.common.runtime import Runtime
from signet.common.server import serve
from signet.identity.backends.http import (
    HttpBankCardCheck,
    HttpCarrierCheck,
    HttpEnterpriseRegistry,
    HttpFaceMatch,
    HttpJsonClient,
)
from signet.identity.backends.memory import MemoryKeyWrapper
from signet.identity.backends.notify import NotifyCodeSender
from signet.identity.backends.signer import SignerGrantKeys
from signet.identity.config import IdentitySettings
from signet.identity.models import MIGRATIONS_DIR
from signet.identity.providers import Providers
from signet.identity.service import IdentityService
from signet.identity.servicer import IdentityServicer
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.identity.vault import KeyWrapper, PersonalDataVault

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
_log = logging.getLogger("signet.identity.server")


def build_providers(settings: IdentitySettings) -> Providers:
    """The HTTP provider adapters from settings."""
    key = settings.provider_api_key.get_secret_value()
    timeout = settings.provider_timeout_seconds

    def client(name: str, url: str) -> HttpJsonClient:
        return HttpJsonClient(name, url or settings.provider_url, key, timeout)

    return Providers(
        carrier=HttpCarrierCheck(client("carrier", settings.carrier_provider_url)),
        bank_card=HttpBankCardCheck(client("bank-card", settings.bank_card_provider_url)),
        face=HttpFaceMatch(client("face", settings.face_provider_url)),
        registry=HttpEnterpriseRegistry(client("registry", settings.registry_provider_url)),
    )


def credential_authenticator(service: IdentityService) -> CredentialAuthenticator:
    """Tenant API credentials checked against identity's own store."""

    def check(token: str) -> tuple[str, str, tuple[str, ...]]:
        found = service.authenticate_api_credential(token)
        return found.credential_id, found.tenant_id, found.scopes

    return CredentialAuthenticator(principal_lookup(check), ttl=5.0)


def authenticator_for(settings: IdentitySettings, service: IdentityService) -> Authenticator:
    """Service tokens (or client certificates) plus tenant API credentials."""
    base = build_authenticator(settings)
    if settings.auth_mode == "none":
        return base
    return ChainAuthenticator([base, credential_authenticator(service)])


class Jobs:
    """The periodic work: finish due cancellations, purge records past retention."""

    def __init__(self, service: IdentityService, interval: float) -> None:
        self._service = service
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        """One pass of every job; a failing pass is logged and retried next time."""
        try:
            self._service.process_cancellations()
            self._service.purge_expired_records()
        except ServiceError as err:
            _log.warning("identity jobs failed; retrying later", extra={"error": err.code.name})
        except Exception as err:  # noqa: BLE001  (the loop must survive; the type says enough)
            _log.error("identity jobs crashed; retrying later", extra={"error": type(err).__name__})

    def start(self) -> None:
        """Run the jobs every ``interval`` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="identity-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.run_once()

    def stop(self) -> None:
        """Stop the loop after the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def build_service(
    settings: IdentitySettings, runtime: Runtime, wrapper: KeyWrapper
) -> tuple[IdentityService, list[Any]]:
    """The service on its real peers; returns it and the channels to close."""
    tls = TlsConfig.from_settings(settings)
    signer_channel = create_channel(
        settings.signer_targets,
        default_timeout=settings.peer_timeout_seconds,
        tls=tls,
        bearer_token=(
            settings.signer_token.get_secret_value() or settings.service_token.get_secret_value()
        )
        or None,
    )
    notify_channel = create_channel(
        settings.notify_targets,
        default_timeout=settings.peer_timeout_seconds,
        tls=tls,
        bearer_token=(
            settings.notify_token.get_secret_value() or settings.service_token.get_secret_value()
        )
        or None,
    )
    service = IdentityService(
        runtime.db,
        PersonalDataVault(runtime.db, wrapper),
        build_providers(settings),
        NotifyCodeSender(notify_channel),
        SignerGrantKeys(signer_channel),
        policy=settings.policy(),
        enforce_callers=settings.auth_mode != "none",
        on_commit=runtime.committed,
    )
    return service, [signer_channel, notify_channel]


def main() -> None:
    """Migrate the database, make sure the grant key exists, then serve until SIGTERM."""
    settings = IdentitySettings()
    runtime = Runtime.open(settings, MIGRATIONS_DIR)
    pool: Any = None
    try:
        if settings.vault_backend == "pkcs11":
            from signet.common.pkcs11 import Pkcs11Pool
            from signet.identity.backends.pkcs11 import Pkcs11KeyWrapper

            pool = Pkcs11Pool(
                settings.pkcs11_module,
                settings.pkcs11_token_label,
                settings.pkcs11_pin.get_secret_value(),
                settings.pkcs11_pool_size,
            )
            wrapper: KeyWrapper = Pkcs11KeyWrapper(pool, settings.vault_kek_label)
        else:
            _log.warning("vault key-encryption key in memory: data is lost on restart")
            wrapper = MemoryKeyWrapper()
        service, channels = build_service(settings, runtime, wrapper)
    except ServiceError as err:
        runtime.close()
        raise SystemExit(f"identity: cannot start: {err.message}") from None
    try:
        service.ensure_grant_key()
    except ServiceError as err:
        # The signer may start after identity: the key is created at the first grant.
        _log.warning("grant key not ready; retried at first use", extra={"error": err.code.name})
    servicer = IdentityServicer(service)
    try:
        serve(
            settings,
            lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(
                servicer, server
            ),
            service_names=[SERVICE_NAME],
            authenticator=authenticator_for(settings, service),
            background=[*runtime.background, Jobs(service, settings.jobs_interval_seconds)],
        )
    finally:
        for channel in channels:
            channel.close()
        if pool is not None:
            pool.close()
        runtime.close()
