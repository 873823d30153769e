"""The payments page at scale: realistic payments bulk-loaded into a scratch database, then the
page's service calls timed (p50/p95 over several runs), the page itself rendered through AppTest,
and the naive approach (read the whole table into pandas, filter there) timed in the same run.

    python -m bench.payments_page --rows 1000000 [--database-url URL] [--runs 7]

Without --database-url a scratch SQLite file in a temporary directory is used (and deleted).
A --database-url must point at an empty database (PostgreSQL loads with COPY); it is left as is.
`python -m bench.run` runs these measurements on SQLite and on a throwaway PostgreSQL server at
1,000,000 payments; its table (README.md, Benchmarks) holds the current figures and the targets.
The payments are written oldest first, as a live table fills, so ids follow time.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Index, func, insert, select, text

from services.auth.access import Actor
from services.core.config import Settings
from services.core.db import Database
from services.core.kst import kst_day_bounds, kst_today
from services.core.migrate import upgrade
from services.core.models import Payment, Role
from services.payments.search import (
    MAX_RANGE_DAYS,
    PaymentFilters,
    PaymentState,
    payment_totals,
    search_payments,
)
from services.runtime import Runtime, make_gateway

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 20_000
SURNAMES = "김이박최정강조윤장임한오서신권황안송류전홍고문양손배백허유남심노하곽성차주우구민진나지엄채원천방공현함변염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부황보"
GIVEN = ["민준", "서연", "지호", "수아", "도윤", "하은", "시우", "지유", "주원", "서윤", "예준", "하린", "건우", "지민"]
ROMAN = ["minjun", "seoyeon", "jiho", "sua", "doyun", "haeun", "siwoo", "jiyu", "juwon", "seoyun", "yejun", "harin"]
DOMAINS = ["gmail.com", "naver.com", "daum.net", "kakao.com", "example.com"]
FOREIGN = [("John Smith", "john.smith"), ("Emma Brown", "emma.brown"), ("Liam Chen", "liam.chen")]


# -- data ---------------------------------------------------------------------------------------


# The columns the generator fills, in order; every other column is NULL.
COLUMNS = (
    "imp_uid",
    "merchant_uid",
    "status",
    "amount",
    "cancel_amount",
    "currency",
    "name",
    "pg_provider",
    "pay_method",
    "card_name",
    "card_number",
    "buyer_name",
    "buyer_email",
    "buyer_tel",
    "fail_reason",
    "started_at",
    "paid_at",
    "failed_at",
    "cancelled_at",
    "verified",
    "synced_at",
    "created_at",
    "updated_at",
)


def _payment_rows(count: int, *, days: int, seed: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Consignment-fee payments over the last `days` days: KRW 50,000 (kcp) and USD 38.50
    (Eximbay); mostly paid, some partly or fully refunded, failed, waiting vbank, a few forgeries.
    Oldest first, as a live table fills: row order (ids) follows time, with random gaps."""
    rng = random.Random(seed)
    slot = days * 86_400 / count
    oldest = now - timedelta(days=days)
    for index in range(count):
        started = oldest + timedelta(seconds=(index + rng.random()) * slot)
        usd = rng.random() < 0.08
        currency, amount = ("USD", Decimal("38.50")) if usd else ("KRW", Decimal(50000))
        roll = rng.random()
        pay_method = "card" if usd or roll < 0.85 else ("vbank" if roll < 0.95 else "trans")
        state = rng.random()
        status, cancel, paid, failed, cancelled, verified = "paid", Decimal(0), started, None, None, True
        if state < 0.03:
            status, paid, failed = "failed", None, started + timedelta(seconds=5)
        elif state < 0.045 and pay_method == "vbank":
            status, paid = "ready", None
        elif state < 0.095:
            status, cancel, cancelled = "cancelled", amount, started + timedelta(hours=rng.randint(1, 72))
        elif state < 0.135:
            cancel = Decimal("10.00") if usd else Decimal(20000)
            cancelled = started + timedelta(hours=rng.randint(1, 72))
        elif state < 0.1355:
            status, amount, cancel, verified = "cancelled", Decimal(1000), Decimal(1000), False
            cancelled = started + timedelta(seconds=3)
        if paid is not None and pay_method == "vbank":
            paid = started + timedelta(hours=rng.randint(1, 48))
        paid, failed, cancelled = (None if t is None else min(t, now) for t in (paid, failed, cancelled))  # no future
        if usd:
            name, local = FOREIGN[index % len(FOREIGN)]
            phone = f"+1 415 555 {index % 10_000:04d}"
        else:
            name = SURNAMES[rng.randrange(len(SURNAMES))] + GIVEN[rng.randrange(len(GIVEN))]
            local = ROMAN[rng.randrange(len(ROMAN))]
            phone = f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        yield (
            f"imp_{index:012d}",
            f"chekar_{started:%Y%m%d}_{index:012x}",
            status,
            amount,
            cancel,
            currency,
            "체카 탁송비",
            "eximbay" if usd else "kcp",
            pay_method,
            "신한카드" if pay_method == "card" else None,
            "411111******1111" if pay_method == "card" else None,
            name,
            f"{local}{index % 997}@{DOMAINS[index % len(DOMAINS)]}",
            phone,
            "카드 승인 거절" if status == "failed" else None,
            started,
            paid,
            failed,
            cancelled,
            verified,
            started,
            started,
            cancelled or paid or started,
        )


def _secondary_indexes() -> list[Index]:
    """Payment indexes that can be dropped for the load and rebuilt after (not the unique key)."""
    return [index for index in Payment.__table__.indexes if not index.unique]


def _sqlite_value(value: Any) -> Any:
    """What SQLAlchemy's SQLite types store, computed directly (its per-value processing is
    most of the load time): UTC times as `YYYY-MM-DD HH:MM:SS.ffffff`, money as exact text
    (the NUMERIC column converts it), booleans as 0/1."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _insert_sqlite(connection: Connection, rows: Iterator[tuple[Any, ...]]) -> None:
    # The Core statement compiled once ("INSERT INTO payments (...) VALUES (?, ...)"), then the
    # driver's executemany with plain tuples.
    statement = str(insert(Payment.__table__).compile(dialect=connection.dialect, column_keys=list(COLUMNS)))
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(tuple(_sqlite_value(value) for value in row))
        if len(chunk) == CHUNK:
            connection.exec_driver_sql(statement, chunk)
            chunk = []
    if chunk:
        connection.exec_driver_sql(statement, chunk)


def _copy_postgres(connection: Connection, rows: Iterator[tuple[Any, ...]]) -> None:
    raw = connection.connection.driver_connection
    assert raw is not None
    statement = f"COPY payments ({', '.join(COLUMNS)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row(row)


def load(database_url: str, rows: int, *, days: int = 365, seed: int = 7) -> float:
    """Create the schema (migrations) and load `rows` payments; returns the seconds it took."""
    started = time.perf_counter()
    upgrade(database_url)
    db = Database(database_url)
    try:
        with db.engine.begin() as connection:
            if connection.scalar(select(func.count()).select_from(Payment)):
                raise SystemExit("the database already holds payments: point --database-url at an empty one")
            for index in _secondary_indexes():
                index.drop(connection)
            generated = _payment_rows(rows, days=days, seed=seed, now=datetime.now(UTC))
            if db.is_sqlite:
                _insert_sqlite(connection, generated)
            else:
                _copy_postgres(connection, generated)
            for index in _secondary_indexes():
                index.create(connection)
        # Planner statistics (and PostgreSQL's visibility map, for index-only scans), as a
        # database that has been running a while would have them.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE" if db.is_sqlite else "VACUUM ANALYZE payments"))
    finally:
        db.dispose()
    return time.perf_counter() - started


# -- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    name: str
    runs: list[float]
    rows: int

    @property
    def p50(self) -> float:
        return statistics.median(self.runs)

    @property
    def p95(self) -> float:
        ordered = sorted(self.runs)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _time(name: str, runs: int, call: Callable[[], int]) -> Timing:
    times, shown = [], 0
    for _ in range(runs):
        begin = time.perf_counter()
        shown = call()
        times.append(time.perf_counter() - begin)
    return Timing(name, times, shown)


def _scenarios(rt: Runtime, today: date) -> dict[str, PaymentFilters]:
    with rt.db.read() as session:  # a payment from the last days, to search for
        sample = session.execute(
            select(Payment.imp_uid, Payment.buyer_tel, Payment.buyer_email)
            .where(Payment.buyer_tel.startswith("010"))
            .order_by(Payment.started_at.desc())
            .limit(1)
        ).one()
    widest = today - timedelta(days=MAX_RANGE_DAYS - 1)
    return {
        "first page (default filters) + totals": PaymentFilters.default(today=today),
        "filter change: failed + partly refunded": PaymentFilters.default(
            today=today, states=(PaymentState.FAILED, PaymentState.PARTIALLY_REFUNDED)
        ),
        "filter change: USD, 90 days, paid basis": PaymentFilters(
            date_from=today - timedelta(days=89), date_to=today, currencies=("USD",), time_basis="paid"
        ),
        "filter change: the widest range (92 days)": PaymentFilters(
            date_from=today - timedelta(days=MAX_RANGE_DAYS - 1), date_to=today
        ),
        "filter change: forgery only, 92 days": PaymentFilters(
            date_from=today - timedelta(days=MAX_RANGE_DAYS - 1), date_to=today, states=(PaymentState.FORGERY,)
        ),
        "search: phone prefix (digits only)": PaymentFilters(
            date_from=widest, date_to=today, query=sample.buyer_tel.replace("-", "")[:8]
        ),
        "search: exact imp_uid (92 days)": PaymentFilters(date_from=widest, date_to=today, query=sample.imp_uid),
        "search: broad prefix '010' (7 days)": PaymentFilters.default(today=today, query="010"),
        "search: broad prefix '010' (92 days)": PaymentFilters(date_from=widest, date_to=today, query="010"),
        "search: e-mail prefix (92 days)": PaymentFilters(
            date_from=widest, date_to=today, query=sample.buyer_email.split("@")[0]
        ),
    }


def measure_services(rt: Runtime, runs: int) -> list[Timing]:
    actor = Actor("bench", Role.OPERATOR)
    today = kst_today()
    timings = []
    for name, filters in _scenarios(rt, today).items():

        def call(filters: PaymentFilters = filters) -> int:
            page = search_payments(rt, actor=actor, filters=filters)
            payment_totals(rt, actor=actor, filters=filters)
            return len(page.rows)

        timings.append(_time(name, runs, call))
    first = PaymentFilters.default(today=today)
    cursor = search_payments(rt, actor=actor, filters=first).next_cursor

    def next_page() -> int:
        return len(search_payments(rt, actor=actor, filters=first, cursor=cursor).rows)

    timings.append(_time("next page (keyset cursor)", runs, next_page))
    return timings


NAIVE_COLUMNS = (
    "id, imp_uid, merchant_uid, status, amount, cancel_amount, currency, buyer_name, buyer_email, buyer_tel, "
    "started_at, paid_at"
)


def naive_first_page(connection: Any, start: datetime, end: datetime) -> tuple[Any, Any]:
    """What a page without server-side paging would do: the whole table into pandas, then the
    default filters (the last 7 KST days), newest first, 50 rows, totals per currency."""
    import pandas as pd

    frame = pd.read_sql_query(f"SELECT {NAIVE_COLUMNS} FROM payments", connection)  # noqa: S608 - constant
    times = pd.to_datetime(frame["started_at"], utc=True, format="mixed")
    window = frame[(times >= start) & (times < end)]
    page = window.sort_values("started_at", ascending=False).head(50)
    totals = window.groupby("currency")[["amount", "cancel_amount"]].sum()
    return page, totals


def measure_naive(database_url: str, runs: int) -> Timing:
    """The naive page's query side, timed like ours."""
    db = Database(database_url)
    start, end = kst_day_bounds(kst_today() - timedelta(days=6), kst_today())

    def call() -> int:
        with db.engine.connect() as connection:
            page, _ = naive_first_page(connection, start, end)
        return len(page)

    try:
        return _time(NAIVE, runs, call)
    finally:
        db.dispose()


NAIVE = "naive: whole table into pandas + filter"
NAIVE_PAGE = """
import streamlit as st
from sqlalchemy import create_engine
from bench.payments_page import naive_first_page, kst_day_bounds, kst_today, timedelta

engine = create_engine({url!r})
start, end = kst_day_bounds(kst_today() - timedelta(days=6), kst_today())
with engine.connect() as connection:
    page, totals = naive_first_page(connection, start, end)
engine.dispose()
st.title("Payments (naive)")
for currency, row in totals.iterrows():
    st.metric(currency, f"{{row['amount']:,}}")
st.dataframe(page)
"""


def measure_naive_apptest(database_url: str) -> Timing:
    """The dashboard's peer: a Streamlit page doing the naive thing, rendered through AppTest."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(NAIVE_PAGE.format(url=database_url), default_timeout=600)
    begin = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - begin
    if at.exception:
        raise RuntimeError(f"the naive page failed: {at.exception[0].message}")
    return Timing("AppTest: naive page (pandas whole table)", [seconds], len(at.dataframe[0].value))


def measure_apptest(database_url: str, query: str) -> list[Timing]:
    """views/payments.py rendered through Streamlit's AppTest, signed in as an operator."""
    from streamlit.testing.v1 import AppTest

    from services.auth import dashboard_sessions
    from services.auth.accounts import create_user
    from services.core.models import User

    settings = Settings(database_url=database_url, portone_mode="sandbox")
    rt = Runtime(settings=settings, db=Database(database_url), gateway=make_gateway(settings))
    with rt.db.read() as session:
        exists = session.scalar(select(User).where(User.username == "bench-operator"))
    if exists is None:
        create_user(rt, username="bench-operator", password=secrets.token_urlsafe(16), role="operator", actor=None)
    sign_in, _code = dashboard_sessions.start(rt, username="bench-operator")
    rt.close()
    previous = {name: os.environ.get(name) for name in ("DATABASE_URL", "PORTONE_MODE", "PORTONE_API_URL")}
    os.environ.update(DATABASE_URL=database_url, PORTONE_MODE="sandbox", PORTONE_API_URL="http://127.0.0.1:9")
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["auth_session_id"] = sign_in.id  # as the sign-in form leaves it
        at.run()
        begin = time.perf_counter()
        at.switch_page("views/payments.py").run()
        first = time.perf_counter() - begin
        if at.exception:
            raise RuntimeError(f"the payments page failed: {at.exception[0].message}")
        shown = len(at.dataframe[0].value) if at.dataframe else 0
        begin = time.perf_counter()
        at.multiselect(key="payments.states").set_value(["failed", "partially_refunded"]).run()
        change = time.perf_counter() - begin
        changed = len(at.dataframe[0].value) if at.dataframe else 0
        at.multiselect(key="payments.states").set_value([]).run()
        begin = time.perf_counter()
        at.text_input(key="payments.query").input(query).run()
        searched = time.perf_counter() - begin
        found = len(at.dataframe[0].value) if at.dataframe else 0
        return [
            Timing("AppTest: render views/payments.py", [first], shown),
            Timing("AppTest: filter change (failed + partly refunded)", [change], changed),
            Timing("AppTest: search (exact imp_uid)", [searched], found),
        ]
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _newest_imp_uid(database_url: str) -> str:
    db = Database(database_url)
    try:
        with db.read() as session:
            return str(session.scalar(select(Payment.imp_uid).order_by(Payment.started_at.desc()).limit(1)))
    finally:
        db.dispose()


def _table(timings: list[Timing]) -> str:
    width = max(len(t.name) for t in timings)
    lines = [f"{'measurement':<{width}}  {'runs':>4}  {'p50 ms':>9}  {'p95 ms':>9}  {'rows':>5}"]
    lines.append("-" * len(lines[0]))
    for timing in timings:
        lines.append(
            f"{timing.name:<{width}}  {len(timing.runs):>4}  {timing.p50 * 1000:>9.1f}  "
            f"{timing.p95 * 1000:>9.1f}  {timing.rows:>5}"
        )
    return "\n".join(lines)


def run(
    *, rows: int, database_url: str | None, runs: int, naive_runs: int, apptest: bool, days: int = 365
) -> list[Timing]:
    with tempfile.TemporaryDirectory(prefix="chekar-bench-") as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'payments-bench.db'}"
        seconds = load(url, rows, days=days)
        print(f"loaded {rows:,} payments in {seconds:.1f} s ({rows / seconds:,.0f} rows/s) into {url}")
        settings = Settings(database_url=url, portone_mode="sandbox")
        rt = Runtime(settings=settings, db=Database(url), gateway=make_gateway(settings))
        try:
            timings = measure_services(rt, runs)
        finally:
            rt.close()
        if apptest:
            timings += measure_apptest(url, query=_newest_imp_uid(url))
        if naive_runs:
            timings.append(measure_naive(url, naive_runs))
        if apptest and naive_runs:
            timings.append(measure_naive_apptest(url))
        print(_table(timings))
        return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="an EMPTY database (default: scratch SQLite)")
    parser.add_argument("--runs", type=int, default=7, help="runs per service measurement")
    parser.add_argument("--naive-runs", type=int, default=1, help="runs of the pandas approach (0: skip)")
    parser.add_argument("--days", type=int, default=365, help="spread the payments over this many days")
    parser.add_argument("--no-apptest", action="store_true", help="skip rendering the page through AppTest")
    args = parser.parse_args(argv)
    run(
        rows=args.rows,
        database_url=args.database_url,
        runs=args.runs,
        naive_runs=args.naive_runs,
        apptest=not args.no_apptest,
        days=args.days,
    )


if __name__ == "__main__":
    main()
