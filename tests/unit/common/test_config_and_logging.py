"""Settings come from SIGNET_<SVC>_* variables; logs are JSON with trace ids and no PII."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from signet.common.logging import JsonFormatter
from signet.signer.config import SignerSettings


def test_service_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNET_SIGNER_GRPC_PORT", "6000")
    monkeypatch.setenv("SIGNET_SIGNER_PKCS11_PIN", "0000")
    monkeypatch.setenv("SIGNET_IDENTITY_GRPC_PORT", "7000")
    settings = SignerSettings()
    assert settings.grpc_port == 6000
    assert settings.grpc_address == "127.0.0.1:6000"
    assert settings.pkcs11_pin.get_secret_value() == "0000"
    assert "0000" not in repr(settings)


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNET_SIGNER_GRPC_PORT", "70000")
    with pytest.raises(ValidationError):
        SignerSettings()


def _log_line(logger: logging.Logger, stream: io.StringIO) -> dict[str, object]:
    line = stream.getvalue().strip().splitlines()[-1]
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_log_lines_are_json_with_trace_ids_and_masked_pii() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("signer"))
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("test")
    try:
        with tracer.start_as_current_span("op") as span:
            logger.info("verified %s", "330102199001011234", extra={"phone": "13812345678"})
            ctx = span.get_span_context()
        record = _log_line(logger, stream)
        assert record["service"] == "signer"
        assert record["level"] == "INFO"
        assert record["trace_id"] == format(ctx.trace_id, "032x")
        assert record["span_id"] == format(ctx.span_id, "016x")
        assert record["message"] == "verified 3301**********1234"
        assert record["phone"] == "138****5678"
        logger.info("outside")
        assert "trace_id" not in _log_line(logger, stream)
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        logger.removeHandler(handler)
