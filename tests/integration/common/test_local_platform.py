"""``make run`` / ``make status`` / ``make stop`` as a newcomer uses them, on shifted ports.

The real thing: a SoftHSM token, a Kafka broker from its Maven artifacts and the five
service processes, each migrated and answering SERVING on gRPC health and /metrics; stop
leaves no process, pid file or broker behind.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.channels import create_channel
from signet.common.local import platform
from signet.common.local.processes import alive
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.fixtures.platform import pick_port_offset, platform_cli, running_processes

pytestmark = [pytest.mark.kafka, pytest.mark.softhsm, pytest.mark.slow]


def _pick_offset(monkeypatch: pytest.MonkeyPatch) -> int:
    return pick_port_offset(monkeypatch, range(3000, 9000, 500))


def _cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return platform_cli(command, env)


def _check_the_ca_was_bootstrapped() -> None:
    """Services call each other with their own tokens: the CA made its keys in the signer."""
    (ca,) = [s for s in platform.services() if s.name == "ca-gateway"]
    admin = platform.service_tokens()[platform.LOCAL_ADMIN]
    with create_channel(ca.address, default_timeout=10, bearer_token=admin) as channel:
        reply = ca_gateway_pb2_grpc.CaGatewayServiceStub(channel).GetCaCertificates(
            ca_gateway_pb2.GetCaCertificatesRequest()
        )
    roles = {c.role for c in reply.certificates}
    assert {ca_gateway_pb2.CA_ROLE_ROOT, ca_gateway_pb2.CA_ROLE_ISSUING} <= roles
    assert ca_gateway_pb2.CA_ROLE_OCSP_RESPONDER in roles
    with (
        create_channel(ca.address, default_timeout=10) as channel,
        pytest.raises(grpc.RpcError) as denied,
    ):
        ca_gateway_pb2_grpc.CaGatewayServiceStub(channel).GetCaCertificates(
            ca_gateway_pb2.GetCaCertificatesRequest()
        )
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    _check_tenant_credentials_reach_the_ca(ca.address, admin)
    crl_url = f"http://127.0.0.1:{platform.http_port('ca-gateway')}/crl/issuing-1.crl"
    with urllib.request.urlopen(crl_url, timeout=10) as reply_crl:
        crl = x509.load_der_x509_crl(reply_crl.read())
    issuing = next(c for c in reply.certificates if c.role == ca_gateway_pb2.CA_ROLE_ISSUING)
    assert crl.is_signature_valid(x509.load_der_x509_certificate(issuing.der).public_key())  # type: ignore[arg-type]


def _check_tenant_credentials_reach_the_ca(ca_address: str, admin: str) -> None:
    """A tenant's API credential from identity is accepted by the CA gateway, for its tenant."""
    (identity,) = [s for s in platform.services() if s.name == "identity"]
    with create_channel(identity.address, default_timeout=10, bearer_token=admin) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        tenant = stub.CreateTenant(identity_pb2.CreateTenantRequest(name="Platform Test Tenant"))
        created = stub.CreateApiCredential(
            identity_pb2.CreateApiCredentialRequest(
                tenant_id=tenant.tenant.tenant_id, display_name="platform test", scopes=["sign"]
            )
        )
    with create_channel(ca_address, default_timeout=10, bearer_token=created.token) as channel:
        ca_stub = ca_gateway_pb2_grpc.CaGatewayServiceStub(channel)
        own = ca_stub.ListCertificates(
            ca_gateway_pb2.ListCertificatesRequest(tenant_id=tenant.tenant.tenant_id)
        )
        assert list(own.certificates) == []
        with pytest.raises(grpc.RpcError) as other:
            ca_stub.ListCertificates(ca_gateway_pb2.ListCertificatesRequest(tenant_id="t-other"))
        assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_run_status_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offset = _pick_offset(monkeypatch)
    env = dict(os.environ)
    env["SIGNET_STATE_DIR"] = str(tmp_path / "state")
    env["SIGNET_LOCAL_PORT_OFFSET"] = str(offset)
    monkeypatch.setenv("SIGNET_STATE_DIR", env["SIGNET_STATE_DIR"])
    monkeypatch.setenv("SIGNET_LOCAL_PORT_OFFSET", str(offset))
    try:
        started = _cli("start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        for svc in platform.services():
            assert svc.grpc_port == dict((b[0], b[2]) for b in platform._BASE)[svc.name] + offset
            assert platform.health_status(svc.address) == "SERVING", svc.name
            url = f"http://127.0.0.1:{svc.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
            prefix = "signet_" + svc.package
            assert f"# TYPE {prefix}_grpc_requests_total counter" in text
            assert (tmp_path / "state" / "db" / f"{svc.name}.db").exists()
        again = _cli("start", env)  # idempotent: nothing new is spawned
        assert again.returncode == 0, again.stderr
        status = _cli("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("SERVING") == 5
        _check_the_ca_was_bootstrapped()
        processes = running_processes(tmp_path / "state")
        assert "sandbox" in processes
        pids = list(processes.values())
    finally:
        stopped = _cli("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    # Exited: gone, or a zombie only its new parent (init) has still to collect.
    assert [pid for pid in pids if alive(pid)] == []
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
    assert not platform._broker().is_running()
    assert _cli("status", env).returncode != 0
