"""Masking of personal data: the one rule for screens, CSV exports and logs.

Every place that shows a buyer's phone, e-mail or name (or a card or account number) to someone
who may not see it whole calls these functions; there is no second copy. Each keeps what is
needed to tell people apart on a call and hides the rest:

- phone: Korean numbers keep the area / carrier code and the last four digits (010-****-5678,
  02-***-4567, 031-****-5678, +82 10-****-5678); a representative number keeps its first four
  (1588-****); any other number keeps only its last four digits. Separators stay where they were.
- e-mail: the first letter of the local part and the whole domain (k***@example.com); the number
  of hidden letters is not shown. A one-letter local part is hidden whole.
- name: the first and last letters (김*카, J********h); two letters keep the first (김*).
- card number: the first six and last four digits (411111******1111); a number PortOne already
  masked stays as it is.
- account number: the last four digits.

All of them: None and "" come back unchanged, and masking a masked value changes nothing.
"""

from __future__ import annotations

import re

MASK = "*"
# The usual Korean mobile / area forms, masked by slicing (exports mask a million of them); the
# general rule gives the same (tests/services/core/test_masking.py checks it).
_DASHED = re.compile(r"0[0-9]{2}-[0-9]{4}-[0-9]{4}")
_DIGITS = re.compile(r"0[0-9]{10}")


def _keep_only(text: str, slots: list[int], keep: set[int]) -> str:
    """`text` with the characters at `slots` (positions) masked, except those at `keep`."""
    hidden = set(slots) - keep
    return "".join(MASK if i in hidden else ch for i, ch in enumerate(text))


def _phone_slots(phone: str) -> list[int]:
    return [i for i, ch in enumerate(phone) if ch.isdigit() or ch == MASK]


def mask_phone(phone: str | None) -> str | None:
    """010-1234-5678 -> 010-****-5678 (see the module docstring for every format)."""
    if not phone:
        return phone
    if _DASHED.fullmatch(phone):
        return phone[:4] + "****" + phone[8:]
    if _DIGITS.fullmatch(phone):
        return phone[:3] + "****" + phone[7:]
    return _mask_phone_digit_by_digit(phone)


def _mask_phone_digit_by_digit(phone: str) -> str:
    slots = _phone_slots(phone)
    if not slots:
        return phone
    head = _korean_head(phone, slots)
    tail = slots[-4:] if len(slots) > 4 else []
    if head is None:  # not a Korean number: only the last four digits stay
        return _keep_only(phone, slots, set(tail))
    if head == 4 and len(slots) == 8:  # 1588-1234: a company's representative number
        return _keep_only(phone, slots, set(slots[:4]))
    return _keep_only(phone, slots, set(slots[:head]) | set(tail))


def _korean_head(phone: str, slots: list[int]) -> int | None:
    """How many leading digits are the country / area / carrier code, or None if not Korean."""
    digits = "".join(phone[i] for i in slots)
    text = phone.lstrip()
    if text.startswith("+"):
        if not digits.startswith("82"):
            return None
        national = "0" + digits[2:].removeprefix("0")  # +82 10-... and +82 (0)10-... alike
        code = _korean_head_national(national)
        if code is None:
            return None
        return 2 + (code - 1) + (1 if digits[2:].startswith("0") else 0)
    return _korean_head_national(digits)


def _korean_head_national(digits: str) -> int | None:
    if digits.startswith("02") and 9 <= len(digits) <= 10:  # Seoul: 02-123-4567 / 02-1234-5678
        return 2
    if digits.startswith("0") and 10 <= len(digits) <= 11:  # 010-, 031-, 070-... (3-4 + 4)
        return 3
    if digits[:1] == "1" and len(digits) == 8:  # 1588-1234, 1644-..., 1800-...
        return 4
    return None


def mask_email(email: str | None) -> str | None:
    """kim@example.com -> k***@example.com (the domain stays: it says which company, not who)."""
    if not email:
        return email
    local, at, domain = email.rpartition("@")
    if not at:
        return MASK * 3
    first = local[:1] if len(local) > 1 and local[:1] != MASK else ""
    return f"{first}{MASK * 3}@{domain}"


def mask_name(name: str | None) -> str | None:
    """김체카 -> 김*카, 김체 -> 김*, John Smith -> J********h."""
    if not name:
        return name
    if len(name) == 1:
        return MASK
    if len(name) == 2:
        return name[0] + MASK
    return name[0] + MASK * (len(name) - 2) + name[-1]


def mask_card_number(number: str | None) -> str | None:
    """4111-1111-1111-1111 -> 4111-11**-****-1111: the first six and last four digits stay
    (fewer than 13 digits: only the last four)."""
    if not number:
        return number
    slots = _phone_slots(number)
    keep = slots[:6] + slots[-4:] if len(slots) >= 13 else slots[-4:] if len(slots) > 4 else []
    return _keep_only(number, slots, set(keep))


def mask_account_number(number: str | None) -> str | None:
    """110-123-456789 -> ***-***-**6789: only the last four digits stay."""
    if not number:
        return number
    slots = _phone_slots(number)
    return _keep_only(number, slots, set(slots[-4:]) if len(slots) > 4 else set())
