"""SLA arithmetic: unavailable minutes, maintenance, credit tiers at and around each boundary."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from signet.prober.sla import (
    MaintenanceWindow,
    Month,
    compute,
    credit_percent,
    excluded_indexes,
    parse_time,
)

NOV = Month(2026, 11)  # 30 days: 43,200 minutes, 43.2 minutes of budget
DEC = Month(2026, 12)  # 31 days: 44,640 minutes
FEB = Month(2028, 2)  # leap year: 29 days


def outage(month: Month, runs: list[tuple[int, int]]) -> dict[int, bool]:
    """Every minute measured; minutes [start, start+length) of each run failed."""
    minutes = dict.fromkeys(range(month.total_minutes), True)
    for start, length in runs:
        for i in range(start, start + length):
            minutes[i] = False
    return minutes


def in_runs_of_two(month: Month, bad: int) -> dict[int, bool]:
    """``bad`` unavailable minutes as runs of 2 (3 for the odd rest) separated by good minutes."""
    runs, start, left = [], 0, bad
    while left:
        length = 3 if left == 3 else 2
        runs.append((start, length))
        start += length + 1
        left -= length
    return outage(month, runs)


def test_month_minutes_are_days_times_1440() -> None:
    assert NOV.total_minutes == 43_200
    assert DEC.total_minutes == 44_640
    assert FEB.total_minutes == 29 * 1440
    assert Month(2027, 2).total_minutes == 28 * 1440


@pytest.mark.parametrize(
    ("availability", "credit"),
    [
        (Fraction(1), 0),
        (Fraction(999, 1000), 0),
        (Fraction(999, 1000) - Fraction(1, 10**9), 10),
        (Fraction(99, 100), 10),
        (Fraction(99, 100) - Fraction(1, 10**9), 25),
        (Fraction(95, 100), 25),
        (Fraction(95, 100) - Fraction(1, 10**9), 100),
        (Fraction(0), 100),
    ],
)
def test_credit_tier_at_and_just_below_each_bound(availability: Fraction, credit: int) -> None:
    assert credit_percent(availability) == credit


def test_credit_of_an_impossible_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        credit_percent(Fraction(101, 100))


@pytest.mark.parametrize(
    ("month", "unavailable", "credit"),
    [
        # 99.9% of 43,200 is 43,156.8 available: 43 down is 99.90046%, 44 is 99.89815%.
        (NOV, 43, 0),
        (NOV, 44, 10),
        # 99% of 43,200: exactly 432 down is 99.000% (10%), 433 is below (25%).
        (NOV, 431, 10),
        (NOV, 432, 10),
        (NOV, 433, 25),
        # 95%: exactly 2,160 down is 95.000% (25%), 2,161 is below (100%).
        (NOV, 2159, 25),
        (NOV, 2160, 25),
        (NOV, 2161, 100),
        # A 31-day month allows 44.64 minutes: 44 is fine, 45 is not.
        (DEC, 44, 0),
        (DEC, 45, 10),
        (DEC, 446, 10),
        (DEC, 447, 25),
        (DEC, 2232, 25),
        (DEC, 2233, 100),
    ],
)
def test_constructed_months_land_in_the_right_tier(
    month: Month, unavailable: int, credit: int
) -> None:
    result = compute(month, in_runs_of_two(month, unavailable))
    assert result.unavailable_minutes == unavailable
    assert result.ratio == Fraction(month.total_minutes - unavailable, month.total_minutes)
    assert result.credit_percent == credit


def test_a_single_bad_minute_does_not_count_but_two_in_a_row_do() -> None:
    lone = compute(NOV, outage(NOV, [(100, 1), (200, 1), (300, 1)]))
    assert lone.bad_minutes == 3
    assert lone.unavailable_minutes == 0
    assert lone.ratio == 1
    pair = compute(NOV, outage(NOV, [(100, 2)]))
    assert pair.unavailable_minutes == 2
    long = compute(NOV, outage(NOV, [(100, 30), (500, 1)]))
    assert long.unavailable_minutes == 30


def test_runs_at_the_edges_of_the_month_count() -> None:
    result = compute(NOV, outage(NOV, [(0, 2), (NOV.total_minutes - 3, 3)]))
    assert result.unavailable_minutes == 5


def test_forty_four_lone_bad_minutes_keep_the_objective() -> None:
    # Isolated failures never lasted over a minute: no credit however many there are.
    spaced = outage(NOV, [(i * 10, 1) for i in range(500)])
    result = compute(NOV, spaced)
    assert result.bad_minutes == 500
    assert result.credit_percent == 0


def test_maintenance_minutes_are_excluded_before_runs_are_counted() -> None:
    # 60 bad minutes from 02:00, announced maintenance 02:00-03:00 covers them all.
    start = 2 * 60
    window = MaintenanceWindow(parse_time("2026-11-01T02:00Z"), parse_time("2026-11-01T03:00Z"))
    result = compute(NOV, outage(NOV, [(start, 61)]), [window])
    assert result.excluded_minutes == 60
    # The one bad minute after the window lasted one minute: not unavailable.
    assert result.unavailable_minutes == 0
    two_after = compute(NOV, outage(NOV, [(start, 62)]), [window])
    assert two_after.unavailable_minutes == 2
    assert two_after.total_minutes == 43_200


def test_without_the_window_the_same_outage_costs_a_credit() -> None:
    result = compute(NOV, outage(NOV, [(120, 61)]))
    assert result.unavailable_minutes == 61
    assert result.credit_percent == 10


def test_maintenance_window_is_clipped_to_the_month_and_minute_aligned() -> None:
    window = MaintenanceWindow(parse_time("2026-10-31T23:30Z"), parse_time("2026-11-01T00:02:30Z"))
    assert excluded_indexes(NOV, [window]) == frozenset({0, 1, 2})
    late = MaintenanceWindow(parse_time("2026-11-30T23:59:30Z"), parse_time("2026-12-01T01:00Z"))
    assert excluded_indexes(NOV, [late]) == frozenset()


def test_missing_minutes_are_available_unless_asked_otherwise() -> None:
    minutes = outage(NOV, [])
    for i in range(1000, 1100):
        del minutes[i]
    assert compute(NOV, minutes).unavailable_minutes == 0
    assert compute(NOV, minutes).missing_minutes == 100
    strict = compute(NOV, minutes, missing_is_unavailable=True)
    assert strict.unavailable_minutes == 100


def test_times_need_a_zone_and_windows_an_order() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_time("2026-11-01T00:00")
    with pytest.raises(ValueError, match="ends after"):
        MaintenanceWindow.parse("2026-11-01T03:00Z/2026-11-01T02:00Z")
    with pytest.raises(ValueError, match="YYYY-MM"):
        Month.parse("2026/11")


def test_minute_index_uses_utc() -> None:
    east8 = datetime.fromisoformat("2026-11-01T08:01:30+08:00")
    assert NOV.minute_index(east8) == 1
    assert NOV.minute_index(datetime(2026, 12, 1, tzinfo=UTC)) is None
