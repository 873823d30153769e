"""Who may do what. Every service entry point used by the dashboard checks here, server-side."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.errors import Forbidden
from services.models import Role


class Permission(enum.StrEnum):
    VIEW = "view"
    EXPORT_MASKED = "export_masked"
    REFUND = "refund"
    APPROVE_REFUND = "approve_refund"
    HANDLE_ALERTS = "handle_alerts"
    RUN_RECONCILIATION = "run_reconciliation"
    TEST_PAYMENT = "test_payment"
    REPLAY_WEBHOOK = "replay_webhook"
    EXPORT_UNMASKED = "export_unmasked"
    MANAGE_USERS = "manage_users"
    VIEW_AUDIT = "view_audit"
    VIEW_PERSONAL_DATA = "view_personal_data"  # buyers' e-mail and phone whole on screens


_VIEWER = {Permission.VIEW, Permission.EXPORT_MASKED}
_OPERATOR = _VIEWER | {
    Permission.REFUND,
    Permission.APPROVE_REFUND,
    Permission.HANDLE_ALERTS,
    Permission.RUN_RECONCILIATION,
    Permission.TEST_PAYMENT,
    Permission.REPLAY_WEBHOOK,
    Permission.VIEW_PERSONAL_DATA,
}
_ADMIN = _OPERATOR | {Permission.EXPORT_UNMASKED, Permission.MANAGE_USERS, Permission.VIEW_AUDIT}
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_VIEWER),
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.ADMIN: frozenset(_ADMIN),
}


@dataclass(frozen=True)
class Actor:
    """The signed-in person (or system component) on whose behalf a service acts."""

    username: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS.get(self.role, frozenset())


SYSTEM = Actor("system", Role.ADMIN)


def sees_personal_data(actor: Actor) -> bool:
    """Operators and admins handle customers' calls and see e-mail and phone whole; viewers see
    them masked (services.masking) and search them by whole value only."""
    return actor.can(Permission.VIEW_PERSONAL_DATA)


def require(actor: Actor | None, permission: Permission) -> Actor:
    if actor is None:
        raise Forbidden("sign in first")
    if not actor.can(permission):
        raise Forbidden(f"the {actor.role} role may not {permission.replace('_', ' ')}")
    return actor
