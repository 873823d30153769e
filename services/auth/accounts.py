"""Local accounts: argon2 password hashes, roles, throttled sign-in, the first admin."""

from __future__ import annotations

import functools
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from services.audit import trail as audit
from services.auth import dashboard_sessions
from services.auth.access import Actor, Permission, require
from services.auth.sessions import SessionEnd
from services.core.config import DATA_DIR
from services.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from services.core.models import Role, User, utcnow
from services.runtime import Runtime

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-zA-Z0-9._@-]{2,64}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal which names exist.
    Made on first use, not at import: an argon2 hash takes 64 MiB and a noticeable moment, which
    every process importing this module (CLI, exports, workers) would otherwise pay."""
    return _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(Forbidden):
    """Wrong name or password, or the account is locked; deliberately vague."""


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidRequest(f"unknown role {value!r}; choose viewer, operator or admin") from None


def create_user(
    rt: Runtime, *, username: str, password: str, role: str, display_name: str | None = None, actor: Actor | None
) -> Actor:
    """Create an account. `actor=None` only from the command line or first start (trusted)."""
    if actor is not None:
        require(actor, Permission.MANAGE_USERS)
    username = username.strip()
    if not _USERNAME.match(username):
        raise InvalidRequest("user names are 2 to 64 letters, digits, or . _ @ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    new_role = _role(role)
    with rt.db.write() as session:
        if session.scalar(select(User).where(User.username == username)) is not None:
            raise Conflict(f"user {username!r} already exists")
        session.add(
            User(username=username, display_name=display_name, password_hash=_hasher.hash(password), role=new_role)
        )
        audit.record(
            session,
            actor=actor.username if actor else "cli",
            action="user.created",
            target=username,
            role=str(new_role),
        )
    return Actor(username, new_role)


def authenticate(rt: Runtime, *, username: str, password: str) -> Actor:
    """Check a password; five failures lock the account for fifteen minutes."""
    now = utcnow()
    with rt.db.write() as session:
        user = session.scalar(select(User).where(User.username == username.strip()))
        if user is None or not user.active:
            _verify(_dummy_hash(), password)
            refusal = "wrong user name or password"
        elif user.locked_until and user.locked_until > now:
            refusal = "too many failed sign-ins; try again later"
        elif not _verify(user.password_hash, password):
            refusal = "wrong user name or password"
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILED_LOGINS:
                user.locked_until = now + LOCKOUT
                user.failed_logins = 0
                audit.record(session, actor=user.username, action="user.locked", target=user.username)
        else:
            refusal = ""
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            audit.record(session, actor=user.username, action="user.login", target=user.username)
    # Raised after the transaction commits, so failed attempts are counted.
    if refusal or user is None:
        raise LoginRefused(refusal)
    return Actor(user.username, Role(user.role))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def current_actor(rt: Runtime, username: str) -> Actor:
    """Re-read a signed-in user's role on every request, so a demotion takes effect at once."""
    with rt.db.read() as session:
        user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise Forbidden("this account no longer exists or is disabled")
    return Actor(user.username, Role(user.role))


def list_users(rt: Runtime, *, actor: Actor | None) -> list[User]:
    if actor is not None:
        require(actor, Permission.MANAGE_USERS)
    with rt.db.read() as session:
        return list(session.scalars(select(User).order_by(User.username)))


def set_role(rt: Runtime, *, username: str, role: str, active: bool = True, actor: Actor) -> None:
    require(actor, Permission.MANAGE_USERS)
    new_role = _role(role)
    with rt.db.write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if user.username == actor.username and (new_role != Role.ADMIN or not active):
            raise InvalidRequest("you cannot remove your own admin rights")
        user.role, user.active = new_role, active
        audit.record(
            session, actor=actor.username, action="user.updated", target=username, role=str(new_role), active=active
        )
    if not active:  # at once, even the sign-ins nobody uses now: enabled again, they must not come back
        dashboard_sessions.end_all_of(rt, username=username, reason=SessionEnd.DISABLED)


def ensure_first_admin(rt: Runtime, *, password_file: Path | None = None) -> str | None:
    """On first start (no users at all) create `admin` with a random password.

    The password is returned once for printing and written to a file only the owner can read.
    """
    with rt.db.read() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
    password = secrets.token_urlsafe(12)
    try:
        create_user(rt, username="admin", password=password, role=Role.ADMIN, display_name="관리자", actor=None)
    except Conflict:
        return None  # another process created it first
    path = password_file or DATA_DIR / "admin-password.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"admin\n{password}\n")
    return password
