"""Masking of personal data for logs, responses, events and notifications.

The platform agreements promise that ID numbers, bank cards, phone numbers and emails are
never shown in clear; these helpers give the one agreed shape for each
(e.g. ``3301**********1234``, ``138****5678``).
"""

from __future__ import annotations

import re

_MASK = "*"


def mask_middle(value: str, keep_head: int, keep_tail: int) -> str:
    """Keep ``keep_head`` leading and ``keep_tail`` trailing characters, star the rest.

    Values too short to keep anything meaningful are starred completely, so a short
    secret never leaks through its ends.
    """
    if len(value) <= keep_head + keep_tail:
        return _MASK * len(value)
    hidden = len(value) - keep_head - keep_tail
    tail = value[len(value) - keep_tail :] if keep_tail else ""
    return value[:keep_head] + _MASK * hidden + tail


def mask_id_number(value: str) -> str:
    """Resident ID number or credit code: first 4 and last 4 kept (3301**********1234)."""
    return mask_middle(value.strip(), 4, 4)


def mask_phone(value: str) -> str:
    """Mobile number: first 3 and last 4 kept (138****5678); a +86 prefix is dropped."""
    digits = re.sub(r"[\s-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    return mask_middle(digits, 3, 4)


def mask_bank_card(value: str) -> str:
    """Bank card number: first 4 and last 4 kept."""
    return mask_middle(re.sub(r"[\s-]", "", value), 4, 4)


def mask_email(value: str) -> str:
    """E-mail: first character of the local part kept, domain kept (z***@example.com)."""
    local, sep, domain = value.partition("@")
    if not sep:
        return mask_middle(value, 1, 0)
    return mask_middle(local, 1, 0) + "@" + domain


def mask_name(value: str) -> str:
    """Personal name: the last character kept (**明), as Chinese platforms show it."""
    return mask_middle(value, 0, 1)


def mask_secret(value: str) -> str:
    """One-time codes, PINs, tokens: nothing kept."""
    return _MASK * min(len(value), 8)


# Patterns used by the log filter as a last line of defence: a mainland resident ID
# (18 chars, last may be X), a mobile number, and a 16-19 digit card number.
_ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_CARD_RE = re.compile(r"(?<!\d)\d{16,19}(?!\d)")


def scrub(text: str) -> str:
    """Mask anything in free text that looks like an ID number, card or mobile number."""
    text = _ID_RE.sub(lambda m: mask_id_number(m.group(0)), text)
    text = _CARD_RE.sub(lambda m: mask_bank_card(m.group(0)), text)
    return _PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)
