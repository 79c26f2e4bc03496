"""The prober process: a round of real calls every minute, results as metrics and CSV.

``signet-prober`` runs until SIGTERM, starting each round at the top of a minute (so each
minute of the SLA gets exactly one result per service). ``signet-prober --once`` runs one
round, prints the results and exits 1 when any service failed (``helm test`` uses it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import grpc

from signet.common.channels import TlsConfig, create_channel
from signet.common.logging import configure_logging
from signet.common.metrics import MetricsServer
from signet.prober.checks import (
    CaGatewayCheck,
    Check,
    EvidenceCheck,
    HealthCheck,
    IdentityCheck,
    NotifyCheck,
    SignerCheck,
)
from signet.prober.config import ProberSettings
from signet.prober.probe import CsvResults, Outcome, Prober, ProberMetrics, ServiceProbe


def build_probes(
    settings: ProberSettings, channel_for: dict[str, grpc.Channel]
) -> list[ServiceProbe]:
    """The checks of every service that has a channel (health first, then its API call)."""
    api: dict[str, Check] = {}
    if "identity" in channel_for:
        api["identity"] = IdentityCheck(channel_for["identity"])
    if "ca-gateway" in channel_for:
        api["ca-gateway"] = CaGatewayCheck(channel_for["ca-gateway"], settings.ca_gateway_http_url)
    if "signer" in channel_for:
        api["signer"] = SignerCheck(channel_for["signer"], settings.signer_key_request_id)
    if "evidence" in channel_for:
        api["evidence"] = EvidenceCheck(channel_for["evidence"])
    if "notify" in channel_for:
        api["notify"] = NotifyCheck(channel_for["notify"])
    return [
        ServiceProbe(name, [HealthCheck(channel_for[name]), check]) for name, check in api.items()
    ]


def open_channels(settings: ProberSettings) -> dict[str, grpc.Channel]:
    """One channel per configured service, presenting the prober's credentials."""
    targets = {
        "identity": settings.identity_targets,
        "ca-gateway": settings.ca_gateway_targets,
        "signer": settings.signer_targets,
        "evidence": settings.evidence_targets,
        "notify": settings.notify_targets,
    }
    token = settings.service_token.get_secret_value() or None
    tls = TlsConfig.from_settings(settings)
    return {
        name: create_channel(
            target, default_timeout=settings.timeout_seconds, tls=tls, bearer_token=token
        )
        for name, target in targets.items()
        if target
    }


def print_outcomes(outcomes: Sequence[Outcome]) -> None:
    """One line per service, for a person or a test pod's log."""
    for o in outcomes:
        verdict = "ok    " if o.ok else "FAILED"
        print(f"{verdict} {o.service:<11} {o.latency_seconds * 1000:7.0f} ms  {o.detail}")


def run_forever(prober: Prober, interval: float, stop: threading.Event) -> None:
    """A round at the start of each interval (the top of each minute by default)."""
    while not stop.is_set():
        prober.round()
        now = time.time()
        stop.wait(interval - now % interval)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``signet-prober``."""
    parser = argparse.ArgumentParser(prog="signet-prober", description=__doc__)
    parser.add_argument("--once", action="store_true", help="one round, print, exit 1 on failure")
    args = parser.parse_args(argv)
    settings = ProberSettings()
    configure_logging(settings.service_name, settings.log_level)
    channels = open_channels(settings)
    if not channels:
        print("signet-prober: no SIGNET_PROBER_<SERVICE>_TARGETS configured", file=sys.stderr)
        sys.exit(2)
    csv_results = CsvResults(Path(settings.csv_dir)) if settings.csv_dir and not args.once else None
    prober = Prober(
        build_probes(settings, channels), settings.timeout_seconds, ProberMetrics(), csv_results
    )
    try:
        if args.once:
            outcomes = prober.round()
            print_outcomes(outcomes)
            sys.exit(0 if all(o.ok for o in outcomes) else 1)
        server = MetricsServer(settings.metrics_host, settings.metrics_port)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            run_forever(prober, settings.interval_seconds, stop)
        finally:
            server.stop()
    finally:
        for channel in channels.values():
            channel.close()
