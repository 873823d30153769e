"""Role × permission, checked where it matters: in the services every page calls. Each permission
is exercised through one real service call; the expected matrix is written out here, so a new
permission (or a changed grant) must be decided in this file too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.alerts import desk as alert_desk
from services.audit import reader as audit_log
from services.auth import account_admin as user_admin
from services.auth.access import Actor, Permission
from services.core.errors import Forbidden
from services.core.models import Role
from services.payments import search as payment_search
from services.payments import test_payment
from services.payments.search import PaymentFilters
from services.reconciliation import engine as reconcile
from services.refunds import approvals
from services.refunds import desk as refund_desk
from services.reporting import exports
from services.runtime import Runtime
from services.webhooks import log as webhook_log

ROLES = (None, Role.VIEWER, Role.OPERATOR, Role.ADMIN)  # None: not signed in
EXPECTED: dict[Permission, set[Role]] = {
    Permission.VIEW: {Role.VIEWER, Role.OPERATOR, Role.ADMIN},
    Permission.EXPORT_MASKED: {Role.VIEWER, Role.OPERATOR, Role.ADMIN},
    Permission.REFUND: {Role.OPERATOR, Role.ADMIN},
    Permission.APPROVE_REFUND: {Role.OPERATOR, Role.ADMIN},
    Permission.HANDLE_ALERTS: {Role.OPERATOR, Role.ADMIN},
    Permission.RUN_RECONCILIATION: {Role.OPERATOR, Role.ADMIN},
    Permission.TEST_PAYMENT: {Role.OPERATOR, Role.ADMIN},
    Permission.REPLAY_WEBHOOK: {Role.OPERATOR, Role.ADMIN},
    Permission.EXPORT_UNMASKED: {Role.ADMIN},
    Permission.MANAGE_USERS: {Role.ADMIN},
    Permission.VIEW_AUDIT: {Role.ADMIN},
}
DAY = date(2026, 11, 21)

# One real call per permission; an allowed role may still meet NotFound etc. (nothing exists).
CALLS: dict[Permission, Callable[[Runtime, Any], object]] = {
    Permission.VIEW: lambda rt, a: payment_search.search_payments(
        rt, actor=a, filters=PaymentFilters(date_from=DAY, date_to=DAY), limit=10
    ),
    Permission.EXPORT_MASKED: lambda rt, a: exports.prepare(
        actor=a, kind="payments", filters=exports.ExportFilters(start=DAY, end=DAY)
    ),
    Permission.EXPORT_UNMASKED: lambda rt, a: exports.prepare(
        actor=a, kind="payments", filters=exports.ExportFilters(start=DAY, end=DAY), include_personal_data=True
    ),
    Permission.REFUND: lambda rt, a: refund_desk.refund_quote(rt, actor=a, identifier="imp_000000000001"),
    Permission.APPROVE_REFUND: lambda rt, a: approvals.approve_request(rt, actor=a, request_id=999_999),
    Permission.HANDLE_ALERTS: lambda rt, a: alert_desk.acknowledge(rt, actor=a, alert_id=999_999),
    Permission.RUN_RECONCILIATION: lambda rt, a: reconcile.start_run(
        rt, actor=a, since=datetime.now(UTC) - timedelta(minutes=5), until=datetime.now(UTC) - timedelta(minutes=6)
    ),
    Permission.TEST_PAYMENT: lambda rt, a: test_payment.complete_browser_payment(
        rt, actor=a, imp_uid="imp_000000000001", merchant_uid="nobody"
    ),
    Permission.REPLAY_WEBHOOK: lambda rt, a: webhook_log.replay(rt, actor=a, event_id=999_999),
    Permission.MANAGE_USERS: lambda rt, a: user_admin.reset_password(
        rt, username="nobody", new_password="long-enough-password", actor=a
    ),
    Permission.VIEW_AUDIT: lambda rt, a: audit_log.list_entries(rt, actor=a),
}


def test_every_permission_is_decided_here() -> None:
    assert set(EXPECTED) == set(Permission) == set(CALLS)


@pytest.mark.reliability(
    area="access",
    case="every permission × {signed out, viewer, operator, admin} through the services",
    outcome="Forbidden exactly where the role lacks it, whatever the page shows",
)
def test_role_permission_matrix(runtime: Runtime) -> None:
    wrong = []
    for permission, call in CALLS.items():
        for role in ROLES:
            actor = None if role is None else Actor(f"someone-{role}", role)
            try:
                call(runtime, actor)
                refused = False
            except Forbidden:
                refused = True
            except Exception:  # noqa: BLE001 - allowed through the gate, then nothing to act on
                refused = False
            if refused != (role not in EXPECTED[permission]):
                wrong.append((permission, role, "refused" if refused else "allowed"))
    assert wrong == []
