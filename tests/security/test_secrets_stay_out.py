"""Secrets and card numbers never reach logs or exports: a whole flow runs with every logger at
DEBUG, then the records and an admin's unmasked CSV are searched for them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
import pytest

from services import exports, reports
from services.access import Actor
from services.models import Role
from services.runtime import Runtime
from tests.factories import APPROVED_CARD, INTERNAL_TOKEN, SandboxControl, auth_headers, new_order


@pytest.mark.reliability(
    area="access",
    case="secrets and card numbers in logs and exports",
    outcome="no API secret, access token, internal token or full card number in any log record or CSV",
)
def test_no_secret_or_card_number_in_logs_or_exports(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records reach caplog
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
    body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
    assert api.post("/api/payments/complete", json=body).status_code == 200
    refund = api.post(
        f"/api/payments/{imp_uid}/refunds", json={"amount": "1000", "reason": "r"}, headers=auth_headers()
    )
    assert refund.status_code == 201
    token = sandbox.http.post(
        "/users/getToken",
        json={
            "imp_key": runtime.settings.portone_imp_key.get_secret_value(),
            "imp_secret": runtime.settings.portone_imp_secret.get_secret_value(),
        },
    ).json()["response"]["access_token"]
    admin = Actor("admin", Role.ADMIN)
    day = datetime.now(reports.KST).date()
    today = exports.ExportFilters(start=day - timedelta(days=1), end=day)
    request = exports.prepare(actor=admin, kind="payments", filters=today, include_personal_data=True)
    csv_text = exports.export_bytes(runtime, request).decode("utf-8-sig")
    assert imp_uid in csv_text  # the export did include the payment

    logged = "\n".join(record.getMessage() + repr(record.args) for record in caplog.records)
    assert caplog.records  # the flow did log
    secrets = {
        "PortOne API secret": runtime.settings.portone_imp_secret.get_secret_value(),
        "PortOne access token": token,
        "internal API token": INTERNAL_TOKEN,
        "card number": APPROVED_CARD.replace("-", ""),
        "card number (dashed)": APPROVED_CARD,
    }
    for name, value in secrets.items():
        assert value not in logged, f"{name} in the logs"
        assert value not in csv_text, f"{name} in the export"
