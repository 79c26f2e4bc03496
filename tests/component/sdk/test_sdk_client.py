"""The SDK client against two in-process identity replicas: balancing, ids, retries, errors.

The replicas are the generated IdentityService base with CreateTenant and GetTenant
implemented by the test: they record which replica answered and the request ids they saw,
and can be told to answer UNAVAILABLE a number of times first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from signet.common.channels import RetryPolicy
from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.sdk import Endpoints, Signet, SignetError


@dataclass
class Replica(identity_pb2_grpc.IdentityServiceServicer):
    """CreateTenant recording request ids; UNAVAILABLE for the first ``fail`` calls."""

    name: str
    fail: int = 0
    request_ids: list[str] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def CreateTenant(
        self, request: identity_pb2.CreateTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CreateTenantResponse:
        with self.lock:
            self.request_ids.append(request.request_id)
            self.deadlines.append(context.time_remaining())
            if self.fail > 0:
                self.fail -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "replica restarting")
        return identity_pb2.CreateTenantResponse(
            tenant=identity_pb2.Tenant(tenant_id=f"t-{self.name}", name=request.name)
        )

    def GetTenant(
        self, request: identity_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetTenantResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, "tenant not found")


@dataclass
class Cluster:
    replicas: list[Replica]
    servers: list[InProcessServer]

    def client(self, **kwargs: object) -> Signet:
        addresses = [s.address for s in self.servers]
        endpoints = Endpoints.create(
            {
                "identity": addresses,
                "ca-gateway": addresses,
                "signer": addresses,
                "evidence": addresses,
                "notify": addresses,
            }
        )
        return Signet(endpoints, None, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    replicas = [Replica("a"), Replica("b")]  # type: ignore[abstract]
    servers = []
    for replica in replicas:

        def register(server: grpc.Server, replica: Replica = replica) -> None:
            identity_pb2_grpc.add_IdentityServiceServicer_to_server(replica, server)

        server = InProcessServer(
            register,
            service_names=["signet.identity.v1.IdentityService"],
            settings=settings_for_tests(service_name="identity"),
        )
        server.start()
        servers.append(server)
    try:
        yield Cluster(replicas, servers)
    finally:
        for server in servers:
            server.stop()


def test_calls_are_spread_over_every_replica_round_robin(cluster: Cluster) -> None:
    with cluster.client() as client:
        answers = {
            client.identity.CreateTenant(
                identity_pb2.CreateTenantRequest(name="x")
            ).tenant.tenant_id
            for _ in range(12)
        }
    assert answers == {"t-a", "t-b"}
    assert all(len(r.request_ids) >= 2 for r in cluster.replicas)


def test_every_call_gets_a_deadline_and_a_fresh_request_id(cluster: Cluster) -> None:
    with cluster.client(timeout=7.0) as client:
        for _ in range(4):
            client.identity.CreateTenant(identity_pb2.CreateTenantRequest(name="x"))
        client.identity.CreateTenant(
            identity_pb2.CreateTenantRequest(name="x", request_id="mine"), timeout=3.0
        )
    seen = [i for r in cluster.replicas for i in r.request_ids]
    deadlines = [d for r in cluster.replicas for d in r.deadlines]
    assert "mine" in seen
    generated = [i for i in seen if i != "mine"]
    assert len(set(generated)) == 4
    assert all(i.startswith("sdk-") for i in generated)
    assert all(d is not None and 0 < d <= 7.5 for d in deadlines)


def test_unavailable_is_retried_with_the_same_request_id(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        replica.fail = 2
    retry = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05)
    with cluster.client(retry=retry) as client:
        reply = client.identity.CreateTenant(identity_pb2.CreateTenantRequest(name="x"))
    assert reply.tenant.tenant_id in {"t-a", "t-b"}
    seen = [i for r in cluster.replicas for i in r.request_ids]
    assert len(seen) >= 3
    assert len(set(seen)) == 1


def test_failed_calls_raise_signet_error_with_code_message_and_method(cluster: Cluster) -> None:
    with cluster.client() as client, pytest.raises(SignetError) as info:
        client.identity.GetTenant(identity_pb2.GetTenantRequest(tenant_id="t-none"))
    assert info.value.code is grpc.StatusCode.NOT_FOUND
    assert info.value.message == "tenant not found"
    assert info.value.method == "GetTenant"
    assert not info.value.retryable


def test_unavailable_after_the_retry_budget_is_a_retryable_signet_error(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        replica.fail = 100
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    with cluster.client(retry=retry) as client, pytest.raises(SignetError) as info:
        client.identity.CreateTenant(identity_pb2.CreateTenantRequest(name="x"))
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert info.value.retryable


def test_endpoints_need_every_service_and_take_env_overrides() -> None:
    with pytest.raises(ValueError, match="notify"):
        Endpoints.create(
            {s: ["127.0.0.1:1"] for s in ("identity", "ca-gateway", "signer", "evidence")}
        )
    base = Endpoints.create(
        {s: "127.0.0.1:1" for s in ("identity", "ca-gateway", "signer", "evidence", "notify")}
    )
    changed = base.with_env({"SIGNET_SDK_CA_GATEWAY_TARGETS": "127.0.0.1:5,127.0.0.1:6"})
    assert changed.ca_gateway == ("127.0.0.1:5", "127.0.0.1:6")
    assert changed.identity == ("127.0.0.1:1",)
