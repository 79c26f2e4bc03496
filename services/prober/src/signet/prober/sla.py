"""Monthly availability and service credit exactly as the SLA defines them.

The SLA (ARCHITECTURE.md, from the eSign service level agreement):

- the service period is one calendar month; total minutes = days x 24 x 60;
- a minute is unavailable when the service interface cannot be connected or does not return
  the expected result, *lasting over one minute*;
- availability = (total minutes - unavailable minutes) / total minutes x 100%;
- credit: >= 99.9% none; [99%, 99.9%) 10% of the monthly fee; [95%, 99%) 25%; < 95% 100%;
- announced maintenance (and causes outside the service) are excluded.

How this module reads it (and what the report states):

1. Each minute of the month is *bad* when a check in it failed (the prober's call, or the
   per-minute series Prometheus records). Minutes inside an announced maintenance window are
   taken out first: they are never bad and never unavailable.
2. A failure "lasting over one minute" is a run of at least two consecutive bad minutes; every
   minute of such a run is unavailable. A lone bad minute, with good (or excluded) minutes on
   both sides, lasted one minute at most and is not counted.
3. Total minutes stay days x 24 x 60 (maintenance is excluded from the unavailable minutes,
   not from the month), as the formula says.
4. Minutes without any measurement count as available by default (the measurement, not the
   service, was missing) and are reported; ``missing_is_unavailable`` counts them as bad.

All arithmetic is exact (fractions), so a month at exactly 99.9% is not pushed below it by
floating point.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

MINUTE = timedelta(minutes=1)
# Failures must last over one minute: at per-minute resolution, two minutes or more.
MIN_UNAVAILABLE_RUN = 2

# (lower bound of availability, credit percent of the monthly fee), best tier first.
CREDIT_TIERS: tuple[tuple[Fraction, int], ...] = (
    (Fraction(999, 1000), 0),
    (Fraction(99, 100), 10),
    (Fraction(95, 100), 25),
    (Fraction(0), 100),
)


def credit_percent(availability: Fraction) -> int:
    """The service credit (percent of the monthly fee) for an availability ratio in [0, 1]."""
    if not 0 <= availability <= 1:
        raise ValueError("availability is a ratio between 0 and 1")
    for bound, credit in CREDIT_TIERS:
        if availability >= bound:
            return credit
    raise AssertionError("the last tier starts at 0")  # pragma: no cover


@dataclass(frozen=True)
class Month:
    """One calendar month (UTC), the SLA's service period."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or self.year < 1970:
            raise ValueError("month must be YYYY-MM from 1970 on")

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM``."""
        try:
            year, month = (int(part) for part in text.strip().split("-"))
        except ValueError:
            raise ValueError(f"month {text!r} is not YYYY-MM") from None
        return cls(year, month)

    @property
    def start(self) -> datetime:
        """First instant of the month."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """First instant after the month."""
        return self.start + timedelta(days=self.days)

    @property
    def days(self) -> int:
        """Days in the month."""
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def total_minutes(self) -> int:
        """Days x 24 x 60."""
        return self.days * 24 * 60

    def minute_index(self, when: datetime) -> int | None:
        """Index (0-based) of the minute ``when`` falls in, or None outside the month."""
        offset = when.astimezone(UTC) - self.start
        index = int(offset.total_seconds() // 60)
        return index if 0 <= index < self.total_minutes else None

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class MaintenanceWindow:
    """An announced maintenance window [start, end): its minutes are excluded."""

    start: datetime
    end: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("maintenance windows need time zones (use Z for UTC)")
        if self.end <= self.start:
            raise ValueError("a maintenance window ends after it starts")

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """``START/END`` in ISO 8601, e.g. ``2026-11-03T02:00Z/2026-11-03T04:00Z``."""
        start, sep, end = text.partition("/")
        if not sep:
            raise ValueError(f"maintenance window {text!r} is not START/END")
        return cls(parse_time(start), parse_time(end))


def parse_time(text: str) -> datetime:
    """An ISO 8601 instant with a time zone (``Z`` allowed); naive times are refused."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (use Z for UTC)")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class Availability:
    """One service's (or tenant's) month under the SLA."""

    month: Month
    total_minutes: int
    measured_minutes: int
    bad_minutes: int
    unavailable_minutes: int
    excluded_minutes: int
    missing_minutes: int
    ratio: Fraction

    @property
    def percent(self) -> Fraction:
        """Availability in percent (exact)."""
        return self.ratio * 100

    @property
    def credit_percent(self) -> int:
        """The service credit for the month."""
        return credit_percent(self.ratio)

    @property
    def budget_minutes(self) -> Fraction:
        """Unavailable minutes the 99.9% objective allows this month."""
        return Fraction(self.total_minutes) * Fraction(1, 1000)


def excluded_indexes(month: Month, windows: Iterable[MaintenanceWindow]) -> frozenset[int]:
    """Indexes of the month's minutes that start inside a maintenance window."""
    excluded: set[int] = set()
    for window in windows:
        first = max(window.start, month.start)
        last = min(window.end, month.end)
        if last <= first:
            continue
        # A minute is excluded when it starts inside [start, end).
        offset = (first - month.start).total_seconds()
        index = int(-(-offset // 60))  # ceil: the first minute starting at or after `first`
        while index < month.total_minutes and month.start + index * MINUTE < last:
            excluded.add(index)
            index += 1
    return frozenset(excluded)


def compute(
    month: Month,
    outcomes: Mapping[int, bool],
    maintenance: Iterable[MaintenanceWindow] = (),
    *,
    missing_is_unavailable: bool = False,
) -> Availability:
    """Availability from per-minute outcomes (minute index -> succeeded?).

    Minutes absent from ``outcomes`` had no measurement (see the module docstring, rule 4).
    """
    total = month.total_minutes
    excluded = excluded_indexes(month, maintenance)
    bad = [False] * total
    missing = 0
    measured = 0
    for index in range(total):
        if index in excluded:
            continue
        ok = outcomes.get(index)
        if ok is None:
            missing += 1
            bad[index] = missing_is_unavailable
        else:
            measured += 1
            bad[index] = not ok
    unavailable = 0
    run = 0
    for index in range(total + 1):
        if index < total and bad[index]:
            run += 1
            continue
        if run >= MIN_UNAVAILABLE_RUN:
            unavailable += run
        run = 0
    return Availability(
        month=month,
        total_minutes=total,
        measured_minutes=measured,
        bad_minutes=sum(bad),
        unavailable_minutes=unavailable,
        excluded_minutes=len(excluded),
        missing_minutes=missing,
        ratio=Fraction(total - unavailable, total),
    )


def merge(*outcomes: Mapping[int, bool]) -> dict[int, bool]:
    """Per-minute outcomes of several checks at once: a minute is good only if all were."""
    merged: dict[int, bool] = {}
    for source in outcomes:
        for index, ok in source.items():
            merged[index] = merged.get(index, True) and ok
    return merged
