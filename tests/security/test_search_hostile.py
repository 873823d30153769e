"""The payments search box with hostile and random text, on SQLite and PostgreSQL (hypothesis):
never an error, and exactly the payments the search promises (services/payment_search.py:
imp_uid and merchant_uid whole; with an @ the e-mail by prefix; otherwise the name or the e-mail by
prefix), whatever SQL or LIKE syntax the text or the stored names hold."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.errors import InvalidRequest
from services.models import Payment
from services.payment_search import PaymentFilters
from services.runtime import Runtime
from tests.services.test_payment_search import DAY, _day, _ids, _insert

INJECTIONS = ["' OR 1=1 --", "'; DROP TABLE payments; --", "%", "_", "\\", "%%'", "\\%", '" OR ""="', "*", "[a-z]"]
NAME = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=16),
).map(str.strip)
QUERY = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=30), NAME.map(lambda name: name[:3]))
_PHONE_LIKE = re.compile(r"^[+0-9()\- ]+$")  # such text searches phone numbers: another test's business


def _expected(runtime: Runtime, text: str) -> set[str]:
    with runtime.db.read() as session:
        rows = session.execute(select(Payment.imp_uid, Payment.merchant_uid, Payment.buyer_name, Payment.buyer_email))
    found = set()
    for imp_uid, merchant_uid, name, email in rows:
        by_email = (email or "").startswith(text) or (email or "").startswith(text.lower())
        by_name = "@" not in text and (name or "").startswith(text)
        if not text or text in (imp_uid, merchant_uid) or by_email or by_name:
            found.add(imp_uid)
    return found


@pytest.mark.reliability(
    area="hostile input",
    case="SQL injection and LIKE wildcards in the payments search (hypothesis)",
    outcome="no error; exactly the payments whose id, name or e-mail the text names; injected text matches itself",
)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME, query=QUERY)
@example(name="%김_", query="%")
@example(name="김'--", query="a\x00b")
def test_search_with_hostile_text(runtime: Runtime, name: str, query: str) -> None:
    assume(name)
    _insert(runtime, buyer_name=name)
    text = query.strip()
    assume(not (_PHONE_LIKE.match(text) and sum(ch.isdigit() for ch in text) >= 2))
    if "\x00" in text:  # no database search can hold it: refused, the same on both
        with pytest.raises(InvalidRequest):
            PaymentFilters(date_from=DAY, date_to=DAY, query=query)
        return
    assert _ids(runtime, _day(query=query)) == _expected(runtime, text)
