"""Secrets and personal data stay out of logs: published keys refused in live, export tokens redacted."""

from __future__ import annotations

import logging

import pytest

from api.access_log import REDACT_LINK_TOKENS
from services.auth import accounts as users
from services.core.config import SANDBOX_V2_WEBHOOK_SECRET
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl
from tests.security.test_secrets_stay_out import _link
from tests.security.test_webhook_access import V2_BODY, _live, _serving
from tests.services.payments.test_foreign_currency import _bulk, _delivery
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
    """Logs are masked like screens and exports (services.core.masking): a payment PortOne shows that we
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


def test_an_export_token_in_a_percent_encoded_query_name_is_redacted_from_the_access_log(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """`?%74oken=` is the same parameter to the route (it answers), so the access log must not hold
    the token in clear either; a link refused for the wrong export kind is still live afterwards."""
    users.create_user(runtime, username="admin", password="admin-password-1", role="admin", actor=None)
    link = _link(runtime)
    with _serving(runtime) as api:
        wrong_kind = f"/api/exports/refunds.csv?%74oken={link.token}"
        answer = api.get(wrong_kind)
        assert answer.status_code == 403, answer.text  # the route read the token
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", wrong_kind, "1.1", 403), None,
    )  # fmt: skip
    REDACT_LINK_TOKENS.filter(record)
    assert link.token not in record.getMessage(), record.getMessage()
