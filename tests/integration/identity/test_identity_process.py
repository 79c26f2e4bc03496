"""``python -m signet.identity`` as a process in token mode, with its real peers.

The process opens its vault key on the SoftHSM token, creates its grant key in the signer
at start (authenticated as identity with its configured token), sends codes through the
notify test double, asks the provider test server, accepts a platform service token and
a tenant's API credential, and the grant it issues is accepted once by the signer.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from signet.common.auth import hash_token
from signet.common.channels import create_channel
from signet.common.local.kafka import free_port
from signet.common.local.platform import wait_serving
from signet.common.local.softhsm import TokenInfo
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.common.testing.http import ProviderTestDouble
from signet.common.v1 import common_pb2
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.notify.v1 import notify_pb2_grpc
from signet.signer.v1 import signer_pb2
from tests.fixtures.identity import NotifyTestDouble, make_id_number
from tests.fixtures.signer import SignerHarness, signer_harness

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

PLATFORM_TOKEN = "platform-token-for-identity-process-test"
V = identity_pb2


@dataclass
class Running:
    address: str
    log: Path
    notify: NotifyTestDouble
    signer: SignerHarness
    signer_server: InProcessServer

    def stub(self, token: str) -> identity_pb2_grpc.IdentityServiceStub:
        return identity_pb2_grpc.IdentityServiceStub(
            create_channel(self.address, default_timeout=20, bearer_token=token)
        )


@pytest.fixture
def identity_process(
    softhsm_token: TokenInfo, pkcs11_pool: Pkcs11Pool, tmp_path: Path
) -> Iterator[Running]:
    notify = NotifyTestDouble()  # type: ignore[abstract]
    notify_server = InProcessServer(
        lambda s: notify_pb2_grpc.add_NotifyServiceServicer_to_server(notify, s),
        settings=settings_for_tests(service_name="notify"),
    )
    notify_server.start()
    providers = ProviderTestDouble()
    providers.start()
    port, metrics_port = free_port(), free_port()
    with signer_harness(pkcs11_pool, tmp_path) as harness:
        signer_server = harness.serve()
        env = dict(os.environ)
        env.update(softhsm_token.env)
        env.update(
            {
                "SIGNET_IDENTITY_GRPC_PORT": str(port),
                "SIGNET_IDENTITY_METRICS_PORT": str(metrics_port),
                "SIGNET_IDENTITY_DATABASE_URL": f"sqlite:///{tmp_path / 'identity.db'}",
                "SIGNET_IDENTITY_PKCS11_MODULE": str(softhsm_token.module_path),
                "SIGNET_IDENTITY_PKCS11_TOKEN_LABEL": softhsm_token.label,
                "SIGNET_IDENTITY_PKCS11_PIN": softhsm_token.pin,
                "SIGNET_IDENTITY_AUTH_MODE": "token",
                "SIGNET_IDENTITY_API_TOKEN_HASHES": f"ca-gateway:{hash_token(PLATFORM_TOKEN)}",
                "SIGNET_IDENTITY_SIGNER_TARGETS": signer_server.address,
                "SIGNET_IDENTITY_SIGNER_TOKEN": harness.tokens["identity"],
                "SIGNET_IDENTITY_NOTIFY_TARGETS": notify_server.address,
                "SIGNET_IDENTITY_PROVIDER_URL": providers.url,
                "SIGNET_IDENTITY_KAFKA_BOOTSTRAP": "",
                "SIGNET_IDENTITY_DRAIN_SECONDS": "1",
            }
        )
        log = tmp_path / "identity.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "signet.identity"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            address = f"127.0.0.1:{port}"
            assert wait_serving(address), log.read_text()
            yield Running(address, log, notify, harness, signer_server)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            notify_server.stop()
            providers.stop()


def test_identity_process_issues_grants_the_signer_accepts_once(identity_process: Running) -> None:
    platform = identity_process.stub(PLATFORM_TOKEN)
    keys = platform.GetGrantVerificationKeys(V.GetGrantVerificationKeysRequest()).keys
    assert len(keys) == 1, "the grant key was not created at start"
    tenant = platform.CreateTenant(V.CreateTenantRequest(name="Acme")).tenant.tenant_id
    token = platform.CreateApiCredential(
        V.CreateApiCredentialRequest(tenant_id=tenant, display_name="app", scopes=["sign"])
    ).token
    app = identity_process.stub(token)
    account = app.RegisterAccount(
        V.RegisterAccountRequest(
            tenant_id=tenant, person=V.PersonRegistration(name="张三明", phone="13812345678")
        )
    ).account
    started = app.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=account.account_id,
            person_id_phone=V.PersonIdPhoneInput(
                name="张三明", id_number=make_id_number(), phone="13812345678"
            ),
        )
    )
    verified = app.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id,
            one_time_code=identity_process.notify.last_code(),
        )
    )
    assert verified.account.state == V.ACCOUNT_STATE_VERIFIED
    ca = identity_process.signer.stub(identity_process.signer_server, "ca-gateway")
    key_id = ca.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING,
            owner=signer_pb2.KeyOwner(
                subscriber=signer_pb2.SubscriberOwner(
                    tenant_id=tenant, account_id=account.account_id
                )
            ),
        )
    ).key.key_id
    digest = hashlib.sha256(b"contract").digest()
    check = app.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account.account_id,
            key_id=key_id,
            digests=[common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest)],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    grant = app.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=check.willingness_id,
            one_time_code=identity_process.notify.last_code(),
        )
    ).grant
    request = signer_pb2.SignDigestRequest(
        key_id=key_id,
        digest=common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest),
        grant=grant.token,
    )
    assert ca.SignDigest(request).signature
    with pytest.raises(grpc.RpcError) as info:
        ca.SignDigest(request)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Without credentials, or with a revoked one, identity answers UNAUTHENTICATED.
    with pytest.raises(grpc.RpcError) as info:
        identity_pb2_grpc.IdentityServiceStub(
            grpc.insecure_channel(identity_process.address)
        ).GetAccount(V.GetAccountRequest(account_id=account.account_id), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    log = identity_process.log.read_text()
    assert "13812345678" not in log and make_id_number() not in log
