"""Local checks of identity data: resident ID numbers, credit codes, codes, working days.

Resident ID numbers follow GB 11643 (17 digits, a birth date, and an ISO 7064 MOD 11-2
check character); unified social credit codes follow GB 32100 (18 characters from a
31-symbol alphabet with a MOD 31 check character). Both are checked here before any
provider is asked, so a typo fails fast and costs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$")
# Province-level codes (first two digits) of mainland regions, Taiwan, Hong Kong, Macao.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")

_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


@dataclass(frozen=True)
class ResidentId:
    """A resident ID number that passed the local checks, and the birth date it carries."""

    number: str
    birth_date: date

    def age_on(self, day: date) -> int:
        """Completed years of age on ``day``."""
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


def id_check_character(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def parse_resident_id(value: str, today: date) -> ResidentId | None:
    """The checked ID number (upper-case X), or None when format, date or check digit is wrong."""
    number = value.strip().upper()
    if not _ID_RE.match(number) or int(number[:2]) not in _PROVINCES:
        return None
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    if born.year < 1900 or born > today:
        return None
    if id_check_character(number[:17]) != number[17]:
        return None
    return ResidentId(number=number, birth_date=born)


def credit_code_check_character(first17: str) -> str:
    """The GB 32100 check character of the first 17 characters."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def parse_credit_code(value: str) -> str | None:
    """The checked unified social credit code, or None when format or check character is wrong."""
    code = value.strip().upper()
    if not _USCC_RE.match(code):
        return None
    if credit_code_check_character(code[:17]) != code[17]:
        return None
    return code


def normalise_phone(value: str) -> str | None:
    """A mainland mobile number as 11 digits (spaces, dashes and +86 dropped), or None."""
    digits = re.sub(r"[\s-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    return digits if _PHONE_RE.match(digits) else None


def normalise_email(value: str) -> str | None:
    """An e-mail address with its domain lower-cased, or None when it is not one."""
    text = value.strip()
    if not _EMAIL_RE.match(text) or len(text) > 254:
        return None
    local, _, domain = text.rpartition("@")
    return local + "@" + domain.lower()


def new_code(digits: int = 6) -> str:
    """A uniformly random numeric one-time code."""
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def code_hash(key: bytes, purpose: str, owner_id: str, code: str) -> str:
    """Keyed hash of a one-time code bound to what it is for, so it is never stored in clear."""
    message = f"{purpose}\x00{owner_id}\x00{code}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def codes_match(expected_hash: str, key: bytes, purpose: str, owner_id: str, code: str) -> bool:
    """Constant-time comparison of a presented code with the stored hash."""
    return hmac.compare_digest(expected_hash, code_hash(key, purpose, owner_id, code.strip()))


def add_working_days(
    start: datetime, days: int, holidays: frozenset[date] = frozenset()
) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday, minus ``holidays``)."""
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current.date() not in holidays:
            left -= 1
    return current


def add_years(start: datetime, years: int) -> datetime:
    """``start`` plus whole calendar years (29 February becomes 28 February)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)
