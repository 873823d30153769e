"""The payments-page benchmark also runs on PostgreSQL (COPY load, same queries, same answers)."""

from __future__ import annotations

import pytest

from bench import payments_page

pytestmark = pytest.mark.postgres


def test_the_payments_page_bench_runs_on_postgresql(fresh_postgres_url: str) -> None:
    timings = {
        t.name: t
        for t in payments_page.run(rows=2000, database_url=fresh_postgres_url, runs=1, naive_runs=1, apptest=False)
    }
    first = timings["first page (default filters) + totals"]
    assert first.rows > 0
    assert timings[payments_page.NAIVE].rows == first.rows
    assert timings["search: exact imp_uid (92 days)"].rows == 1
