"""Sign-in and the role gate. Every page calls `gate(permission)` first: it checks on the
server, re-reading the user's role each run, so hiding a button is never the only guard."""

from __future__ import annotations

import time

import streamlit as st

from dashboard.format import plain
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services import users
from services.access import Actor, Permission
from services.errors import Forbidden
from services.sessions import SessionPolicy

_USER = "auth_username"
_SIGNED_IN = "auth_signed_in_at"
_SEEN = "auth_last_seen"


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError):
        return False
    except Exception:  # noqa: BLE001 - a malformed secrets file means no OIDC, not a crash
        return False


def sign_in(actor: Actor) -> None:
    st.session_state[_USER] = actor.username
    st.session_state[_SIGNED_IN] = st.session_state[_SEEN] = time.time()


def sign_out() -> None:
    for key in (_USER, _SIGNED_IN, _SEEN):
        st.session_state.pop(key, None)
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def current_actor() -> Actor | None:
    """The signed-in actor, or None (never signed in, idle or signed in too long, account disabled)."""
    if oidc_configured() and getattr(st.user, "is_logged_in", False) and _USER not in st.session_state:
        email = str(st.user.get("email") or "")
        try:
            actor = users.current_actor(get_runtime(), email)
        except Forbidden:
            st.session_state["auth_message"] = t("login.oidc_unknown", email=plain(email))
            return None
        sign_in(actor)
    username = st.session_state.get(_USER)
    if not username:
        return None
    policy = SessionPolicy.from_settings(get_runtime().settings)
    ended = policy.ended(
        signed_in_at=st.session_state.get(_SIGNED_IN), last_seen=st.session_state.get(_SEEN), now=time.time()
    )
    if ended is not None:
        sign_out()
        st.session_state["auth_message"] = t(
            f"login.expired_{ended}",
            minutes=f"{policy.idle_seconds / 60:g}",
            hours=f"{policy.lifetime_seconds / 3600:g}",
        )
        return None
    try:
        actor = users.current_actor(get_runtime(), username)
    except Forbidden:
        sign_out()
        return None
    st.session_state[_SEEN] = time.time()
    return actor


def gate(permission: Permission = Permission.VIEW) -> Actor:
    """Stop the page unless the signed-in actor holds `permission`."""
    actor = current_actor()
    if actor is None:
        st.warning(st.session_state.pop("auth_message", None) or t("login.expired"))
        st.stop()
    if not actor.can(permission):
        st.error(t("app.forbidden", role=t(f"role.{actor.role}")))
        st.stop()
    return actor  # type: ignore[return-value]
