"""``signet-sla``: the monthly SLA report, per service and per tenant, with service credits.

Reads per-minute outcomes from the prober's CSV files or from Prometheus (range queries on
the chart's ``signet:sla_minute_bad``), applies :mod:`signet.prober.sla` and prints a table
(text, CSV or JSON) customers' credit claims can be checked against::

    signet-sla --month 2026-11 --csv probes-2026-11.csv --tenants fees.csv
        --maintenance 2026-11-03T02:00Z/2026-11-03T04:00Z

Rows: one per service, ``ALL`` (a minute is bad when any service's was), and, for each tenant,
the same with that tenant's own rows added to the platform-wide ones. The credit is the
tenant's ``ALL`` row applied to its monthly fee.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from signet.prober.sla import Availability, MaintenanceWindow, Month, compute, merge, parse_time
from signet.prober.slasource import (
    DEFAULT_QUERY,
    Outcomes,
    PrometheusSource,
    SourceError,
    read_csv,
    services_of,
    tenants_of,
)

ALL_SERVICES = "ALL"
COLUMNS = (
    "month",
    "tenant",
    "service",
    "total_minutes",
    "unavailable_minutes",
    "bad_minutes",
    "excluded_minutes",
    "missing_minutes",
    "availability_percent",
    "credit_percent",
    "monthly_fee",
    "credit_amount",
)


@dataclass(frozen=True)
class ReportRow:
    """One line of the report."""

    tenant: str
    service: str
    availability: Availability
    fee: Decimal | None = None

    @property
    def credit_amount(self) -> Decimal | None:
        """The credit in the fee's currency, rounded to cents."""
        if self.fee is None:
            return None
        amount = self.fee * Decimal(self.availability.credit_percent) / Decimal(100)
        return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, str | int]:
        """The row as report columns (availability with 4 decimals, truncated, never rounded up)."""
        a = self.availability
        return {
            "month": str(a.month),
            "tenant": self.tenant or "*",
            "service": self.service,
            "total_minutes": a.total_minutes,
            "unavailable_minutes": a.unavailable_minutes,
            "bad_minutes": a.bad_minutes,
            "excluded_minutes": a.excluded_minutes,
            "missing_minutes": a.missing_minutes,
            "availability_percent": format_percent(a.percent),
            "credit_percent": a.credit_percent,
            "monthly_fee": "" if self.fee is None else str(self.fee),
            "credit_amount": "" if self.credit_amount is None else str(self.credit_amount),
        }


def format_percent(percent: Fraction, places: int = 4) -> str:
    """``percent`` truncated to ``places`` decimals: 99.89999 shows as 99.8999, not 99.9000."""
    scale = 10**places
    truncated = Fraction(int(percent * scale), scale)
    return f"{Decimal(truncated.numerator) / Decimal(truncated.denominator):.{places}f}"


def read_fees(path: Path) -> dict[str, Decimal | None]:
    """``tenant[,monthly_fee]`` rows (header required); a fee is a decimal amount."""
    fees: dict[str, Decimal | None] = {}
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or "tenant" not in reader.fieldnames:
            raise SourceError(f"{path}: the header needs a tenant column")
        for row in reader:
            tenant = (row["tenant"] or "").strip()
            if not tenant:
                raise SourceError(f"{path}:{reader.line_num}: the tenant is empty")
            raw = (row.get("monthly_fee") or "").strip()
            try:
                fee = Decimal(raw) if raw else None
            except InvalidOperation:
                raise SourceError(
                    f"{path}:{reader.line_num}: monthly_fee {raw!r} is not a number"
                ) from None
            if fee is not None and fee < 0:
                raise SourceError(f"{path}:{reader.line_num}: monthly_fee is negative")
            fees[tenant] = fee
    return fees


def read_maintenance(path: Path) -> list[MaintenanceWindow]:
    """``start,end[,reason]`` rows (header required), ISO 8601 times with zones."""
    windows = []
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or not {"start", "end"} <= set(reader.fieldnames):
            raise SourceError(f"{path}: the header needs start and end columns")
        for row in reader:
            try:
                windows.append(
                    MaintenanceWindow(
                        parse_time(row["start"]), parse_time(row["end"]), row.get("reason") or ""
                    )
                )
            except ValueError as exc:
                raise SourceError(f"{path}:{reader.line_num}: {exc}") from None
    return windows


def build_report(
    month: Month,
    outcomes: Outcomes,
    maintenance: Sequence[MaintenanceWindow] = (),
    fees: dict[str, Decimal | None] | None = None,
    *,
    missing_is_unavailable: bool = False,
    services: Sequence[str] = (),
) -> list[ReportRow]:
    """Rows per service and ALL, platform-wide and then per tenant."""
    fees = fees or {}
    names = list(services) or services_of(outcomes)
    if not names:
        raise SourceError(f"no measurements for {month}")

    def row(tenant: str, service: str, minutes: dict[int, bool]) -> ReportRow:
        result = compute(month, minutes, maintenance, missing_is_unavailable=missing_is_unavailable)
        return ReportRow(tenant, service, result, fees.get(tenant) if tenant else None)

    rows: list[ReportRow] = []
    for tenant in ["", *tenants_of(outcomes, fees)]:
        per_service = {}
        for service in names:
            platform = outcomes.get((service, ""), {})
            own = outcomes.get((service, tenant), {}) if tenant else {}
            per_service[service] = merge(platform, own)
            rows.append(row(tenant, service, per_service[service]))
        rows.append(row(tenant, ALL_SERVICES, _all_of(per_service, names)))
    return rows


def _all_of(per_service: dict[str, dict[int, bool]], names: Sequence[str]) -> dict[int, bool]:
    """A minute of the platform: measured when any service was, bad when any service was."""
    return merge(*(per_service[name] for name in names))


def render(rows: Sequence[ReportRow], fmt: str) -> str:
    """The report as text (aligned table), csv or json."""
    records = [r.as_dict() for r in rows]
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    table = [list(COLUMNS), *[[str(rec[c]) for c in COLUMNS] for rec in records]]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in table
    ]
    notes = [
        "",
        "Unavailable minutes: runs of 2+ consecutive bad minutes (failures lasting over one",
        "minute); maintenance minutes excluded first. Total minutes = days x 24 x 60.",
        "Credit: >=99.9% none; [99, 99.9) 10%; [95, 99) 25%; <95% 100% of the monthly fee.",
    ]
    return "\n".join(line.rstrip() for line in lines + notes) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="signet-sla", description="Monthly SLA availability and service credits."
    )
    parser.add_argument("--month", required=True, help="the service period, YYYY-MM (UTC)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", action="append", type=Path, help="prober CSV file (repeatable)")
    source.add_argument("--prometheus", help="Prometheus base URL, e.g. http://prometheus:9090")
    parser.add_argument("--query", default=DEFAULT_QUERY, help="PromQL giving 1 per bad minute")
    parser.add_argument("--service-label", default="service", help="label naming the service")
    parser.add_argument("--bearer-token-file", type=Path, help="token for Prometheus's API")
    parser.add_argument(
        "--maintenance", action="append", default=[], help="announced window START/END (ISO 8601)"
    )
    parser.add_argument("--maintenance-file", type=Path, help="CSV start,end[,reason]")
    parser.add_argument("--tenants", type=Path, help="CSV tenant[,monthly_fee]")
    parser.add_argument("--service", action="append", default=[], help="only these services")
    parser.add_argument(
        "--missing-as-unavailable",
        action="store_true",
        help="count minutes without a measurement as bad (default: available)",
    )
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; exit 2 on unreadable input."""
    args = parse_args(argv)
    try:
        month = Month.parse(args.month)
        maintenance = [MaintenanceWindow.parse(text) for text in args.maintenance]
        if args.maintenance_file:
            maintenance += read_maintenance(args.maintenance_file)
        fees = read_fees(args.tenants) if args.tenants else {}
        outcomes: Outcomes = {}
        if args.csv:
            for path in args.csv:
                with path.open(newline="") as stream:
                    for key, minutes in read_csv(stream, month, source=str(path)).items():
                        outcomes[key] = merge(outcomes.get(key, {}), minutes)
        else:
            headers = {}
            if args.bearer_token_file:
                token = args.bearer_token_file.read_text().strip()
                headers["Authorization"] = f"Bearer {token}"
            outcomes = PrometheusSource(
                args.prometheus, args.query, args.service_label, headers=headers
            ).fetch(month)
        rows = build_report(
            month,
            outcomes,
            maintenance,
            fees,
            missing_is_unavailable=args.missing_as_unavailable,
            services=args.service,
        )
    except (SourceError, ValueError, OSError) as exc:
        print(f"signet-sla: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(rows, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
