"""Review (access control and data exposure): failing tests reproducing defects found in review."""

from __future__ import annotations

import logging

import pytest

from services import webhooks
from services.config import SANDBOX_V2_WEBHOOK_SECRET
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.security.test_webhook_access import V2_BODY, _live, _serving
from tests.services.test_foreign_currency import _bulk, _delivery
from tests.v2_support import signed

# The sandbox's published V2 webhook secret spelled as Standard Webhooks (and PortOne's SDK) also
# accept it: the same key without the `whsec_` prefix, or with a character base64 decoding skips.
PUBLISHED_KEY_SPELLINGS = [
    SANDBOX_V2_WEBHOOK_SECRET.removeprefix("whsec_"),
    SANDBOX_V2_WEBHOOK_SECRET.replace("Y2hl", "Y2hl\n", 1),
]


@pytest.mark.parametrize("configured", PUBLISHED_KEY_SPELLINGS, ids=["bare_base64", "inner_newline"])
def test_live_refuses_the_published_v2_webhook_key_in_any_spelling(
    database_url: str, sandbox: SandboxControl, configured: str
) -> None:
    """Outside sandbox mode the V2 route must not verify webhooks with the sandbox's published key,
    whichever spelling of it PORTONE_V2_WEBHOOK_SECRET holds."""
    rt = _live(database_url, sandbox, portone_v2_webhook_secret=configured)
    try:
        with _serving(rt) as api:
            headers = signed(V2_BODY, webhook_id="msg_forged_spelling", secret=SANDBOX_V2_WEBHOOK_SECRET)
            answer = api.post("/portone/webhook/v2", content=V2_BODY, headers=headers)
            refused = answer.status_code == 404 or answer.json().get("error") == "bad_signature"
            assert refused, f"a webhook signed with the published sandbox key was accepted: {answer.text}"
    finally:
        rt.close()


BUYER_EMAIL = "kim.secret@example.com"
BUYER_TEL = "010-9876-5432"


def test_a_delivery_that_cannot_be_stored_logs_no_whole_personal_data(
    runtime: Runtime, sandbox: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs are masked like screens and exports (services.masking): a payment PortOne shows that we
    cannot store (numeric overflow on PostgreSQL) must not put the buyer's whole e-mail and phone
    in the log, nor the database's statement in the webhook log's detail."""
    caplog.set_level(logging.DEBUG)
    imp_uid = _bulk(
        sandbox,
        merchant_uid="stranger-huge-pii",
        amount="123456789012345678901234567",
        currency="KRW",
        buyer_name="김체카",
        buyer_email=BUYER_EMAIL,
        buyer_tel=BUYER_TEL,
    )
    [outcome] = webhooks.receive_many(runtime, [_delivery({"imp_uid": imp_uid, "merchant_uid": "stranger-huge-pii"})])
    logged = caplog.text
    assert BUYER_EMAIL not in logged and BUYER_TEL not in logged, logged[-2000:]
    assert "[SQL:" not in (outcome.detail or ""), outcome.detail
