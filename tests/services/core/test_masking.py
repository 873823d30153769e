"""One masking rule for personal data (services/core/masking.py), used alike by the payments page, the
payment detail and the CSV exports: a table of Korean phone formats, e-mails, names, card and
account numbers; then the same table through every screen and export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import random

import pytest

from services.auth.access import Actor
from services.core import masking
from services.core.models import Role
from services.payments import detail as payment_detail
from services.payments.search import PaymentFilters, search_payments
from services.reporting import exports
from services.runtime import Runtime
from tests.services.payments.test_search import DAY, _insert

VIEWER = Actor("lee", Role.VIEWER)

PHONES = [
    ("010-1234-5678", "010-****-5678"),
    ("01012345678", "010****5678"),
    ("010 1234 5678", "010 **** 5678"),
    ("011-987-6543", "011-***-6543"),
    ("011-98760-000", "011-****0-000"),  # an odd grouping: digit by digit
    ("02-123-4567", "02-***-4567"),
    ("02-1234-5678", "02-****-5678"),
    ("0212345678", "02****5678"),
    ("031-1234-5678", "031-****-5678"),
    ("031-123-4567", "031-***-4567"),
    ("070-1234-5678", "070-****-5678"),
    ("1588-1234", "1588-****"),
    ("15881234", "1588****"),
    ("+82 10-1234-5678", "+82 10-****-5678"),
    ("+82 10 1234 5678", "+82 10 **** 5678"),
    ("+821012345678", "+8210****5678"),
    ("+82-2-123-4567", "+82-2-***-4567"),
    ("+1 415 555 0100", "+* *** *** 0100"),  # not Korean: only the last four digits stay
    ("1234", "****"),
    ("", ""),
]
EMAILS = [
    ("kim@example.com", "k***@example.com"),
    ("hong.gildong@example.com", "h***@example.com"),
    ("hong.gil+tag@example.co.kr", "h***@example.co.kr"),
    ("Minjun.Kim@Example.com", "M***@Example.com"),
    ("minjun+shop@gmail.com", "m***@gmail.com"),
    ("a@example.com", "***@example.com"),  # one letter: showing it would show it all
    ("@example.com", "***@example.com"),
    ("a@b@example.com", "a***@example.com"),
    ("no-at-sign", "***"),
    ("", ""),
]
NAMES = [
    ("김체카", "김*카"),
    ("김체", "김*"),
    ("남궁민수", "남**수"),
    ("J", "*"),
    ("John Smith", "J********h"),
    ("", ""),
]
CARDS = [
    ("4111111111111111", "411111******1111"),
    ("4111-1111-1111-1111", "4111-11**-****-1111"),
    ("536181*********4", "536181*********4"),  # PortOne's own mask stays as it is
    ("12345", "*2345"),
]
ACCOUNTS = [
    ("110-123-456789", "***-***-**6789"),
    ("3333012345678", "*********5678"),
    ("123", "***"),
]


@pytest.mark.parametrize(("phone", "masked"), PHONES)
def test_phone(phone: str, masked: str) -> None:
    assert masking.mask_phone(phone) == masked


@pytest.mark.parametrize(("email", "masked"), EMAILS)
def test_email(email: str, masked: str) -> None:
    assert masking.mask_email(email) == masked


@pytest.mark.parametrize(("name", "masked"), NAMES)
def test_name(name: str, masked: str) -> None:
    assert masking.mask_name(name) == masked


@pytest.mark.parametrize(("number", "masked"), CARDS)
def test_card_number(number: str, masked: str) -> None:
    assert masking.mask_card_number(number) == masked


@pytest.mark.parametrize(("number", "masked"), ACCOUNTS)
def test_account_number(number: str, masked: str) -> None:
    assert masking.mask_account_number(number) == masked


def test_the_usual_forms_take_a_shortcut_to_the_same_answer() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        digits = "0" + "".join(rng.choice("0123456789") for _ in range(10))
        for phone in (digits, f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"):
            assert masking.mask_phone(phone) == masking._mask_phone_digit_by_digit(phone), phone


def test_none_stays_none_and_masking_twice_changes_nothing() -> None:
    for mask in (masking.mask_phone, masking.mask_email, masking.mask_name):
        assert mask(None) is None
    assert masking.mask_card_number(None) is None and masking.mask_account_number(None) is None
    for phone, masked in PHONES:
        assert masking.mask_phone(masked) == masked, phone
    for email, masked in EMAILS:
        assert masking.mask_email(masked) == masked, email


def test_screens_and_exports_mask_alike(runtime: Runtime) -> None:
    """The payments page, the payment detail and the viewer's CSV show the same masked text for
    every phone and e-mail of the table (the CSV's cells also neutralised against formulas)."""
    cases = list(zip(PHONES, EMAILS * 2, strict=False))
    ids = {
        _insert(runtime, buyer_tel=phone or None, buyer_email=email or None): (masked_phone, masked_email)
        for (phone, masked_phone), (email, masked_email) in cases
    }
    page = search_payments(runtime, actor=VIEWER, filters=PaymentFilters(date_from=DAY, date_to=DAY), limit=500)
    on_page = {row.imp_uid: (row.buyer_tel or "", row.buyer_email or "") for row in page.rows}
    request = exports.prepare(actor=VIEWER, kind="payments", filters=exports.ExportFilters(start=DAY, end=DAY))
    text = exports.build_file(runtime, request).data.decode("utf-8-sig")
    in_csv = {
        row["포트원 결제번호"]: (row["구매자 전화번호"].removeprefix("'"), row["구매자 이메일"].removeprefix("'"))
        for row in csv.DictReader(io.StringIO(text, newline=""))
    }
    for imp_uid, expected in ids.items():
        detail = payment_detail.payment_detail(runtime, actor=VIEWER, imp_uid=imp_uid, live=False)
        in_detail = (detail.ours["buyer_tel"] or "", detail.ours["buyer_email"] or "")
        assert (on_page[imp_uid], in_csv[imp_uid], in_detail) == (expected, expected, expected), imp_uid
