"""The soak's short variant (`make soak` runs the same driver for ten minutes): the sandbox and our
API as real processes on loopback, a mixed load for a few seconds on SQLite and on PostgreSQL,
then every check of bench/soak.py."""

from __future__ import annotations

import json

import pytest

from bench import soak

SECONDS = 12  # enough for the memory check's warm-up plus four quarters of samples


@pytest.mark.slow
@pytest.mark.reliability(
    area="load",
    case="sustained mixed load: orders, completes, webhooks, refunds, dashboard reads",
    outcome="no 5xx; no payment, webhook or refund lost or doubled; API memory flat (make soak: 10 min)",
)
def test_short_soak_loses_nothing_doubles_nothing_and_stays_flat(database_url: str) -> None:
    report = soak.run(SECONDS, database_url)

    shown = soak.summary(report) + "\n" + json.dumps(report["details"], indent=1, default=str)
    assert report["failures"] == [], shown + "\n" + report["api_log_tail"]
    # The load really ran: every kind of request was sent, and answered.
    kinds = ["order", "checkout", "complete", "webhook", "refund", "deposit"]
    kinds += ["dashboard: payments page", "dashboard: payment totals", "dashboard: overview"]
    kinds += ["dashboard: payment detail"]
    assert all(report["throughput"][kind]["count"] > 0 for kind in kinds), shown
    totals = report["totals"]
    assert totals["refunds_succeeded"] > 0 and totals["sandbox_webhook_deliveries"] > 0, shown
    assert report["memory"]["api"]["samples"] >= 8, shown
