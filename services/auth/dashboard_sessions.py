"""Dashboard sign-ins kept in the database (`dashboard_sessions`), so that a reload, a new tab or
another dashboard process sees the same sign-in, and ending it (sign-out in any tab, an admin, a
disabled account, the idle or absolute limit of SessionPolicy) holds everywhere at the next action.

The browser carries a random token (256 bits) in an HttpOnly cookie; only its SHA-256 is stored,
and a sign-in is looked up by that hash. The cookie is set by a small route of the dashboard's own
server: the sign-in form (run over Streamlit's websocket) starts the sign-in with a one-time code,
valid `HANDOFF_SECONDS`, and sends the browser to that route, which exchanges the code for the
token. Every sign-in is a new row with a new token and a new id (no session fixation).
"""

from __future__ import annotations

import hashlib
import secrets
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.auth.sessions import SessionEnd, SessionPolicy, SignIn
from services.core.errors import Forbidden
from services.core.models import DashboardSession, User
from services.runtime import Runtime

TOKEN_BYTES = 32  # 256 bits of entropy
HANDOFF_SECONDS = 60.0
TOUCH_EVERY_SECONDS = 15.0  # last_seen_at is written at most this often: idle limits are minutes


class SessionEnded(Forbidden):
    """The sign-in is unknown or has ended; `reason` says why (a SessionEnd value, or "unknown")."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this sign-in has ended ({reason}); sign in again")
        self.reason = reason


@dataclass(frozen=True)
class LiveSession:
    id: str
    username: str
    created_at: datetime
    last_seen_at: datetime

    def sign_in(self) -> SignIn:
        """What export links are bound to."""
        return SignIn(
            session_id=self.id,
            username=self.username,
            signed_in_at=self.created_at.timestamp(),
            last_seen=self.last_seen_at.timestamp(),
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _at(now: float | None) -> datetime:
    return datetime.fromtimestamp(clock.time() if now is None else now, UTC)


def start(rt: Runtime, *, username: str, now: float | None = None) -> tuple[LiveSession, str]:
    """A new sign-in for a user whose password (or IdP) was just checked, and the one-time code that
    the cookie route exchanges for its token. The caller must have authenticated `username`."""
    at = _at(now)
    code = secrets.token_urlsafe(TOKEN_BYTES)
    row = DashboardSession(
        id=secrets.token_urlsafe(24),
        handoff_hash=hash_token(code),
        handoff_expires_at=at + timedelta(seconds=HANDOFF_SECONDS),
        username=username,
        created_at=at,
        last_seen_at=at,
    )
    with rt.db.write() as session:
        session.add(row)
    return LiveSession(row.id, username, at, at), code


def redeem_handoff(rt: Runtime, code: str, *, now: float | None = None) -> str:
    """Exchange a one-time code for the sign-in's token (for the cookie). Once only, within
    HANDOFF_SECONDS, and only while the sign-in is live; SessionEnded otherwise."""
    at = _at(now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with rt.db.write() as session:
        result = session.execute(
            update(DashboardSession)
            .where(
                DashboardSession.handoff_hash == hash_token(code or ""),
                DashboardSession.handoff_expires_at > at,
                DashboardSession.ended_at.is_(None),
            )
            .values(token_hash=hash_token(token), handoff_hash=None, handoff_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            raise SessionEnded("unknown")
    return token


def resolve(
    rt: Runtime, *, token: str | None = None, session_id: str | None = None, now: float | None = None
) -> LiveSession:
    """The live sign-in named by a cookie's token (or, inside the process that made it, by its id),
    touched as seen now. Ends it when idle, too old, or its account is gone or disabled; raises
    SessionEnded with the reason whenever it is not live. Reads only, unless it ends the sign-in or
    its last action is more than TOUCH_EVERY_SECONDS old: every page run calls this, and on SQLite a
    write takes the database's one write lock."""
    if not token and not session_id:
        raise SessionEnded("unknown")
    at = _at(now)
    policy = SessionPolicy.from_settings(rt.settings)
    query = select(DashboardSession).where(
        DashboardSession.token_hash == hash_token(token) if token else DashboardSession.id == session_id
    )
    with rt.db.read() as session:
        row = session.scalar(query)
        if row is None:
            raise SessionEnded("unknown")
        if row.ended_at is not None:
            raise SessionEnded(row.ended_reason or "unknown")
        live = LiveSession(row.id, row.username, row.created_at, row.last_seen_at)
        ended = policy.ended(
            signed_in_at=live.created_at.timestamp(), last_seen=live.last_seen_at.timestamp(), now=at.timestamp()
        )
        if ended is None and not session.scalar(select(User.active).where(User.username == live.username)):
            ended = SessionEnd.DISABLED
    if ended is not None:
        end(rt, live.id, reason=ended, now=now)
        raise SessionEnded(str(ended))
    if (at - live.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS:
        with rt.db.write() as session:
            session.execute(
                update(DashboardSession)
                .where(DashboardSession.id == live.id, DashboardSession.ended_at.is_(None))
                .values(last_seen_at=at)
                .execution_options(synchronize_session=False)
            )
        live = LiveSession(live.id, live.username, live.created_at, at)
    return live


def end(rt: Runtime, session_id: str, *, reason: SessionEnd = SessionEnd.SIGNED_OUT, now: float | None = None) -> bool:
    """End one sign-in (sign-out): every tab and process using it is signed out at its next action;
    the export links it made and has not used stop working. False when it had already ended."""
    at = _at(now)
    with rt.db.write() as session:
        result = session.execute(
            update(DashboardSession)
            .where(DashboardSession.id == session_id, DashboardSession.ended_at.is_(None))
            .values(ended_at=at, ended_reason=str(reason), handoff_hash=None, handoff_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        ended = cast(CursorResult[Any], result).rowcount == 1
    _revoke_export_links(rt, [session_id], now=now)
    return ended


def end_user_sessions(rt: Runtime, *, username: str, actor: Actor, now: float | None = None) -> int:
    """An admin ends every live sign-in of `username`; how many. Audited."""
    require(actor, Permission.MANAGE_USERS)
    ended = end_all_of(rt, username=username, reason=SessionEnd.REVOKED, now=now)
    with rt.db.write() as session:
        audit.record(session, actor=actor.username, action="user.sessions_ended", target=username, count=ended)
    return ended


def end_all_of(rt: Runtime, *, username: str, reason: SessionEnd, now: float | None = None) -> int:
    """End every live sign-in of `username` and the export links they made; how many. For the account's
    own changes (disabled, password reset) as much as for an admin's "end all sign-ins": a cookie nobody
    used meanwhile must not work again once the account is enabled again."""
    at = _at(now)
    with rt.db.write() as session:
        ids = list(
            session.scalars(
                select(DashboardSession.id).where(
                    DashboardSession.username == username, DashboardSession.ended_at.is_(None)
                )
            )
        )
        if ids:
            session.execute(
                update(DashboardSession)
                .where(DashboardSession.id.in_(ids), DashboardSession.ended_at.is_(None))
                .values(ended_at=at, ended_reason=str(reason), handoff_hash=None, handoff_expires_at=None)
                .execution_options(synchronize_session=False)
            )
    _revoke_export_links(rt, ids, now=now)
    return len(ids)


def live_counts(rt: Runtime, *, actor: Actor) -> dict[str, int]:
    """How many sign-ins each user has not ended (some may be past their idle limit until next used)."""
    require(actor, Permission.MANAGE_USERS)
    with rt.db.read() as session:
        rows = session.execute(
            select(DashboardSession.username, func.count())
            .where(DashboardSession.ended_at.is_(None))
            .group_by(DashboardSession.username)
        )
        return {str(username): int(count) for username, count in rows}


def _revoke_export_links(rt: Runtime, session_ids: list[str], *, now: float | None) -> None:
    # Imported here: services.reporting imports services.auth, so a module-level import would be a cycle.
    from services.reporting import export_links

    for session_id in session_ids:
        export_links.revoke_sign_in(rt, session_id, now=now)
