"""The export benchmark still runs end to end (at 1,500 payments, so it stays quick): each side in
its own process, on the same rows, our file masked and formula-safe."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench import export_csv, payments_page
from services.core.db import Database
from services.core.kst import kst_today
from services.core.models import Payment


def test_the_export_bench_runs_and_both_sides_export_the_same_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    payments_page.load(url, 1500, days=30)
    end = kst_today() + timedelta(days=1)
    result = export_csv.run(url, end - timedelta(days=40), end, floor=False)

    db = Database(url)
    try:
        with db.read() as session:
            paid = session.scalar(select(func.count()).select_from(Payment).where(Payment.paid_at.is_not(None)))
    finally:
        db.dispose()
    assert result["ours"]["rows"] == result["pandas"]["rows"] == paid > 0
    checks = result["ours"]["checks"]
    assert checks["bom"] and checks["phones_masked"] and checks["emails_masked"]
    assert checks["formula_cells"] == 0 and checks["sampled"] == paid
    for side in ("ours", "pandas"):
        assert result[side]["peak_rss_mb"] >= result[side]["rss_before_mb"] > 0
