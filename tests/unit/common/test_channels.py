"""Target resolution and client settings of the channel factory (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet.common.channels import RetryPolicy, TlsConfig, resolve_target
from signet.common.config import ServiceSettings


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("signer:50051", "signer:50051"),
        ("dns:///signer.signet.svc:50051", "dns:///signer.signet.svc:50051"),
        ("ipv4:10.0.0.1:1,10.0.0.2:1", "ipv4:10.0.0.1:1,10.0.0.2:1"),
        (["127.0.0.1:50051", "127.0.0.1:50061"], "ipv4:127.0.0.1:50051,127.0.0.1:50061"),
        ("127.0.0.1:50051, 127.0.0.1:50061", "ipv4:127.0.0.1:50051,127.0.0.1:50061"),
        (["[::1]:1", "[::1]:2"], "ipv6:[::1]:1,[::1]:2"),
        (["127.0.0.1:1", "127.0.0.1:1"], "ipv4:127.0.0.1:1"),
    ],
)
def test_targets_become_one_grpc_target(targets: str | list[str], expected: str) -> None:
    assert resolve_target(targets) == expected


def test_host_names_in_a_list_are_resolved_to_addresses() -> None:
    assert resolve_target(["localhost:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"


@pytest.mark.parametrize(
    "targets", [[], ",", ["127.0.0.1:1", "[::1]:2"], ["127.0.0.1", "127.0.0.2:1"]]
)
def test_unusable_target_lists_are_rejected(targets: str | list[str]) -> None:
    with pytest.raises(ValueError, match="target"):
        resolve_target(targets)


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(initial_backoff=-1)


def test_tls_from_settings_only_in_mtls_mode(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_bytes(name.encode())
    mtls = ServiceSettings(
        auth_mode="mtls",
        tls_client_ca_file=str(tmp_path / "ca.pem"),
        tls_cert_file=str(tmp_path / "cert.pem"),
        tls_key_file=str(tmp_path / "key.pem"),
    )
    assert TlsConfig.from_settings(mtls) == TlsConfig(
        root_certificates=b"ca.pem", certificate_chain=b"cert.pem", private_key=b"key.pem"
    )
    assert TlsConfig.from_settings(ServiceSettings(auth_mode="token")) is None
