"""Export links: how a large CSV export reaches the browser from the API (`GET /api/exports/{kind}.csv`).

A link is made in the dashboard for the signed-in user and names a row of `export_link_grants`
(who, which sign-in, what export, until when). The URL carries only that row's random id, signed
with itsdangerous (`URLSafeTimedSerializer`, HMAC-SHA256, key `EXPORT_LINK_SECRET`). The API honours
a link once: redeeming it is a conditional UPDATE (`used_at IS NULL`, not revoked, not expired), so
two openings at once, in one process or several, cannot both stream the file. A link lives at most
`EXPORT_LINK_TTL_SECONDS` and never past the end of the sign-in that made it; signing out (or the
sign-in ending, idle or too old) revokes the links it made and has not used.
"""

from __future__ import annotations

import hashlib
import secrets
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update
from sqlalchemy.engine import CursorResult

from services.audit import trail as audit
from services.auth import accounts as users
from services.auth.access import Actor, Permission, require
from services.auth.sessions import SessionPolicy, SignIn
from services.core.errors import Forbidden, PaymentsError
from services.core.models import ExportLinkGrant, Role
from services.reporting.exports import ExportFilters, ExportKind, ExportRequest
from services.runtime import Runtime

SALT = "chekar.export-link.v2"  # another purpose signed with the same key cannot pass for a link


class ExportLinkInvalid(PaymentsError):
    """The link's token is malformed, forged or unknown (HTTP 401)."""


class ExportLinkExpired(ExportLinkInvalid):
    """The link was genuine but is past its expiry (HTTP 401)."""


class ExportLinkUsed(ExportLinkInvalid):
    """The link was already opened once (HTTP 401)."""


class ExportLinkRevoked(ExportLinkInvalid):
    """The sign-in that made the link has ended (HTTP 401)."""


@dataclass(frozen=True)
class ExportLink:
    url: str
    token: str
    link_id: str = field(compare=False)
    expires_at: datetime = field(compare=False)


def _serializer(rt: Runtime) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        rt.settings.export_link_secret.get_secret_value(),
        salt=SALT,
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def _permission(masked: bool) -> Permission:
    return Permission.EXPORT_MASKED if masked else Permission.EXPORT_UNMASKED


def issue_link(rt: Runtime, request: ExportRequest, *, sign_in: SignIn, now: float | None = None) -> ExportLink:
    """A single-use link to the API that streams this export, for the user signed in as `sign_in`:
    valid for `export_link_ttl_seconds`, and no longer than that sign-in can last."""
    require(request.actor, _permission(request.masked))
    if sign_in.username != request.actor.username:
        raise Forbidden("an export link is made only for the user of the sign-in asking for it")
    at = clock.time() if now is None else now
    policy = SessionPolicy.from_settings(rt.settings)
    if policy.ended(signed_in_at=sign_in.signed_in_at, last_seen=sign_in.last_seen, now=at) is not None:
        raise Forbidden("this sign-in has ended; sign in again to make an export link")
    expires = min(at + rt.settings.export_link_ttl_seconds, policy.ends_at(sign_in))
    expires_at = datetime.fromtimestamp(expires, UTC)
    link_id = secrets.token_urlsafe(24)
    with rt.db.write() as session:
        session.add(
            ExportLinkGrant(
                id=link_id,
                username=request.actor.username,
                session_id=sign_in.session_id,
                role=str(request.actor.role),
                kind=str(request.kind),
                filters=request.filters.to_dict(),
                masked=request.masked,
                language=request.language,
                issued_at=datetime.fromtimestamp(at, UTC),
                expires_at=expires_at,
            )
        )
        audit.record(
            session,
            actor=request.actor.username,
            action="export.link_issued",
            target=str(request.kind),
            filters=request.filters.to_dict(),
            masked=request.masked,
            expires_at=expires_at.isoformat(),
        )
    token = _serializer(rt).dumps({"g": link_id})
    base = rt.settings.api_public_url.rstrip("/")
    return ExportLink(
        url=f"{base}/api/exports/{request.kind}.csv?token={quote(token)}",
        token=token,
        link_id=link_id,
        expires_at=expires_at,
    )


def _link_id(rt: Runtime, token: str) -> str:
    try:
        payload: Any = _serializer(rt).loads((token or "").strip(), max_age=rt.settings.export_link_ttl_seconds)
    except SignatureExpired:
        raise ExportLinkExpired("this export link has expired; create a new one in the dashboard") from None
    except BadData:
        raise ExportLinkInvalid("this export link is malformed or its signature does not match") from None
    link_id = payload.get("g") if isinstance(payload, dict) else None
    if not isinstance(link_id, str) or not link_id:
        raise ExportLinkInvalid("this export link is malformed")
    return link_id


def redeem_link(rt: Runtime, token: str, *, kind: str, now: float | None = None) -> ExportRequest:
    """Check a link's token for export `kind`, re-check its user as of now, and use the link up.

    Raises ExportLinkInvalid and its kinds (malformed, forged, unknown, expired, already used, its
    sign-in ended: 401) or Forbidden (another export, user gone or disabled, role changed, permission
    lost: 403). Only one caller ever gets the request back for a given link.
    """
    link_id = _link_id(rt, token)
    with rt.db.read() as session:
        grant = session.get(ExportLinkGrant, link_id)
        if grant is None:
            raise ExportLinkInvalid("this export link is unknown")
        request = ExportRequest(
            kind=ExportKind(grant.kind),
            filters=ExportFilters.from_dict(grant.filters),
            actor=Actor(grant.username, Role(grant.role)),
            masked=grant.masked,
            language=grant.language,
        )
    if str(request.kind) != kind:
        raise Forbidden(f"this link is for the {request.kind} export, not {kind}")
    current = users.current_actor(rt, request.actor.username)  # Forbidden when gone or disabled
    if current.role != request.actor.role:
        raise Forbidden("your role changed since this link was made; create a new one")
    require(current, _permission(request.masked))
    at = datetime.fromtimestamp(clock.time() if now is None else now, UTC)
    with rt.db.write() as session:
        result = session.execute(
            update(ExportLinkGrant)
            .where(
                ExportLinkGrant.id == link_id,
                ExportLinkGrant.used_at.is_(None),
                ExportLinkGrant.revoked_at.is_(None),
                ExportLinkGrant.expires_at > at,
            )
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount == 1:
            return request
        grant = session.get_one(ExportLinkGrant, link_id)
        used, revoked = grant.used_at is not None, grant.revoked_at is not None
    if used:
        raise ExportLinkUsed("this export link was already used; create a new one in the dashboard")
    if revoked:
        raise ExportLinkRevoked("the sign-in that made this export link has ended; sign in and create a new one")
    raise ExportLinkExpired("this export link has expired; create a new one in the dashboard")


def is_open(rt: Runtime, link_id: str, *, now: float | None = None) -> bool:
    """Whether the link can still be opened (not used, not revoked, not expired): for the page that
    shows it."""
    at = datetime.fromtimestamp(clock.time() if now is None else now, UTC)
    with rt.db.read() as session:
        grant = session.get(ExportLinkGrant, link_id)
        return grant is not None and grant.used_at is None and grant.revoked_at is None and grant.expires_at > at


def revoke_sign_in(rt: Runtime, session_id: str, *, now: float | None = None) -> int:
    """End every unused link made in this sign-in (sign-out, or the sign-in ended); how many."""
    at = datetime.fromtimestamp(clock.time() if now is None else now, UTC)
    with rt.db.write() as session:
        result = session.execute(
            update(ExportLinkGrant)
            .where(
                ExportLinkGrant.session_id == session_id,
                ExportLinkGrant.used_at.is_(None),
                ExportLinkGrant.revoked_at.is_(None),
            )
            .values(revoked_at=at)
            .execution_options(synchronize_session=False)
        )
        return int(cast(CursorResult[Any], result).rowcount)
