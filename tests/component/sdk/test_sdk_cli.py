"""The ``signet`` command against an in-process identity: flags, JSON output, clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.sdk.cli import main


class Identity(identity_pb2_grpc.IdentityServiceServicer):
    """CreateTenant answers with the name; GetTenant knows no tenant; records the token."""

    def __init__(self) -> None:
        self.authorization: list[str] = []

    def CreateTenant(
        self, request: identity_pb2.CreateTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CreateTenantResponse:
        metadata = dict(context.invocation_metadata())
        self.authorization.append(str(metadata.get("authorization", "")))
        return identity_pb2.CreateTenantResponse(
            tenant=identity_pb2.Tenant(tenant_id="t-1", name=request.name)
        )

    def GetTenant(
        self, request: identity_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetTenantResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, "tenant not found")


@pytest.fixture
def identity() -> Iterator[tuple[Identity, list[str]]]:
    servicer = Identity()  # type: ignore[abstract]
    server = InProcessServer(
        lambda s: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, s),
        service_names=["signet.identity.v1.IdentityService"],
        settings=settings_for_tests(service_name="identity"),
    )
    server.start()
    flags = []
    for name in ("identity", "ca-gateway", "signer", "evidence", "notify"):
        flags += [f"--{name}", server.address]
    try:
        yield servicer, [*flags, "--token", "cli-token", "--timeout", "5"]
    finally:
        server.stop()


def test_tenant_create_prints_the_reply_as_json(
    identity: tuple[Identity, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, flags = identity
    assert main([*flags, "tenant", "create", "Acme"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tenant"] == {"tenant_id": "t-1", "name": "Acme"}
    assert servicer.authorization == ["Bearer cli-token"]


def test_a_failed_call_is_one_clear_line_and_exit_status_1(
    identity: tuple[Identity, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, flags = identity
    assert main([*flags, "tenant", "get", "t-none"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: NOT_FOUND: tenant not found (GetTenant)"
    assert "Traceback" not in captured.err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["tenant"])
    assert usage.value.code == 2
