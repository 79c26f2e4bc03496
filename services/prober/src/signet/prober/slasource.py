"""Where per-minute outcomes come from: the prober's CSV, or Prometheus range queries.

Both give :data:`Outcomes`: for each (service, tenant) the month's minute index -> whether
the minute succeeded. Tenant ``""`` means platform-wide (the prober's calls, the recorded
SLI); a row naming a tenant applies to that tenant only.
"""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from signet.prober.sla import Month, parse_time

Outcomes = dict[tuple[str, str], dict[int, bool]]

CSV_FIELDS = ("minute", "service", "ok", "latency_ms", "detail", "tenant")
_TRUE = {"1", "true", "ok", "yes"}
_FALSE = {"0", "false", "failed", "no"}

# Prometheus refuses range queries over 11,000 points per series; a week of minutes is 10,080.
MAX_POINTS_PER_QUERY = 10_080
DEFAULT_QUERY = "max by (service) (signet:sla_minute_bad)"


class SourceError(Exception):
    """The input could not be read; the message says where and why."""


def _record(outcomes: Outcomes, key: tuple[str, str], index: int, ok: bool) -> None:
    minutes = outcomes.setdefault(key, {})
    # Several results for one minute (several probes): the minute is good only if all were.
    minutes[index] = minutes.get(index, True) and ok


def read_csv(stream: TextIO, month: Month, *, source: str = "csv") -> Outcomes:
    """Outcomes from per-minute rows ``minute,service,ok[,latency_ms,detail,tenant]``.

    ``minute`` is the minute's start (ISO 8601 with a zone); ``ok`` is 1/0 (or true/false).
    Rows outside ``month`` are skipped; a malformed row is an error naming its line.
    """
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or not {"minute", "service", "ok"} <= set(reader.fieldnames):
        raise SourceError(f"{source}: the header needs minute, service and ok columns")
    outcomes: Outcomes = {}
    for row in reader:
        line = reader.line_num
        try:
            when = parse_time(row["minute"])
        except ValueError as exc:
            raise SourceError(f"{source}:{line}: {exc}") from None
        flag = (row["ok"] or "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise SourceError(f"{source}:{line}: ok must be 1 or 0, not {row['ok']!r}")
        service = (row["service"] or "").strip()
        if not service:
            raise SourceError(f"{source}:{line}: the service is empty")
        index = month.minute_index(when)
        if index is None:
            continue
        tenant = (row.get("tenant") or "").strip()
        _record(outcomes, (service, tenant), index, flag in _TRUE)
    return outcomes


@dataclass
class PrometheusSource:
    """Range queries against Prometheus's HTTP API (``/api/v1/query_range``).

    ``query`` must give, per series labelled with ``service_label``, 1 for a bad minute and
    0 for a good one (the chart records ``signet:sla_minute_bad``). Each sample at time t
    describes the minute that ended at t (rate windows look back), so it lands in minute
    t - 60 s. Rule evaluations are not aligned to the minute, so Prometheus answers with the
    newest evaluation before t: a minute's verdict may come from a window up to one
    evaluation interval earlier. Where Prometheus has no sample (beyond its 5-minute
    lookback) the minute is missing, not bad. For minute-exact figures use the prober's CSV.
    """

    base_url: str
    query: str = DEFAULT_QUERY
    service_label: str = "service"
    timeout_seconds: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)

    def fetch(self, month: Month) -> Outcomes:
        """Every minute of ``month``, queried a week at a time."""
        outcomes: Outcomes = {}
        step = 60
        # Samples at month start + 60 s ... month end describe the month's minutes.
        first = month.start + timedelta(seconds=step)
        last = month.end
        chunk = timedelta(seconds=step * (MAX_POINTS_PER_QUERY - 1))
        start = first
        while start <= last:
            end = min(start + chunk, last)
            for series in self._query_range(start, end, step):
                self._collect(series, month, outcomes)
            start = end + timedelta(seconds=step)
        return outcomes

    def _collect(self, series: dict[str, Any], month: Month, outcomes: Outcomes) -> None:
        labels = series.get("metric", {})
        service = labels.get(self.service_label)
        if not service:
            raise SourceError(f"a series of the query has no {self.service_label!r} label")
        for stamp, value in series.get("values", []):
            bad = float(value)
            if math.isnan(bad):
                continue
            ended = datetime.fromtimestamp(float(stamp), tz=UTC)
            index = month.minute_index(ended - timedelta(seconds=60))
            if index is not None:
                _record(outcomes, (service, ""), index, bad < 0.5)

    def _query_range(self, start: datetime, end: datetime, step: int) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode(
            {
                "query": self.query,
                "start": f"{start.timestamp():.0f}",
                "end": f"{end.timestamp():.0f}",
                "step": str(step),
            }
        )
        url = f"{self.base_url.rstrip('/')}/api/v1/query_range?{params}"
        if not url.startswith(("http://", "https://")):
            raise SourceError("the Prometheus URL must be http:// or https://")
        request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 (scheme checked)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = _error_of(exc.read())
            raise SourceError(f"Prometheus answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise SourceError(f"Prometheus is unreachable: {exc}") from None
        except json.JSONDecodeError:
            raise SourceError("Prometheus did not answer with JSON") from None
        if body.get("status") != "success":
            raise SourceError(f"Prometheus refused the query: {body.get('error', 'unknown error')}")
        data = body.get("data", {})
        if data.get("resultType") != "matrix":
            raise SourceError("the query must return a range vector (matrix)")
        result: list[dict[str, Any]] = data.get("result", [])
        return result


def _error_of(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", "no detail"))
    except (json.JSONDecodeError, AttributeError):
        return "no detail"


def services_of(outcomes: Outcomes) -> list[str]:
    """Service names present, sorted."""
    return sorted({service for service, _ in outcomes})


def tenants_of(outcomes: Outcomes, extra: Iterable[str] = ()) -> list[str]:
    """Tenants named in rows or given, sorted (platform-wide ``""`` not included)."""
    return sorted({tenant for _, tenant in outcomes if tenant} | {t for t in extra if t})
