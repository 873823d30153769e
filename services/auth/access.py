"""Who may do what. Every service entry point used by the dashboard checks here, server-side."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.core.errors import Forbidden
from services.core.models import Role


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


_VIEWER = {Permission.VIEW, Permission.EXPORT_MASKED}
_OPERATOR = _VIEWER | {
    Permission.REFUND,
    Permission.APPROVE_REFUND,
    Permission.HANDLE_ALERTS,
    Permission.RUN_RECONCILIATION,
    Permission.TEST_PAYMENT,
    Permission.REPLAY_WEBHOOK,
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


# Not a permission (nothing is refused): what a role is shown. Exports of whole data are
# Permission.EXPORT_UNMASKED (admins).
_SEES_PERSONAL_DATA = frozenset({Role.OPERATOR, Role.ADMIN})


def sees_personal_data(actor: Actor) -> bool:
    """Operators and admins handle customers' calls and see e-mail and phone whole on screens;
    viewers see them masked (services.core.masking) and search them by whole value only."""
    return actor.role in _SEES_PERSONAL_DATA


def require(actor: Actor | None, permission: Permission) -> Actor:
    if actor is None:
        raise Forbidden("sign in first")
    if not actor.can(permission):
        raise Forbidden(f"the {actor.role} role may not {permission.replace('_', ' ')}")
    return actor
