"""`GET /api/orders/{merchant_uid}`: the customer app reads its order (after the payment window
closes) over real HTTP on loopback, our API and the sandbox; no personal data in the answer."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx

from services.payments.orders import CreatedOrder
from services.payments.test_payment import request_pay_script
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order, wait_for_webhooks

FIELDS = {"merchant_uid", "status", "amount", "currency", "paid_at"}


def test_an_unknown_order_is_404(api: httpx.Client) -> None:
    answer = api.get("/api/orders/chekar_20261207_000000000000")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found", answer.text


def test_the_app_reads_its_order_before_and_after_paying(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(
        api, customer_email="reader@example.com", customer_name="조회고객", customer_phone="010-9876-5432"
    )
    merchant_uid = order["merchant_uid"]
    before = api.get(f"/api/orders/{merchant_uid}")
    assert before.status_code == 200, before.text
    assert before.json() == {
        "merchant_uid": merchant_uid,
        "status": "pending",
        "amount": 50000,
        "currency": "KRW",
        "paid_at": None,
    }
    imp_uid = sandbox.checkout(merchant_uid, order["amount"])["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)  # the window closed without /complete: the webhook recorded it
    after = api.get(f"/api/orders/{merchant_uid}")
    assert after.status_code == 200, after.text
    body = after.json()
    assert set(body) == FIELDS
    assert (body["status"], body["amount"], body["currency"]) == ("paid", 50000, "KRW")
    assert datetime.fromisoformat(body["paid_at"]).tzinfo is not None
    for personal in ("reader@example.com", "조회고객", "9876", imp_uid):
        assert personal not in after.text, personal


# The customer's browser around the page's script: PortOne's JavaScript SDK is played by the sandbox
# checkout (IMP.request_pay pays there and calls back as the SDK does), and every call the page
# makes to our API is written out so the test can follow it.
BROWSER = """
const SANDBOX = process.argv[2];
const MERCHANT_CODE = "imp00000000";
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, options) => {
  const answer = await realFetch(url, options);
  if (url.includes("/api/orders/")) {
    console.log(JSON.stringify({poll: answer.status, status: (await answer.clone().json()).status}));
  } else {
    console.log(JSON.stringify({complete: answer.status}));
  }
  return answer;
};
globalThis.alert = (message) => console.log(JSON.stringify({alert: message}));
globalThis.showOrder = (order) => console.log(JSON.stringify({order}));
globalThis.IMP = {
  init() {},
  request_pay(params, callback) {
    realFetch(SANDBOX + "/sandbox/checkout", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({merchant_uid: params.merchant_uid, amount: String(params.amount),
                            currency: params.currency, card_number: "4111-1111-1111-1111"}),
    }).then((answer) => answer.json()).then(callback);
  },
};
"""


def test_the_payment_page_polls_its_order_after_the_window_closes(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, tmp_path: Path
) -> None:
    """The window closes paid, but /complete meets PortOne unavailable (503) and the webhook is late:
    the page reads its order, pending, until the webhook records it, then shows it paid."""
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "Node.js runs the customer's payment page script (Debian: apt-get install nodejs)"
    created = new_order(api)
    order = CreatedOrder(created["merchant_uid"], Decimal(str(created["amount"])), created["currency"],
                         created["name"], created["pg"])  # fmt: skip
    settings = runtime.settings.model_copy(update={"api_public_url": str(api.base_url)})
    script = request_pay_script(SimpleNamespace(settings=settings), order, poll_interval_ms=200, poll_attempts=150)  # type: ignore[arg-type]
    page = tmp_path / "page.js"
    page.write_text(BROWSER + script, encoding="utf-8")
    # PortOne cannot be read (so /complete answers 503) and its webhook is held back.
    sandbox.configure(webhook_hold=True, fail_next=10_000, fail_only="GET /payments")
    browser = subprocess.Popen(  # noqa: S603 - node running the page script written above
        [node, str(page), sandbox.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert browser.stdout is not None
        seen = []
        while not any(line.get("status") == "pending" for line in seen):
            line = browser.stdout.readline()
            assert line, f"the page ended early: {seen} {browser.stderr.read() if browser.stderr else ''}"
            seen.append(json.loads(line))
        assert seen[0] == {"complete": 503}, seen  # the window closed; /complete could not verify it
        sandbox.configure(fail_next=0)
        assert sandbox.http.post("/sandbox/webhooks/flush", json={"order": "fifo"}).json()["flushed"] == 1
        out, err = browser.communicate(timeout=60)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    shown = lines[-1]["order"]
    assert shown is not None and shown["status"] == "paid", (lines, err)
    assert set(shown) == FIELDS and shown["merchant_uid"] == order.merchant_uid
