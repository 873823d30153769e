"""Role × action on every dashboard page: which buttons, toggles and checkboxes each role is shown.
Written out as data; every `actor.can(Permission.…)` in views/ must have its rows here, so an
action gated in a page cannot ship without its line in this matrix. (Whether the services refuse
the action behind each one is tests/security/test_service_permissions.py; which pages each role
reaches at all is test_pages_by_role.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.auth import account_admin as user_admin
from services.auth.access import Actor, Permission
from services.core.models import Role
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl
from tests.pages.conftest import signed_in

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("viewer", "operator", "admin")
OPERATORS = {"operator", "admin"}
EVERYONE = set(ROLES)

# (page, widget key) -> (the permission the page checks, the roles shown it)
ACTIONS: dict[tuple[str, str], tuple[Permission, set[str]]] = {
    ("views/overview.py", "overview_test_payment"): (Permission.TEST_PAYMENT, OPERATORS),
    ("views/payments.py", "payments.bulk_mode"): (Permission.REFUND, OPERATORS),
    ("views/payments.py", "payments.reset"): (Permission.VIEW, EVERYONE),
    ("views/payment_detail.py", "payment_detail.refund"): (Permission.REFUND, OPERATORS),
    ("views/alerts.py", "alerts_resync"): (Permission.HANDLE_ALERTS, OPERATORS),
    ("views/alerts.py", "alerts_acknowledge"): (Permission.HANDLE_ALERTS, OPERATORS),
    ("views/alerts.py", "alerts_resolve"): (Permission.HANDLE_ALERTS, OPERATORS),
    ("views/alerts.py", "reconcile_run"): (Permission.RUN_RECONCILIATION, OPERATORS),
    ("views/webhooks.py", "webhooks_replay"): (Permission.REPLAY_WEBHOOK, OPERATORS),
    ("views/reports.py", "reports_export_prepare"): (Permission.EXPORT_MASKED, EVERYONE),
    ("views/reports.py", "reports_export_personal"): (Permission.EXPORT_UNMASKED, {"admin"}),
    ("views/admin.py", "admin_audit_actor"): (Permission.VIEW_AUDIT, {"admin"}),
}
# Session state that puts each page where its actions show: a payment opened, payments exported.
PRESETS: dict[str, dict[str, str]] = {"views/reports.py": {"reports_export_kind": "payments"}}
_CHECKED = re.compile(r"actor\.can\(Permission\.([A-Z_]+)\)")


def test_every_gated_action_in_the_pages_is_in_the_matrix() -> None:
    in_pages = {
        (f"views/{path.name}", Permission[name])
        for path in (ROOT / "views").glob("*.py")
        for name in _CHECKED.findall(path.read_text(encoding="utf-8"))
    }
    in_matrix = {(page, permission) for (page, _), (permission, _) in ACTIONS.items()}
    assert in_pages <= in_matrix, in_pages - in_matrix


def _widgets(at: AppTest) -> set[str]:
    kinds = (at.button, at.toggle, at.checkbox, at.text_input, at.text_area, at.selectbox, at.date_input)
    return {str(widget.key) for kind in kinds for widget in kind if widget.key}


def _shown(open_app: Callable[..., AppTest], role: str, pages: set[str], imp_uid: str | None) -> set[tuple[str, str]]:
    shown = set()
    at = open_app(role)
    for page in sorted(pages):
        for key, value in PRESETS.get(page, {}).items():
            at.session_state[key] = value
        if imp_uid:
            at.session_state["payment_detail.imp_uid"] = imp_uid
        try:
            at.switch_page(page)
        except ValueError:  # not registered for this role: nothing on it is shown
            continue
        at.run()
        assert not at.exception, (role, page, at.exception)
        shown |= {(page, key) for key in _widgets(at) if (page, key) in ACTIONS}
    return shown


@pytest.mark.reliability(
    area="access",
    case="page actions × {viewer, operator, admin} (buttons, toggles, checkboxes on every page)",
    outcome="each role is shown exactly the actions its permissions allow",
)
def test_each_role_is_shown_exactly_its_actions(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    rt = dashboard_runtime
    expected = {role: {action for action, (_, roles) in ACTIONS.items() if role in roles} for role in ROLES}
    shown: dict[str, set[tuple[str, str]]] = {}
    for role in ROLES:  # the overview offers a test payment only while there are no payments
        shown[role] = _shown(open_app, role, {"views/overview.py"}, None)
    # A paid payment with something left to refund, a webhook delivery and an alert to act on.
    order = orders.create_order(rt, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"]
    payments.complete(rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    stranger = sandbox.checkout("someone_elses_order_1", "50000")["imp_uid"]
    body = json.dumps({"imp_uid": stranger, "merchant_uid": "someone_elses_order_1", "status": "paid"}).encode()
    webhooks.receive(rt, body=body, content_type="application/json", source_ip="127.0.0.1")
    others = {page for page, _ in ACTIONS} - {"views/overview.py"}
    for role in ROLES:
        shown[role] |= _shown(open_app, role, others, imp_uid)
    assert shown == expected


@pytest.mark.reliability(
    area="access",
    case="role lowered or account disabled while its dashboard session is open",
    outcome="the next page run uses the new role (the refunds page leaves the navigation); a disabled account is signed out",
)
def test_an_open_session_follows_its_account(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    admin = Actor("admin", Role.ADMIN)
    at = open_app("operator")
    at.switch_page("views/refunds.py").run()
    assert not at.exception and not at.error
    user_admin.change_role(dashboard_runtime, username="operator", role="viewer", actor=admin)
    at.run()  # the same session, the same page, one more run
    # The refunds page is no longer in the viewer's navigation: the run shows the overview instead.
    assert [title.value for title in at.title] == ["개요"], [title.value for title in at.title]
    assert not [w for w in at.text_input if str(w.key).startswith("refund")]
    user_admin.set_active(dashboard_runtime, username="operator", active=False, actor=admin)
    at.run()
    assert not signed_in(at)
