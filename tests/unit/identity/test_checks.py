"""Local identity checks: GB 11643 ID numbers, GB 32100 credit codes, phones, codes, days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from signet.identity.checks import (
    add_working_days,
    add_years,
    code_hash,
    codes_match,
    credit_code_check_character,
    id_check_character,
    new_code,
    normalise_email,
    normalise_phone,
    parse_credit_code,
    parse_resident_id,
)

TODAY = date(2026, 11, 24)


def test_published_sample_id_number_passes_with_its_x_check_character() -> None:
    parsed = parse_resident_id("11010519491231002x", TODAY)
    assert parsed is not None
    assert parsed.number == "11010519491231002X"
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.age_on(TODAY) == 76


def test_every_wrong_check_digit_is_refused() -> None:
    first = "33010619900307123"
    right = id_check_character(first)
    for wrong in "0123456789X":
        assert (parse_resident_id(first + wrong, TODAY) is not None) == (wrong == right)


@pytest.mark.parametrize(
    "value",
    ["3301061990030712", "3301061990030712345", "A30106199003071234", "330106199013071234"],
)
def test_malformed_id_numbers_are_refused(value: str) -> None:
    assert parse_resident_id(value, TODAY) is None


def test_age_counts_completed_years() -> None:
    first = "33010620081125001"
    parsed = parse_resident_id(first + id_check_character(first), TODAY)
    assert parsed is not None and parsed.age_on(TODAY) == 17
    assert parsed.age_on(date(2026, 11, 25)) == 18


def test_credit_code_check_character_follows_gb_32100() -> None:
    # A published example code (Xiaomi Communications) keeps its check character.
    assert parse_credit_code("91110108558521630L") == "91110108558521630L"
    body = "91330106MA2AB1234"
    right = credit_code_check_character(body)
    assert parse_credit_code(body + right) == body + right
    wrong = "0" if right != "0" else "1"
    assert parse_credit_code(body + wrong) is None
    assert parse_credit_code("91330106MA2AB123I" + right) is None  # I is not in the alphabet


def test_phone_and_email_normalisation() -> None:
    assert normalise_phone("+86 138-1234-5678") == "13812345678"
    assert normalise_phone("12812345678") is None
    assert normalise_email("Zhang@Example.COM") == "Zhang@example.com"
    assert normalise_email("not-an-email") is None


def test_codes_are_six_digits_and_hashed_per_purpose_and_record() -> None:
    code = new_code()
    assert len(code) == 6 and code.isdigit()
    key = b"k" * 32
    stored = code_hash(key, "willingness", "w-1", code)
    assert code not in stored
    assert codes_match(stored, key, "willingness", "w-1", code)
    assert not codes_match(stored, key, "willingness", "w-2", code)
    assert not codes_match(stored, key, "verification", "w-1", code)


def test_working_days_skip_weekends_and_holidays() -> None:
    friday = datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert add_working_days(friday, 1).weekday() == 0
    assert (add_working_days(friday, 15) - friday).days == 21
    holiday = frozenset({date(2026, 11, 30)})
    assert add_working_days(friday, 1, holiday).date() == date(2026, 12, 1)


def test_add_years_handles_29_february() -> None:
    leap = datetime(2028, 2, 29, tzinfo=UTC)
    assert add_years(leap, 5) == datetime(2033, 2, 28, tzinfo=UTC)
