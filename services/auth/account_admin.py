"""Account administration beyond services/auth/accounts.py: password reset (which also unlocks) and
enabling or disabling an account without changing its role."""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from services.audit import trail as audit
from services.auth import dashboard_sessions
from services.auth.access import Actor, Permission, require
from services.auth.accounts import MIN_PASSWORD_LENGTH, set_role
from services.auth.sessions import SessionEnd
from services.core.errors import InvalidRequest, NotFound
from services.core.models import User
from services.runtime import Runtime

_hasher = PasswordHasher()


def reset_password(rt: Runtime, *, username: str, new_password: str, actor: Actor) -> None:
    """Set a new password for someone (an admin's act); clears failed sign-ins and any lock."""
    require(actor, Permission.MANAGE_USERS)
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    with rt.db.write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        user.password_hash = _hasher.hash(new_password)
        user.failed_logins = 0
        user.locked_until = None
        audit.record(session, actor=actor.username, action="user.password_reset", target=username)
    dashboard_sessions.end_all_of(rt, username=username, reason=SessionEnd.REVOKED)  # whoever had the old one


def set_active(rt: Runtime, *, username: str, active: bool, actor: Actor) -> None:
    """Disable (or enable again) an account, keeping its role; a disabled user is signed out at once."""
    require(actor, Permission.MANAGE_USERS)
    with rt.db.read() as session:
        role = session.scalar(select(User.role).where(User.username == username))
    if role is None:
        raise NotFound(f"no user {username!r}")
    set_role(rt, username=username, role=role, active=active, actor=actor)


def change_role(rt: Runtime, *, username: str, role: str, actor: Actor) -> None:
    """Give an account another role, leaving it enabled or disabled as it was."""
    require(actor, Permission.MANAGE_USERS)
    with rt.db.read() as session:
        active = session.scalar(select(User.active).where(User.username == username))
    if active is None:
        raise NotFound(f"no user {username!r}")
    set_role(rt, username=username, role=role, active=active, actor=actor)
