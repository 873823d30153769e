"""Sign-in and the role gate. Every page calls `gate(permission)` first: it checks on the
server, re-reading the user's role each run, so hiding a button is never the only guard."""

from __future__ import annotations

import time

import streamlit as st

from dashboard.format import plain
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth import accounts as users
from services.auth.access import Actor, Permission
from services.auth.sessions import SessionPolicy, SignIn, new_session_id
from services.core.errors import Forbidden
from services.reporting import export_links

_USER = "auth_username"
_SIGNED_IN = "auth_signed_in_at"
_SEEN = "auth_last_seen"
_SESSION = "auth_session_id"  # names this sign-in to the server: export links are bound to it


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
    st.session_state[_SESSION] = new_session_id()


def sign_out() -> None:
    """End the sign-in (a click, or it ended idle or too old): the export links it made stop working."""
    session_id = st.session_state.get(_SESSION)
    for key in (_USER, _SIGNED_IN, _SEEN, _SESSION):
        st.session_state.pop(key, None)
    if session_id:
        export_links.revoke_sign_in(get_runtime(), str(session_id))
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def current_actor() -> Actor | None:
    """The signed-in actor, or None (never signed in, idle or signed in too long, account disabled)."""
    if oidc_configured() and getattr(st.user, "is_logged_in", False) and _USER not in st.session_state:
        email = str(st.user.get("email") or "")
        if st.user.get("email_verified") is not True:
            # The e-mail claim names the account; an address the IdP did not verify is anyone's.
            st.session_state["auth_message"] = t("login.oidc_unverified", email=plain(email))
            return None
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


def current_sign_in() -> SignIn | None:
    """This browser session's sign-in, for binding what the server hands out (export links) to it.
    Call after `gate`; None when signed out."""
    username = st.session_state.get(_USER)
    signed_in_at, last_seen = st.session_state.get(_SIGNED_IN), st.session_state.get(_SEEN)
    if not username or signed_in_at is None or last_seen is None:
        return None
    if not st.session_state.get(_SESSION):  # a sign-in made before sign-ins had ids
        st.session_state[_SESSION] = new_session_id()
    return SignIn(
        session_id=str(st.session_state[_SESSION]),
        username=str(username),
        signed_in_at=float(signed_in_at),
        last_seen=float(last_seen),
    )


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
