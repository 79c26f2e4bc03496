"""One probing round over every configured service, and where its results go.

Each round calls every service once (all of its checks, in order, each with the deadline),
the services side by side, so that a round of timeouts still ends inside its minute and
the minute is recorded as bad rather than lost; a service's minute succeeded when all its
checks did. Results become Prometheus metrics
(``signet_prober_*``, labelled ``probed_service`` so they do not clash with the scrape's
``service`` label) and one CSV row per service and minute (the input of ``signet-sla``).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

from signet.common import metrics
from signet.prober.checks import Check, ProbeFailed
from signet.prober.slasource import CSV_FIELDS

_log = logging.getLogger("signet.prober")


@dataclass(frozen=True)
class ServiceProbe:
    """The checks of one service."""

    service: str
    checks: Sequence[Check]


@dataclass(frozen=True)
class Outcome:
    """One service's result for one minute."""

    minute: datetime
    service: str
    ok: bool
    latency_seconds: float
    # "<check>: <reason>" of the first failed check; empty on success.
    detail: str = ""


class ProberMetrics:
    """signet_prober_* collectors."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.checks = metrics.counter(
            "signet_prober_checks_total",
            "Probe calls by probed service, check and result (success, failure).",
            ("probed_service", "check", "result"),
            registry,
        )
        self.duration = metrics.histogram(
            "signet_prober_check_duration_seconds",
            "Duration of each probe call.",
            ("probed_service", "check"),
            registry,
        )
        self.minute_success = metrics.gauge(
            "signet_prober_minute_success",
            "1 when every check of the service succeeded in the last round, else 0.",
            ("probed_service",),
            registry,
        )
        self.minutes = metrics.counter(
            "signet_prober_minutes_total",
            "Probed minutes by service and outcome (good, bad).",
            ("probed_service", "outcome"),
            registry,
        )
        self.last_round = metrics.gauge(
            "signet_prober_last_round_timestamp_seconds",
            "When the last round finished (Unix seconds).",
            (),
            registry,
        )


class CsvResults:
    """Appends rows to ``<dir>/probes-YYYY-MM.csv`` (one file per month, header once)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, minute: datetime) -> Path:
        """The month's file."""
        return self._dir / f"probes-{minute:%Y-%m}.csv"

    def write(self, outcomes: Sequence[Outcome]) -> None:
        """Append the round's rows."""
        by_file: dict[Path, list[Outcome]] = {}
        for outcome in outcomes:
            by_file.setdefault(self.path_for(outcome.minute), []).append(outcome)
        for path, rows in by_file.items():
            new = not path.exists()
            with path.open("a", newline="") as stream:
                writer = csv.writer(stream)
                if new:
                    writer.writerow(CSV_FIELDS)
                for o in rows:
                    writer.writerow(
                        [
                            o.minute.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            o.service,
                            int(o.ok),
                            round(o.latency_seconds * 1000),
                            o.detail,
                            "",
                        ]
                    )


class Prober:
    """Runs rounds over ``probes``; results go to metrics and, when given, the CSV."""

    def __init__(
        self,
        probes: Sequence[ServiceProbe],
        timeout: float,
        prober_metrics: ProberMetrics,
        csv_results: CsvResults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._probes = probes
        self._timeout = timeout
        self._metrics = prober_metrics
        self._csv = csv_results
        self._clock = clock

    def round(self) -> list[Outcome]:
        """Probe every service once; the minute is the one the round started in."""
        started = self._clock()
        minute = datetime.fromtimestamp(started - started % 60, tz=UTC)
        with ThreadPoolExecutor(max_workers=max(1, len(self._probes))) as pool:
            outcomes = list(pool.map(lambda probe: self._probe(minute, probe), self._probes))
        if self._csv is not None:
            try:
                self._csv.write(outcomes)
            except OSError as exc:
                _log.error("cannot write probe results", extra={"error": type(exc).__name__})
        self._metrics.last_round.set(self._clock())
        return outcomes

    def _probe(self, minute: datetime, probe: ServiceProbe) -> Outcome:
        began = time.perf_counter()
        detail = ""
        for check in probe.checks:
            t0 = time.perf_counter()
            try:
                check.run(self._timeout)
                result = "success"
            except ProbeFailed as failed:
                result, detail = "failure", f"{check.name}: {failed}"
            except Exception as exc:  # noqa: BLE001  (any escape is a failed call, never a crash)
                result, detail = "failure", f"{check.name}: {type(exc).__name__}"
            self._metrics.duration.labels(probe.service, check.name).observe(
                time.perf_counter() - t0
            )
            self._metrics.checks.labels(probe.service, check.name, result).inc()
            if detail:
                break
        ok = not detail
        self._metrics.minute_success.labels(probe.service).set(1 if ok else 0)
        self._metrics.minutes.labels(probe.service, "good" if ok else "bad").inc()
        if not ok:
            _log.warning("probe failed", extra={"probed_service": probe.service, "detail": detail})
        return Outcome(minute, probe.service, ok, time.perf_counter() - began, detail)
