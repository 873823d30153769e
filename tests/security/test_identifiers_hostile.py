"""Identifiers that the browser or a webhook sender chooses (imp_uid, merchant_uid) carrying path
and control characters: PortOne is asked about that exact id, as one opaque path segment, so it
can never be steered to another payment or endpoint; the answer is a 4xx, never a 5xx."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from services.core.models import Payment
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order


def _hostile(real: str) -> list[str]:
    """Ids that, pasted into a URL path unencoded, name the real payment or another endpoint."""
    return [
        f"imp_000000000000/../{real}",
        f"{real}/",
        f"{real}?imp_uid={real}",
        f"{real}#fragment",
        "status/paid",
        "../users/getToken",
        "..",
        "imp_\x00",
        "imp_%00",
        "imp_ 1\t\r\n",
    ]


@pytest.mark.reliability(
    area="hostile input",
    case="imp_uid / merchant_uid with path or control characters (../, ?, #, /, NUL)",
    outcome="asked of PortOne as one opaque id: 4xx, never another payment's record, never 5xx",
)
def test_ids_with_path_characters_name_only_themselves(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    sandbox.configure(webhook_url="http://127.0.0.1:9/nowhere")  # the real payment stays unrecorded
    real = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
    for hostile in _hostile(real):
        for body in (
            {"imp_uid": hostile, "merchant_uid": order["merchant_uid"]},
            {"imp_uid": real, "merchant_uid": hostile},
        ):
            answer = api.post("/api/payments/complete", json=body)
            assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)
        answer = api.post("/portone/webhook", json={"imp_uid": hostile, "status": "paid"})
        assert answer.status_code == 400, (hostile, answer.status_code, answer.text)
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0  # nothing was steered to `real`
    # The real id still works.
    answer = api.post("/api/payments/complete", json={"imp_uid": real, "merchant_uid": order["merchant_uid"]})
    assert answer.status_code == 200, answer.text
