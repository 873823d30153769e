"""The payments-page benchmark still runs end to end (at 2,000 rows, so it stays quick)."""

from __future__ import annotations

from bench import payments_page


def test_the_payments_page_bench_runs() -> None:
    timings = {t.name: t for t in payments_page.run(rows=2000, database_url=None, runs=2, naive_runs=1, apptest=True)}
    first = timings["first page (default filters) + totals"]
    assert len(first.runs) == 2 and all(seconds > 0 for seconds in first.runs)
    assert first.rows > 0
    # The page through AppTest shows the same first page the service returns, and the naive
    # pandas approach agrees on how many rows the first page has.
    assert timings["AppTest: render views/payments.py"].rows == first.rows
    assert timings["naive: whole table into pandas + filter"].rows == first.rows
    assert timings["search: exact imp_uid (92 days)"].rows == 1
    changed = timings["AppTest: filter change (failed + partly refunded)"]
    assert changed.rows == timings["filter change: failed + partly refunded"].rows > 0
    assert timings["AppTest: search (exact imp_uid)"].rows == 1
