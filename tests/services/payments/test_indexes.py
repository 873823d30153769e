"""The payments page's forgery filter is served by the partial indexes of unverified payments
(migration 0005) on both databases: their WHERE must stay what the queries say. The other state
filters walk the date range's covering index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from bench.payments_page import load
from services.auth.access import Actor
from services.core.config import Settings
from services.core.db import Database
from services.core.kst import kst_today
from services.core.models import Role
from services.payments import search as ps
from services.runtime import Runtime, make_gateway

OPERATOR = Actor("operator", Role.OPERATOR)


def _plan(runtime: Runtime, statement: str, parameters: Any) -> str:
    with runtime.db.engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        if runtime.db.is_sqlite:
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            return "\n".join(str(row[3]) for row in rows)
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN " + statement, parameters)
            return "\n".join(str(row[0]) for row in cursor.fetchall())


def _runtime(database_url: str) -> Runtime:
    load(database_url, 3000, days=90)  # migrated, ANALYZEd; a handful of forgeries among them
    settings = Settings(database_url=database_url, portone_mode="sandbox")
    return Runtime(settings=settings, db=Database(database_url), gateway=make_gateway(settings))


def _page_and_totals(runtime: Runtime, filters: ps.PaymentFilters) -> tuple[Any, list[Any], list[tuple[str, Any]]]:
    """The page, its totals per currency, and the two statements they ran."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "FROM payments" in " ".join(statement.split()):
            statements.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", capture)
    try:
        page = ps.search_payments(runtime, actor=OPERATOR, filters=filters)
        totals = ps.payment_totals(runtime, actor=OPERATOR, filters=filters)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", capture)
    return page, totals, statements


def _filters(state: ps.PaymentState, basis: str) -> ps.PaymentFilters:
    today = kst_today()
    start = today - timedelta(days=ps.MAX_RANGE_DAYS - 1)
    return ps.PaymentFilters(date_from=start, date_to=today, states=(state,), time_basis=basis)


@pytest.mark.parametrize("basis", ["started", "paid"])
def test_the_forgery_filter_reads_the_unverified_indexes(database_url: str, basis: str) -> None:
    runtime = _runtime(database_url)
    try:
        page, [totals], statements = _page_and_totals(runtime, _filters(ps.PaymentState.FORGERY, basis))

        with runtime.db.read() as session:  # the filter finds exactly the forgeries
            forgeries = session.scalar(
                text("SELECT count(*) FROM payments WHERE status IN ('paid', 'cancelled') AND NOT verified")
            )
        assert 0 < totals.count == forgeries == len(page.rows)
        assert len(statements) == 2
        for statement, parameters in statements:
            plan = _plan(runtime, statement, parameters)
            assert "ix_payments_unverified_" in plan, plan  # (the planner may walk either, both are tiny)
    finally:
        runtime.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("state", [ps.PaymentState.PAID, ps.PaymentState.READY, ps.PaymentState.FAILED])
def test_a_state_filter_walks_the_date_range_covering_index(database_url: str, state: ps.PaymentState) -> None:
    runtime = _runtime(database_url)
    try:
        page, totals, statements = _page_and_totals(runtime, _filters(state, "started"))
        assert sum(t.count for t in totals) >= len(page.rows) > 0
        for statement, parameters in statements:
            plan = _plan(runtime, statement, parameters)
            assert "ix_payments_started_at_cover" in plan, plan
    finally:
        runtime.close()
