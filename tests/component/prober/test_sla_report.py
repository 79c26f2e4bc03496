"""signet-sla end to end: CSV files and a real HTTP server answering like Prometheus.

PrometheusQueryRangeTestDouble is a local HTTP server implementing the query_range API's
request and response shape (matrix result, status/error envelope) over a bad-minute series
it holds; it checks the step and time range of every request it gets.
"""

from __future__ import annotations

import csv
import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from signet.prober.slacli import main

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_MINUTES = 30 * 1440


class PrometheusQueryRangeTestDouble:
    """Answers /api/v1/query_range for bad-minute series: {service: set of bad minute indexes}."""

    def __init__(self, bad: dict[str, set[int]], *, fail_with: str | None = None) -> None:
        self.bad = bad
        self.fail_with = fail_with
        self.requests: list[dict[str, str]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                double.requests.append(params)
                if url.path != "/api/v1/query_range":
                    self._send(404, {"status": "error", "error": "not found"})
                elif double.fail_with:
                    self._send(
                        400, {"status": "error", "errorType": "bad_data", "error": double.fail_with}
                    )
                else:
                    self._send(200, double.answer(params))

            def _send(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, params: dict[str, str]) -> dict[str, Any]:
        start, end, step = int(params["start"]), int(params["end"]), int(params["step"])
        assert step == 60
        assert (end - start) // step + 1 <= 11_000, "Prometheus refuses over 11,000 points"
        month_start = int(MONTH_START.timestamp())
        result = []
        for service, bad in sorted(self.bad.items()):
            values = []
            for t in range(start, end + 1, step):
                minute = (t - 60 - month_start) // 60  # the sample at t covers the minute before
                values.append([t, "1" if minute in bad else "0"])
            result.append({"metric": {"service": service}, "values": values})
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}

    def __enter__(self) -> PrometheusQueryRangeTestDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def probes(tmp_path: Path) -> Path:
    """A prober CSV for November 2026: signer down 50 minutes, ca-gateway a lone bad minute,
    tenant t-acme's own calls failing 500 more minutes, and a maintenance-covered outage."""
    path = tmp_path / "probes-2026-11.csv"
    bad_signer = set(range(1000, 1050))
    bad_ca = {5000}
    bad_acme = set(range(20_000, 20_500))
    maintenance = set(range(30_000, 30_120))
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["minute", "service", "ok", "latency_ms", "detail", "tenant"])
        for i in range(MONTH_MINUTES):
            when = (MONTH_START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            down = i in maintenance
            writer.writerow([when, "signer", int(i not in bad_signer and not down), 12, "", ""])
            writer.writerow([when, "ca-gateway", int(i not in bad_ca and not down), 30, "", ""])
            if i in bad_acme:
                writer.writerow([when, "signer", 0, 10_000, "DEADLINE_EXCEEDED", "t-acme"])
        # A row of another month is ignored.
        writer.writerow(["2026-12-01T00:00:00Z", "signer", 0, 1, "", ""])
    return path


def test_csv_report_per_service_and_tenant_with_credits(
    probes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fees = tmp_path / "fees.csv"
    fees.write_text("tenant,monthly_fee\nt-acme,12000.00\nt-beta,800\n")
    code = main(
        [
            "--month",
            "2026-11",
            "--csv",
            str(probes),
            "--tenants",
            str(fees),
            "--format",
            "json",
            "--maintenance",
            "2026-11-21T20:00Z/2026-11-21T22:00Z",
        ]
    )
    assert code == 0
    rows = {(r["tenant"], r["service"]): r for r in json.loads(capsys.readouterr().out)}
    signer = rows[("*", "signer")]
    assert signer["unavailable_minutes"] == 50
    assert signer["excluded_minutes"] == 120
    assert signer["availability_percent"] == "99.8842"
    assert signer["credit_percent"] == 10
    assert rows[("*", "ca-gateway")]["unavailable_minutes"] == 0
    assert rows[("*", "ca-gateway")]["bad_minutes"] == 1
    assert rows[("*", "ALL")]["unavailable_minutes"] == 50
    acme = rows[("t-acme", "ALL")]
    assert acme["unavailable_minutes"] == 550
    assert acme["credit_percent"] == 25
    assert acme["credit_amount"] == "3000.00"
    beta = rows[("t-beta", "ALL")]
    assert beta["credit_percent"] == 10
    assert beta["credit_amount"] == "80.00"


def test_without_the_maintenance_window_the_outage_counts(
    probes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--month", "2026-11", "--csv", str(probes), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    signer = next(r for r in rows if r["service"] == "signer" and r["tenant"] == "*")
    assert signer["unavailable_minutes"] == "170"


def test_text_report_explains_the_rules(probes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--month", "2026-11", "--csv", str(probes)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["month", "tenant", "service"]
    assert "lasting over one" in out


def test_prometheus_report_from_range_queries() -> None:
    bad = {"signer": set(range(100, 145)), "evidence": {7, 9, 11}, "identity": set()}
    with PrometheusQueryRangeTestDouble(bad) as prometheus:
        code = main(["--month", "2026-11", "--prometheus", prometheus.url, "--format", "json"])
        assert code == 0
    # 30 days of minutes in weekly chunks: five requests covering the month exactly.
    assert len(prometheus.requests) == 5
    starts = sorted(int(r["start"]) for r in prometheus.requests)
    assert starts[0] == int(MONTH_START.timestamp()) + 60
    assert (
        max(int(r["end"]) for r in prometheus.requests)
        == int(MONTH_START.timestamp()) + MONTH_MINUTES * 60
    )
    assert all(
        r["query"] == "max by (service) (signet:sla_minute_bad)" for r in prometheus.requests
    )


def test_prometheus_rows_match_the_constructed_month(capsys: pytest.CaptureFixture[str]) -> None:
    bad = {"signer": set(range(100, 145)), "evidence": {7, 9, 11}}
    with PrometheusQueryRangeTestDouble(bad) as prometheus:
        assert main(["--month", "2026-11", "--prometheus", prometheus.url, "--format", "json"]) == 0
    rows = {r["service"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["signer"]["unavailable_minutes"] == 45
    assert rows["signer"]["credit_percent"] == 10
    assert rows["signer"]["missing_minutes"] == 0
    assert rows["evidence"]["unavailable_minutes"] == 0
    assert rows["evidence"]["credit_percent"] == 0


def test_prometheus_error_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    with PrometheusQueryRangeTestDouble({}, fail_with="parse error at char 5") as prometheus:
        code = main(["--month", "2026-11", "--prometheus", prometheus.url, "--query", "max(("])
    assert code == 2
    assert "parse error at char 5" in capsys.readouterr().err


def test_malformed_csv_row_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "minute,service,ok\n2026-11-01T00:00:00Z,signer,1\n2026-11-01T00:01:00Z,signer,maybe\n"
    )
    assert main(["--month", "2026-11", "--csv", str(path)]) == 2
    assert "bad.csv:3: ok must be 1 or 0" in capsys.readouterr().err
