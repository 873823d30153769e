"""CSV exports: Excel-safe text, exact numbers, masking by role, chunked streaming, audit, signed links."""

from __future__ import annotations

import csv
import io
import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from services.auth import accounts as users
from services.auth.access import Actor
from services.core.errors import Forbidden
from services.core.kst import KST, kst_today
from services.core.models import AuditEntry, Payment, Role
from services.payments.sync import apply_payment
from services.refunds import engine as refunds
from services.reporting import export_links, export_writer, exports
from services.runtime import Runtime
from tests.factories import SandboxControl, sign_in_as
from tests.services.reporting.test_sales import forgery, paid, paid_in_the_past

ADMIN = Actor("admin", Role.ADMIN)
OPERATOR = Actor("operator", Role.OPERATOR)
VIEWER = Actor("viewer", Role.VIEWER)
EVIL_NAME = "=cmd|' /C calc'!A0"
BUYER = {"buyer_name": EVIL_NAME, "buyer_email": "hong.gildong@example.com", "buyer_tel": "010-1234-5678"}


def parse(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 byte order mark for Excel"
    return list(csv.DictReader(io.StringIO(data[3:].decode("utf-8"), newline="")))


def today_filters(**extra: object) -> exports.ExportFilters:
    """Yesterday and today (KST): the test's payments are today's, even if it runs across midnight."""
    day = kst_today()
    return exports.ExportFilters(start=day - timedelta(days=1), end=day, **extra)  # type: ignore[arg-type]


# -- pure cell rules ----------------------------------------------------------------------------


@pytest.mark.reliability(
    area="hostile input",
    case="formula injection (= + - @ tab CR) in any CSV text cell",
    outcome="cell neutralised; the CSV parses back",
)
@pytest.mark.parametrize(
    ("text", "written"),
    [
        (EVIL_NAME, "'" + EVIL_NAME),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("-5000", "'-5000"),  # text that merely looks like a number is still text
        ("김체카", "김체카"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_cells_are_neutralised(text: str, written: str) -> None:
    assert export_writer.render(text) == written


def test_typed_cells_are_plain_numbers() -> None:
    assert export_writer.render(export_writer.Money(Decimal("-7500"), "KRW")) == "-7500"
    assert export_writer.render(export_writer.Money(Decimal("-2.5"), "USD")) == "-2.50"
    assert export_writer.render(export_writer.Money(Decimal("38.5"), "USD")) == "38.50"
    assert export_writer.render(export_writer.Money(Decimal("50000.00"), "KRW")) == "50000"
    assert export_writer.render(Decimal("-3")) == "-3"
    assert export_writer.render(-4) == "-4"
    assert export_writer.render(True) == "Y" and export_writer.render(None) == ""
    assert export_writer.render(datetime(2025, 3, 31, 15, 30, tzinfo=UTC)) == "2025-04-01 00:30:00"
    line = export_writer.csv_text([[export_writer.Money(Decimal("-1"), "KRW"), "-1"]])
    assert line == "-1,'-1\r\n"


TRICKY_CELLS = ["", "김체카", "plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "=1+1", "+82 10", "-5", "@x",
                "\tTAB", "'quoted", ",", '"', "-", "x=1", "010-****-5678"]  # fmt: skip


def test_the_fast_row_writer_writes_what_the_careful_one_does() -> None:
    # Exports join the usual row in one go (csv_chunk); any row that needs quoting or neutralising
    # must come out exactly as csv.writer over `render`ed cells would write it.
    rng = random.Random(6)
    text_cells = (0, 2, 3)
    rows = [[rng.choice(TRICKY_CELLS) for _ in range(4)] + ["-1.50"] for _ in range(3000)]
    careful = export_writer.csv_lines(
        [[export_writer.neutralise(cell) if i in text_cells else cell for i, cell in enumerate(row)] for row in rows]
    )
    assert export_writer.csv_chunk([list(row) for row in rows], text_cells) == careful
    assert export_writer.csv_chunk([["=x", "-1"]], (0,)) == "'=x,-1\r\n"  # money keeps its sign


def test_times_are_kst_to_the_second_and_money_exact_on_both_databases(runtime: Runtime) -> None:
    # The database formats the times (truncated like `render`, never rounded up to the next
    # second) and hands money over as exact hundredths, also from SQLite's REAL.
    paid_at = datetime(2025, 3, 31, 15, 30, 59, 999_999, tzinfo=UTC)
    with runtime.db.write() as session:
        session.add(
            Payment(imp_uid="imp_kst_edge", merchant_uid="m_kst_edge", status="paid", amount=Decimal("0.29"),
                    cancel_amount=Decimal("0.10"), currency="USD", buyer_name="=HYPERLINK(1)", buyer_tel="010-1234-5678",
                    paid_at=paid_at, cancelled_at=datetime(2025, 12, 31, 15, 0, tzinfo=UTC), verified=True)
        )  # fmt: skip
    request = exports.prepare(
        actor=ADMIN, kind="payments", filters=exports.ExportFilters(date(2025, 4, 1), date(2025, 4, 1))
    )
    [row] = parse(exports.build_file(runtime, request).data)
    assert row["결제시각 (KST UTC+09:00)"] == export_writer.render(paid_at) == "2025-04-01 00:30:59"
    assert row["취소시각 (KST UTC+09:00)"] == "2026-01-01 00:00:00"
    assert (row["결제금액"], row["환불금액"], row["잔액"]) == ("0.29", "0.10", "0.19")
    assert row["구매자명"] == "'=" + "*" * 11 + ")"  # masked, then neutralised


# -- exports from the database ----------------------------------------------------------------


def _seed(runtime: Runtime, sandbox: SandboxControl) -> dict[str, str]:
    krw = paid(runtime, sandbox, **BUYER)
    usd = paid(runtime, sandbox, "USD", buyer_name="@SUM(1)")
    refunds.refund(runtime, imp_uid=krw, amount="1000", reason="+1", actor="kim", idempotency_key="e1")
    refunds.refund(runtime, imp_uid=krw, amount="2000", reason="-2+3", actor="kim", idempotency_key="e2")
    refunds.refund(runtime, imp_uid=usd, amount="10.25", reason="@SUM(1)", actor="lee", idempotency_key="e3")
    return {"krw": krw, "usd": usd, "forgery": forgery(runtime, sandbox)}


@pytest.mark.reliability(
    area="access",
    case="personal data in CSV exports by role",
    outcome="masked for a viewer (and unless admin); whole for an admin",
)
def test_payments_export_masked_for_a_viewer_unmasked_for_an_admin(runtime: Runtime, sandbox: SandboxControl) -> None:
    ids = _seed(runtime, sandbox)
    masked = exports.prepare(actor=VIEWER, kind="payments", filters=today_filters())
    data = exports.build_file(runtime, masked).data
    rows = {r["포트원 결제번호"]: r for r in parse(data)}
    header = data[3:].decode().splitlines()[0]
    assert header.startswith("포트원 결제번호,주문번호,상태,결제시각 (KST UTC+09:00),")
    assert set(rows) == set(ids.values())
    krw, usd = rows[ids["krw"]], rows[ids["usd"]]
    assert krw["구매자명"] == "'=****************0"  # masked, and still neutralised
    assert krw["구매자 이메일"] == "h***@example.com"
    assert krw["구매자 전화번호"] == "010-****-5678"
    assert usd["구매자명"] == "'@*****)"
    assert (krw["결제금액"], krw["환불금액"], krw["잔액"], krw["통화"]) == ("50000", "3000", "47000", "KRW")
    assert (usd["결제금액"], usd["환불금액"], usd["잔액"]) == ("38.50", "10.25", "28.25")
    assert rows[ids["forgery"]]["주문금액 일치"] == "N" and krw["주문금액 일치"] == "Y"
    paid_at = datetime.strptime(krw["결제시각 (KST UTC+09:00)"] + " +0900", "%Y-%m-%d %H:%M:%S %z")
    assert abs(datetime.now(UTC) - paid_at) < timedelta(minutes=5)

    with pytest.raises(Forbidden):
        exports.prepare(actor=OPERATOR, kind="payments", filters=today_filters(), include_personal_data=True)
    full = exports.prepare(
        actor=ADMIN, kind="payments", filters=today_filters(), include_personal_data=True, language="en"
    )
    rows = {r["imp_uid"]: r for r in parse(exports.build_file(runtime, full).data)}
    assert rows[ids["krw"]]["buyer_name"] == "'" + EVIL_NAME
    assert rows[ids["krw"]]["buyer_email"] == "hong.gildong@example.com"
    assert rows[ids["krw"]]["buyer_phone"] == "010-1234-5678"
    assert rows[ids["usd"]]["amount"] == "38.50"

    with runtime.db.read() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "export.csv")).all()
    assert [(e.actor, e.target, e.detail["masked"], e.detail["rows"], e.detail["completed"]) for e in entries] == [
        ("viewer", "payments", True, 3, True),
        ("admin", "payments", False, 3, True),
    ]
    day = kst_today()
    expected = {"start": (day - timedelta(days=1)).isoformat(), "end": day.isoformat(), "granularity": "day"}
    assert entries[0].detail["filters"] == expected
    only_usd = exports.prepare(actor=VIEWER, kind="payments", filters=today_filters(currency="USD"))
    assert exports.estimate_rows(runtime, only_usd) == 1


def test_refunds_and_alerts_exports(runtime: Runtime, sandbox: SandboxControl) -> None:
    ids = _seed(runtime, sandbox)
    request = exports.prepare(actor=OPERATOR, kind="refunds", filters=today_filters(status="succeeded"))
    rows = parse(exports.build_file(runtime, request).data)
    ours = [r for r in rows if r["경로"] != "forgery"]
    assert [(r["사유"], r["환불금액"], r["통화"]) for r in ours] == [
        ("'+1", "1000", "KRW"),
        ("'-2+3", "2000", "KRW"),
        ("'@SUM(1)", "10.25", "USD"),
    ]
    assert ours[0]["구매자명"] == "'=****************0"
    forged = [r for r in rows if r["경로"] == "forgery"]
    assert [(r["포트원 결제번호"], r["환불금액"]) for r in forged] == [(ids["forgery"], "100")]
    assert exports.estimate_rows(runtime, request) == len(rows) == 4

    alerts = exports.prepare(actor=VIEWER, kind="alerts", filters=today_filters(alert_kind="amount_mismatch"))
    [alert] = parse(exports.build_file(runtime, alerts).data)
    assert (alert["종류"], alert["심각도"], alert["상태"]) == ("amount_mismatch", "critical", "open")
    assert (alert["우리 기록"], alert["포트원 기록"]) == ("50000 KRW", "100 KRW")


def test_summary_export_keeps_a_negative_net_a_number(runtime: Runtime, sandbox: SandboxControl) -> None:
    paid_in_the_past(
        runtime,
        sandbox,
        datetime(2025, 3, 31, 15, 30, tzinfo=UTC),
        cancels=[("7500", datetime(2025, 4, 2, 1, 0, tzinfo=UTC)), ("2500", datetime(2025, 5, 1, 0, 0, tzinfo=UTC))],
    )
    filters = exports.ExportFilters(start=date(2025, 4, 1), end=date(2025, 4, 2))
    request = exports.prepare(actor=VIEWER, kind="summary", filters=filters, language="en")
    rows = parse(exports.build_file(runtime, request).data)
    assert [(r["period_kst"], r["gross"], r["refunds"], r["net"]) for r in rows] == [
        ("2025-04-01", "50000", "0", "50000"),
        ("2025-04-02", "0", "7500", "-7500"),
    ]
    month = exports.ExportFilters(start=date(2025, 3, 1), end=date(2025, 5, 31), granularity="month")
    request = exports.prepare(actor=VIEWER, kind="summary", filters=month, language="en")
    assert [
        (r["period_kst"], r["refund_count"], r["net"]) for r in parse(exports.build_file(runtime, request).data)
    ] == [
        ("2025-04", "1", "42500"),
        ("2025-05", "1", "-2500"),
    ]


def test_chunked_stream_equals_one_chunk_and_abandoning_is_audited(runtime: Runtime, sandbox: SandboxControl) -> None:
    """600 PortOne payments (sandbox bulk insert, recorded by the sync service) streamed in
    chunks of 7 rows give byte for byte the file one chunk gives (87 chunks against 1)."""
    count = 600
    start = int(time.time()) - 3600
    specs = [
        {
            "merchant_uid": f"ext_{i:05d}",
            "amount": "38.50" if i % 3 == 0 else "50000",
            "currency": "USD" if i % 3 == 0 else "KRW",
            "pg_provider": "eximbay" if i % 3 == 0 else "kcp",
            "status": "paid",
            "paid_at": start + i,
            "buyer_name": ["=1+1", "-2", "홍길동", "+82"][i % 4] + str(i),
        }
        for i in range(count)
    ]
    sandbox.http.post("/sandbox/payments/bulk", json={"payments": specs}).raise_for_status()
    page: int | None = 1
    while page:
        fetched = runtime.gateway.list_payments(status="paid", page=page, since=datetime.fromtimestamp(start - 1, UTC))
        with runtime.db.write() as session:
            for payment in fetched.payments:
                apply_payment(session, payment, source="sync")
        page = fetched.next_page

    first = datetime.fromtimestamp(start, UTC).astimezone(KST).date()
    filters = exports.ExportFilters(start=first, end=first + timedelta(days=1))
    request = exports.prepare(actor=ADMIN, kind="payments", filters=filters, include_personal_data=True)
    assert exports.estimate_rows(runtime, request) == count
    small = list(exports.stream(runtime, request, chunk_rows=7))
    assert len(small) == 1 + -(-count // 7)
    assert all(chunk.count("\r\n") <= 7 for chunk in small[1:])
    whole = list(exports.stream(runtime, request, chunk_rows=10_000))
    assert len(whole) == 2
    assert "".join(small) == "".join(whole)
    rows = parse("".join(small).encode())
    assert len(rows) == count
    assert [r["구매자명"][:3] for r in rows[:4]] == ["'=1", "'-2", "홍길동", "'+8"]
    assert {r["결제금액"] for r in rows} == {"38.50", "50000"}

    partial = exports.stream(runtime, request, chunk_rows=100)
    next(partial), next(partial), next(partial)
    partial.close()  # the browser went away after two chunks of rows
    with runtime.db.read() as session:
        last = session.scalars(select(AuditEntry).where(AuditEntry.action == "export.csv").order_by(AuditEntry.id))
        details = [e.detail for e in last]
    assert [(d["rows"], d["completed"]) for d in details] == [(count, True), (count, True), (200, False)]


# -- signed links -------------------------------------------------------------------------------


def _users(runtime: Runtime, *roles: str) -> None:
    for role in roles:
        users.create_user(runtime, username=role, password=f"{role}-password-1", role=role, actor=None)


@pytest.mark.reliability(
    area="access",
    case="export links: expired, tampered, other kind, demoted user",
    outcome="refused",
)
def test_links_valid_expired_tampered_wrong_kind_and_demoted(runtime: Runtime) -> None:
    _users(runtime, "admin", "operator")
    filters = exports.ExportFilters(start=date(2025, 1, 1), end=date(2025, 1, 31), currency="KRW")
    unmasked = exports.prepare(actor=ADMIN, kind="payments", filters=filters, include_personal_data=True)
    link = export_links.issue_link(runtime, unmasked, sign_in=sign_in_as("admin"))
    assert link.url.startswith("http://127.0.0.1:8000/api/exports/payments.csv?token=")
    assert link.link_id not in link.token  # the id travels signed and encoded, never bare
    ttl = runtime.settings.export_link_ttl_seconds
    assert abs((link.expires_at - datetime.now(UTC)).total_seconds() - ttl) < 5

    with pytest.raises(export_links.ExportLinkExpired):
        export_links.redeem_link(runtime, link.token, kind="payments", now=time.time() + ttl + 1)
    payload, _, signature = link.token.rpartition(".")
    for bad in (
        f"{payload}.{signature[:-2]}AA",
        f"{payload}.",
        payload,
        "not-a-token",
        "",
        link.token.replace(".", ".."),
        URLSafeTimedSerializer("sandbox-export-link-secret", salt="chekar.export-link.v2").dumps({"g": link.link_id}),
        URLSafeTimedSerializer(runtime.settings.export_link_secret.get_secret_value()).dumps({"g": link.link_id}),
    ):
        with pytest.raises(export_links.ExportLinkInvalid):
            export_links.redeem_link(runtime, bad, kind="payments")
    with pytest.raises(Forbidden, match="refunds"):
        export_links.redeem_link(runtime, link.token, kind="refunds")

    masked_link = export_links.issue_link(
        runtime, exports.prepare(actor=OPERATOR, kind="alerts", filters=filters), sign_in=sign_in_as("operator")
    )
    demoted_link = export_links.issue_link(runtime, unmasked, sign_in=sign_in_as("admin"))
    checked = export_links.redeem_link(runtime, link.token, kind="payments")
    assert (checked.actor, checked.filters, checked.masked, checked.kind) == (ADMIN, filters, False, "payments")
    with pytest.raises(export_links.ExportLinkUsed):
        export_links.redeem_link(runtime, link.token, kind="payments")

    users.set_role(runtime, username="admin", role="viewer", actor=Actor("root", Role.ADMIN))
    with pytest.raises(Forbidden):
        export_links.redeem_link(runtime, demoted_link.token, kind="payments")
    users.set_role(runtime, username="operator", role="operator", active=False, actor=Actor("root", Role.ADMIN))
    with pytest.raises(Forbidden):
        export_links.redeem_link(runtime, masked_link.token, kind="alerts")

    with runtime.db.read() as session:
        issued = session.scalars(select(AuditEntry).where(AuditEntry.action == "export.link_issued")).all()
    assert [(e.actor, e.target, e.detail["masked"]) for e in issued] == [
        ("admin", "payments", False),
        ("operator", "alerts", True),
        ("admin", "payments", False),
    ]


def test_a_link_signed_with_another_secret_is_refused(runtime: Runtime, sandbox: SandboxControl) -> None:
    from tests.factories import make_runtime

    _users(runtime, "viewer")
    other = make_runtime(
        database_url=runtime.db.url, portone_api_url=sandbox.url, export_link_secret="another-secret-value"
    )
    try:
        request = exports.prepare(actor=VIEWER, kind="alerts", filters=today_filters())
        link = export_links.issue_link(other, request, sign_in=sign_in_as("viewer"))
        with pytest.raises(export_links.ExportLinkInvalid):
            export_links.redeem_link(runtime, link.token, kind="alerts")
        assert export_links.redeem_link(other, link.token, kind="alerts").actor == VIEWER
    finally:
        other.close()
