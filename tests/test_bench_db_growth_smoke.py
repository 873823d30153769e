"""The database-growth benchmark still runs (at 200 payments, on SQLite and PostgreSQL) and writes
what production writes per payment, and the retention purge then deletes what it should, so README's figures can be measured again."""

from __future__ import annotations

from bench import db_growth


def test_the_growth_bench_runs_at_two_hundred_payments(database_url: str) -> None:
    result = db_growth.run(200, database_url=database_url, workers=2)

    rows = result["rows"]
    assert rows["orders"] == rows["payments"] == 200
    assert rows["webhook_events"] == 200 * db_growth.DELIVERIES_PER_PAYMENT
    assert rows["refunds"] == result["refunds"] == 10
    assert rows["reconciliation_runs"] == result["runs"] == 144  # one every 10 minutes over a day
    assert rows["payment_snapshots"] >= 200 * 3  # /complete and each verified delivery
    assert rows["audit_log"] >= 200 + 2 * 10  # each order, each refund requested and done
    assert "alerts" not in rows  # clean traffic raises nothing
    assert all(size > 0 for size in result["groups_bytes"].values()), result["groups_bytes"]
    purged = result["purge"]  # RETENTION_DAYS later: the day's deliveries go, the newest run stays
    assert purged["deleted"]["webhook_events"] == 400 and purged["deleted"]["reconciliation_runs"] == 143
    assert purged["groups_bytes_after"]["webhook log"] < result["groups_bytes"]["webhook log"]
    assert purged["groups_bytes_after"]["audit"] == result["groups_bytes"]["audit"]  # the record stays
    table = db_growth.report(result)
    assert "| webhook log |" in table and "per 10,000 payments" in table
