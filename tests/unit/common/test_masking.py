"""Masked shapes of personal data, as the platform agreements show them."""

from __future__ import annotations

import pytest

from signet.common.masking import (
    mask_bank_card,
    mask_email,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_secret,
    scrub,
)


def test_id_number_keeps_first_and_last_four() -> None:
    assert mask_id_number("330102199001011234") == "3301**********1234"


def test_phone_keeps_prefix_and_last_four_and_drops_country_code() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"


def test_bank_card_email_name_and_secret() -> None:
    assert mask_bank_card("6222 0212 3456 7890 123") == "6222***********0123"
    assert mask_email("zhang.san@example.com") == "z********@example.com"
    assert mask_name("张小明") == "**明"
    assert mask_secret("123456") == "******"


@pytest.mark.parametrize("value", ["", "1", "1234", "12345678"])
def test_short_values_are_fully_starred(value: str) -> None:
    masked = mask_id_number(value)
    assert masked == "*" * len(value)


def test_scrub_masks_every_kind_in_free_text() -> None:
    text = "id 33010219900101123X phone 13812345678 card 6222021234567890123 ok"
    out = scrub(text)
    assert "33010219900101123X" not in out
    assert "3301**********123X" in out
    assert "13812345678" not in out
    assert "138****5678" in out
    assert "6222021234567890123" not in out
    assert "6222***********0123" in out
    assert out.endswith(" ok")


def test_scrub_leaves_ordinary_numbers_alone() -> None:
    assert scrub("took 1234 ms, 42 retries, serial 0x1f") == "took 1234 ms, 42 retries, serial 0x1f"
