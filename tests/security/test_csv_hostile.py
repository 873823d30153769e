"""CSV cells of any text (hypothesis): what a spreadsheet reads back is the text, neutralised."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.auth.access import Actor
from services.core import masking
from services.core.models import Role
from services.reporting import export_writer, exports
from services.runtime import Runtime
from tests.services.payments.test_search import DAY, _insert

TRIGGERS = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", '"', ",", "'", "=cmd|' /C calc'!A0", "\x00"])
CELL = st.one_of(st.text(max_size=20), st.builds(lambda a, b: a + b, TRIGGERS, st.text(max_size=10)))


@pytest.mark.reliability(
    area="hostile input",
    case="CSV export cells of any text, formula triggers and quotes included (hypothesis)",
    outcome="parses back to the text, neutralised; no cell starts a formula",
)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=5))
def test_any_text_round_trips_neutralised(rows: list[list[str]]) -> None:
    text = export_writer.csv_chunk([list(row) for row in rows], text_cells=(0, 1, 2))
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [[export_writer.neutralise(cell) for cell in row] for row in rows]
    assert text == export_writer.csv_lines([[export_writer.neutralise(cell) for cell in row] for row in rows])
    for row in parsed:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


STORED = st.one_of(st.text(max_size=20), st.builds(lambda a, b: a + b, TRIGGERS, st.text(max_size=10))).map(
    lambda text: text.replace("\x00", "")  # PostgreSQL stores no NUL (PortOne's text arrives with U+FFFD instead)
)


@pytest.mark.reliability(
    area="hostile input",
    case="CSV export of stored buyer text of any shape, masked per role (hypothesis)",
    outcome="a viewer's file parses back to the masked text, an admin's to the text, both neutralised",
)
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=STORED, email=STORED, phone=STORED.map(lambda text: text[:40]))
def test_exports_parse_back_masked_per_role(runtime: Runtime, name: str, email: str, phone: str) -> None:
    imp_uid = _insert(runtime, buyer_name=name, buyer_email=email, buyer_tel=phone)
    filters = exports.ExportFilters(start=DAY, end=DAY)
    for actor, whole in ((Actor("viewer", Role.VIEWER), False), (Actor("admin", Role.ADMIN), True)):
        request = exports.prepare(actor=actor, kind="payments", filters=filters, include_personal_data=whole)
        text = exports.build_file(runtime, request).data.decode("utf-8-sig")
        [row] = [r for r in csv.DictReader(io.StringIO(text, newline="")) if r["포트원 결제번호"] == imp_uid]
        shown = (
            (name, email, phone)
            if whole
            else (masking.mask_name(name), masking.mask_email(email), masking.mask_phone(phone))
        )
        expected = tuple(export_writer.neutralise(value or "") for value in shown)
        assert (row["구매자명"], row["구매자 이메일"], row["구매자 전화번호"]) == expected
