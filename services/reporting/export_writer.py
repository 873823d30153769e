"""CSV text for Excel, safe to open: the cell rules every export follows.

Made for Excel: UTF-8 with a byte order mark (so Korean opens correctly), CRLF line ends.
Safe in Excel: every text cell starting with = + - @ TAB or CR gets a leading single quote
(OWASP "CSV injection"), while money and counts are written as plain numbers from their own
typed cells, never passed through that rule, so a negative net stays a number. Amounts are exact
Decimals at their currency's precision (KRW 50000, USD 38.50); times are KST.

`render` writes one typed cell; `csv_chunk` writes a chunk of rows whose cells are already strings,
the fast way an export of a million rows needs (both give the same text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.core.kst import KST
from services.core.money import CURRENCY_EXPONENTS, MAX_AMOUNT

BOM = "\ufeff"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A text cell Excel would read as a formula gets a leading single quote (OWASP)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


# -- money ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """An amount cell: written as a plain number at its currency's precision, never neutralised."""

    amount: Decimal
    currency: str

    def render(self) -> str:
        return money_text(self.amount, self.currency)


_QUANTA = {currency: Decimal(1).scaleb(-exponent) for currency, exponent in CURRENCY_EXPONENTS.items()}


def money_text(amount: Decimal, currency: str) -> str:
    """An amount as a plain number at its currency's precision (`money.normalize`'s rule, inlined:
    this runs for three cells of every exported payment). An amount that does not fit its
    currency's precision, or of a currency we do not know, is written as it is, never rounded."""
    magnitude = abs(amount)
    quantum = _QUANTA.get(currency.upper())
    if quantum is not None and magnitude.is_finite():
        exact = magnitude.quantize(quantum)
        if exact == magnitude and exact <= MAX_AMOUNT:
            magnitude = exact
    return f"{'-' if amount < 0 else ''}{magnitude:f}"


def memoised_money_text_of_hundredths() -> Callable[[int, str], str]:
    """A function writing an amount given in hundredths (as the export queries select it) as
    `money_text`, remembering up to 10,000 results: a fee table makes the same few amounts recur.
    One per export, so the memory goes with it."""
    seen: dict[tuple[int, str], str] = {}

    def money(units: int, currency: str) -> str:
        key = (units, currency)
        text = seen.get(key)
        if text is None:
            text = money_text(Decimal(units).scaleb(-2), currency)
            if len(seen) < 10_000:
                seen[key] = text
        return text

    return money


# -- cells and rows -------------------------------------------------------------------------

Cell = str | int | bool | Decimal | Money | datetime | None


def render(value: Cell) -> str:
    """One cell as CSV text. Only `str` values are text; everything else is typed and safe."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return value.render()
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S")
    return neutralise(str(value))


def csv_text(rows: Sequence[Sequence[Cell]]) -> str:
    return csv_lines([[render(value) for value in row] for row in rows])


def csv_lines(rows: Iterable[Sequence[str]]) -> str:
    """Rows of cells already rendered (by `render`) as CSV text."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def csv_chunk(rows: Iterable[list[str]], text_cells: Sequence[int]) -> str:
    """Rows of cell strings as CSV text, the cells at `text_cells` neutralised (`render`'s rule
    for text; the others, money, times and flags, are written as they are).

    Exports write a million rows, so the usual row is joined in one go and checked once; a row
    that may need quoting or neutralising (rare: a comma or quote in a name, a negative amount)
    goes the careful way. Both give what `csv_lines` of the rendered cells gives."""
    lines = []
    for cells in rows:
        line = ",".join(cells)
        # Already a correct CSV line unless a cell holds a comma (the count), a quote or a line
        # break (it needs quoting) or starts with a formula trigger. Plain `in` tests: C speed.
        if (
            line.count(",") != len(cells) - 1
            or '"' in line
            or "\r" in line
            or "\n" in line
            or ",=" in line
            or ",+" in line
            or ",-" in line
            or ",@" in line
            or ",\t" in line
            or line.startswith(FORMULA_TRIGGERS)
        ):
            for index in text_cells:
                cells[index] = neutralise(cells[index])
            line = csv_lines([cells])[:-2]
        lines.append(line)
    lines.append("")
    return "\r\n".join(lines)
