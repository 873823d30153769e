"""The payments search box with hostile and random text, on SQLite and PostgreSQL (hypothesis):
never an error, and exactly the payments the search promises (services/payments/search.py:
imp_uid and merchant_uid whole; with an @ the e-mail by prefix; otherwise the name or the e-mail by
prefix), whatever SQL or LIKE syntax the text or the stored names hold."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.auth.access import Actor
from services.core.errors import InvalidRequest
from services.core.models import Payment, Role
from services.payments import search as payment_search
from services.payments.search import PaymentFilters, payment_totals, search_payments
from services.runtime import Runtime
from tests.services.payments.test_search import DAY, _day, _ids, _insert

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


# -- the search box as an oracle ----------------------------------------------------------------

VIEWER = Actor("lee", Role.VIEWER)
ADMIN = Actor("boss", Role.ADMIN)
SECRET = {"buyer_name": "박지호", "buyer_email": "jiho.park+shop@example.com", "buyer_tel": "010-9876-5432"}


def _guesses(value: str) -> list[str]:
    """Every prefix of `value` (as stored, digits only, upper-cased), the whole value excluded."""
    forms = {value, re.sub(r"\D", "", value) if any(ch.isdigit() for ch in value) else value, value.upper()}
    return sorted({form[:n] for form in forms for n in range(1, len(form))} - {value, value.upper()})


@pytest.mark.reliability(
    area="access",
    case="a viewer plays the search box as an oracle on masked phones and e-mails (every prefix)",
    outcome="no prefix finds the payment; only the whole value does; admins keep prefix search",
)
@pytest.mark.parametrize("strategy", ["narrow", "broad"])
def test_a_viewer_learns_nothing_from_prefixes(
    runtime: Runtime, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if strategy == "broad":  # every search counts as broad: checked along the date range instead
        monkeypatch.setattr(payment_search, "BROAD_SEARCH_ROWS", 0)
    secret = _insert(runtime, **SECRET)
    for _ in range(3):
        _insert(runtime)  # 010-1000-nnnn, buyerN@example.com, 김민준
    learned = []
    for field, value in SECRET.items():
        for guess in _guesses(value):  # no payment holds any of these whole: nothing may match
            found = _ids(runtime, _day(query=guess), VIEWER)
            counted = sum(total.count for total in payment_totals(runtime, actor=VIEWER, filters=_day(query=guess)))
            if found or counted:
                learned.append((field, guess, len(found), counted))
    assert learned == [], f"{len(learned)} prefix searches told a viewer something: {learned[:5]}"
    # The whole value still finds it (as typed, or the phone as digits), shown masked.
    for whole in (*SECRET.values(), "01098765432", "JIHO.PARK+SHOP@EXAMPLE.COM"):
        assert _ids(runtime, _day(query=whole), VIEWER) == {secret}, whole
    [row] = search_payments(runtime, actor=VIEWER, filters=_day(query="010-9876-5432")).rows
    assert (row.buyer_tel, row.buyer_email) == ("010-****-5432", "j***@example.com")
    # Those who see the data whole keep searching by prefix.
    assert _ids(runtime, _day(query="010-9876"), ADMIN) == {secret}
    assert _ids(runtime, _day(query="jiho.p"), ADMIN) == {secret}
    assert _ids(runtime, _day(query="박지"), ADMIN) == {secret}
