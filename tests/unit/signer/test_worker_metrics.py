"""How the signer workers count the SignDigest calls the front coalesces."""

from __future__ import annotations

from typing import cast

import grpc
from prometheus_client import CollectorRegistry

from signet.common.metrics import GrpcServerMetrics
from signet.signer.service import Signer
from signet.signer.servicer import (
    FRONT_WAITED_HEADER,
    SIGN_DIGEST_METHOD,
    SignerWorkerServicer,
    _front_waits,
)


def test_front_waits_are_read_per_request_in_order() -> None:
    metadata = (("authorization", "Bearer t"), (FRONT_WAITED_HEADER, "1500,0,250000"))
    assert _front_waits(metadata, 3) == [0.0015, 0.0, 0.25]


def test_front_waits_that_do_not_fit_count_as_none() -> None:
    for header in ("", "1,2", "1,2,3,4", "1,-2,3", "1,x,3", "1, 2,3"):
        assert _front_waits(((FRONT_WAITED_HEADER, header),), 3) == [0.0, 0.0, 0.0]
    assert _front_waits((), 2) == [0.0, 0.0]


def test_each_request_counts_as_a_sign_digest_call_with_its_wait() -> None:
    registry = CollectorRegistry()
    metrics = GrpcServerMetrics.create("signer", registry)
    worker = SignerWorkerServicer(cast(Signer, object()), metrics)
    ok, not_found = grpc.StatusCode.OK.value[0], grpc.StatusCode.NOT_FOUND.value[0]
    worker._count([ok, not_found, ok], 0.01, [0.5, 0.0, 0.25])

    def sample(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, {"method": SIGN_DIGEST_METHOD, **labels})
        return value or 0.0

    assert sample("signet_signer_grpc_requests_total", code="OK") == 2
    assert sample("signet_signer_grpc_requests_total", code="NOT_FOUND") == 1
    assert sample("signet_signer_grpc_request_duration_seconds_count") == 3
    # 0.51 + 0.01 + 0.26: the call's own time plus each request's wait in the front.
    assert abs(sample("signet_signer_grpc_request_duration_seconds_sum") - 0.78) < 1e-9
