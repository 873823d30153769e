"""Which dashboard pages each role can open (the navigation holds only those; a page outside it
cannot be reached). Written out as data: a new page must be decided here."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

PAGES = (
    "views/overview.py",
    "views/payments.py",
    "views/payment_detail.py",
    "views/refunds.py",
    "views/alerts.py",
    "views/reports.py",
    "views/webhooks.py",
    "views/test_payment.py",
    "views/admin.py",
)
VIEWS = {"views/overview.py", "views/payments.py", "views/payment_detail.py", "views/alerts.py"}
VIEWS |= {"views/reports.py", "views/webhooks.py"}
EXPECTED = {
    None: set(),
    "viewer": VIEWS,
    "operator": VIEWS | {"views/refunds.py", "views/test_payment.py"},
    "admin": set(PAGES),
}


def test_every_page_is_decided_here() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert {f"views/{p.name}" for p in (root / "views").glob("*.py")} - {"views/login.py"} == set(PAGES)


@pytest.mark.reliability(
    area="access",
    case="dashboard pages × {signed out, viewer, operator, admin}",
    outcome="each role reaches exactly its pages; the others are not registered for it",
)
@pytest.mark.parametrize("role", [None, "viewer", "operator", "admin"])
def test_pages_each_role_can_open(open_app: Callable[..., AppTest], role: str | None) -> None:
    reachable = set()
    at = open_app(role)
    assert not at.exception
    for page in PAGES:
        try:
            at.switch_page(page)
        except ValueError:
            continue
        reachable.add(page)
    assert reachable == EXPECTED[role]
