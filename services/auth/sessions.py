"""How long a dashboard sign-in lasts: an idle limit, and an absolute one so that a session left
open on a shared office PC (or taken over) still ends. Times are epoch seconds, as the dashboard
keeps them in its session state."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from services.core.config import Settings


def new_session_id() -> str:
    """A random id naming one sign-in (what export links are bound to)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SignIn:
    """One dashboard sign-in as the server is told of it: its id, who, when it began, its last action."""

    session_id: str
    username: str
    signed_in_at: float
    last_seen: float


class SessionEnd(enum.StrEnum):
    IDLE = "idle"  # no action for longer than the idle limit
    LIFETIME = "lifetime"  # signed in longer ago than the absolute limit
    SIGNED_OUT = "signed_out"  # signed out (in any tab)
    REVOKED = "revoked"  # an admin ended the user's sign-ins
    DISABLED = "disabled"  # the account was disabled or removed


@dataclass(frozen=True)
class SessionPolicy:
    idle_seconds: float
    lifetime_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(settings.session_idle_minutes * 60, settings.session_max_hours * 3600)

    def ended(self, *, signed_in_at: float | None, last_seen: float | None, now: float) -> SessionEnd | None:
        """Why the session has ended, or None while it is live. A session missing either time
        (never signed in through `sign_in`) has ended."""
        if signed_in_at is None or now - signed_in_at > self.lifetime_seconds:
            return SessionEnd.LIFETIME
        if last_seen is None or now - last_seen > self.idle_seconds:
            return SessionEnd.IDLE
        return None

    def ends_at(self, sign_in: SignIn) -> float:
        """The latest time the sign-in can still be live: its lifetime's end, or its idle limit
        counted from its last action, whichever comes first."""
        return min(sign_in.signed_in_at + self.lifetime_seconds, sign_in.last_seen + self.idle_seconds)
