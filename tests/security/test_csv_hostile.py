"""CSV cells of any text (hypothesis): what a spreadsheet reads back is the text, neutralised."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services import exports

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
    text = exports.csv_chunk([list(row) for row in rows], text_cells=(0, 1, 2))
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [[exports.neutralise(cell) for cell in row] for row in rows]
    assert text == exports.csv_lines([[exports.neutralise(cell) for cell in row] for row in rows])
    for row in parsed:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
