"""The payments search box with hostile and random text, on SQLite and PostgreSQL (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.models import Payment
from services.runtime import Runtime
from tests.services.test_payment_search import _day, _ids, _insert

INJECTIONS = ["' OR 1=1 --", "'; DROP TABLE payments; --", "%", "_", "\\", "%%'", "\\%", '" OR ""="', "*", "[a-z]"]
# A buyer's name starts with a letter (a query of digits only is read as a phone number).
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=16).filter(
    lambda name: name.strip()[:1].isalpha()
)


@pytest.mark.reliability(
    area="hostile input",
    case="SQL injection and LIKE wildcards in the payments search (hypothesis)",
    outcome="no error; a buyer is found by a prefix of their name; injected text matches only itself",
)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME, query=st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=30)))
def test_search_with_hostile_text(runtime: Runtime, name: str, query: str) -> None:
    imp_uid = _insert(runtime, buyer_name=name)
    prefix = name.strip()[: max(1, len(name.strip()) // 2)]
    assert imp_uid in _ids(runtime, _day(query=prefix))
    found = _ids(runtime, _day(query=query))  # never an error, whatever the text
    if query.strip() in INJECTIONS:
        # Wildcards and quotes are plain characters: only names that really start with them match.
        with runtime.db.read() as session:
            names = dict(session.execute(select(Payment.imp_uid, Payment.buyer_name)).all())
        assert all((names[uid] or "").startswith(query.strip()) for uid in found)
